package orchestrator

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/gpuorch/gpuorch/loadgen"
)

// Plan is a spec expanded into tasks. It is written to plan.json in the
// experiment directory and is all an executor needs: executors never re-read
// the spec, so a resumed or retried experiment runs exactly what was planned.
type Plan struct {
	Experiment ExperimentSpec `json:"experiment"`
	Run        RunSpec        `json:"run"`
	Output     OutputSpec     `json:"output"`
	// SweepKeys are the swept spec keys in file order; the last varies fastest.
	SweepKeys []string `json:"sweep_keys,omitempty"`
	// Workloads are the workload names in spec order; the workload varies
	// slowest across task indices.
	Workloads []string `json:"workloads"`
	// Overrides are the --set KEY=VALUE arguments applied to the spec.
	Overrides []string `json:"overrides,omitempty"`
	Tasks     []Task   `json:"tasks"`
}

// Task is one load run: a workload at one sweep point.
type Task struct {
	Index    int            `json:"index"` // stable, 0..N-1
	Name     string         `json:"name"`  // e.g. "t003-rate=200"
	Workload string         `json:"workload"`
	Params   map[string]any `json:"params,omitempty"` // sweep key → value at this point
	Config   loadgen.Config `json:"config"`
}

// ParamString renders a task's sweep point as "key=value key=value" in
// sweep-key order (for tables and progress lines).
func (p *Plan) ParamString(t *Task) string {
	var parts []string
	for _, k := range p.SweepKeys {
		if v, ok := t.Params[k]; ok {
			parts = append(parts, k+"="+formatValue(v))
		}
	}
	return strings.Join(parts, " ")
}

// formatValue renders a sweep value compactly: lists joined by "+", scalars
// as TOML would show them (without quotes).
func formatValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = formatValue(e)
		}
		return strings.Join(parts, "+")
	case []string:
		return strings.Join(x, "+")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + formatValue(x[k])
		}
		return strings.Join(parts, ",")
	case float64:
		b, _ := json.Marshal(x)
		return string(b)
	default:
		return fmt.Sprint(x)
	}
}
