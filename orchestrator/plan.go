package orchestrator

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/gpuorch/gpuorch/deploy"
	"github.com/gpuorch/gpuorch/internal/tomlstrict"
	"github.com/gpuorch/gpuorch/loadgen"
)

// Plan is a spec expanded into tasks. It is written to plan.json in the
// experiment directory and is all an executor needs: executors never re-read
// the spec, so a resumed or retried experiment runs exactly what was planned.
type Plan struct {
	Experiment ExperimentSpec `json:"experiment"`
	Run        RunSpec        `json:"run"`
	Slurm      SlurmSpec      `json:"slurm"`
	Output     OutputSpec     `json:"output"`
	// SweepKeys are the swept spec keys in file order; the last varies fastest.
	SweepKeys []string `json:"sweep_keys,omitempty"`
	// Workloads are the workload names in spec order; the workload varies
	// slowest across task indices.
	Workloads []string `json:"workloads"`
	// Overrides are the --set KEY=VALUE arguments applied to the spec.
	Overrides []string `json:"overrides,omitempty"`
	Tasks     []Task   `json:"tasks"`
	// Deployment is the spec's [deployment] resolved: every task's load
	// goes to its replicas (deploy.RunTask), not to target.url.
	Deployment *deploy.Plan `json:"deployment,omitempty"`
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

// Plan expands the spec into tasks: for each workload (outermost, in spec
// order), every point of the cartesian product of the sweep lists (the last
// key varies fastest). Each point is applied by setting its keys in the
// decoded tree of that workload's manifest and decoding the result strictly
// into a loadgen.Config, so any manifest field can be swept. Task i gets seed
// run.seed + i unless the sweep sets seed.
func (s *Spec) Plan() (*Plan, error) {
	doc := s.doc
	if doc == nil {
		doc = &tomlstrict.Doc{File: s.File}
	}
	// Errors that appear only once a point is applied blame the [sweep]
	// line of the key when it was swept, else the key's line in workload
	// w's table (manifest keys: "workload.rate", "duration", …).
	errIn := func(w int, key, format string, args ...any) error {
		for _, sp := range s.Sweep {
			for _, sk := range sp.Parts() {
				if sk == key || strings.HasPrefix(key, sk+".") || strings.HasPrefix(sk, key+".") {
					return &SpecError{File: s.File, Line: max(sp.Line, 1), Key: tomlstrict.Dotted([]string{"sweep", sp.Key}), Msg: fmt.Sprintf(format, args...)}
				}
			}
		}
		return doc.Errorf(specPath(key, w), format, args...)
	}
	errAt := func(key, format string, args ...any) error { return errIn(0, key, format, args...) }
	// Every task is checked as it would check itself before sending
	// anything (loadgen.Check); tasks whose workload and target are the
	// same are checked once.
	type result struct {
		sources int
		err     error
	}
	checked := map[string]result{}
	total := 0   // tasks in the plan
	sources := 0 // of all tasks so far
	check := func(w, idx int, cfg *loadgen.Config) error {
		key, kerr := json.Marshal([]any{cfg.Workload, cfg.Target, cfg.SLO, cfg.Duration, cfg.Interval, cfg.Drain, cfg.MaxInFlight, cfg.PacerPriority})
		r, seen := checked[string(key)]
		if !seen || kerr != nil {
			r.sources, r.err = loadgen.CheckSources(cfg)
			if kerr == nil { // NaN has no JSON: such a task is checked alone
				checked[string(key)] = r
			}
		}
		err := r.err
		if err == nil {
			if sources += r.sources; sources > MaxPlanSources {
				return &SpecError{File: s.File, Line: 1, Msg: fmt.Sprintf("the plan's tasks have more than %d workload sources in all (%d by task %d): sweep fewer points or smaller workloads", MaxPlanSources, sources, idx)}
			}
			return nil
		}
		var fe *loadgen.FieldError
		if errors.As(err, &fe) {
			key := tomlstrict.Dotted(tomlstrict.StripElems(specPath(fe.Key, w)))
			return errIn(w, fe.Key, "%s", taskMsg(total > 1, idx, key+" = "+fe.Value+": "+fe.Want))
		}
		wc := cfg.Workload
		key2 := "workload.arrival"
		switch {
		case len(wc.Params) > 0:
			key2 = "workload.params"
		case len(wc.Args) > 0:
			key2 = "workload.args"
		}
		return errIn(w, key2, "%s", taskMsg(total > 1, idx, err.Error()))
	}
	p := &Plan{
		Experiment: s.Experiment,
		Run:        s.Run,
		Slurm:      s.Slurm,
		Output:     s.Output,
		Overrides:  s.Overrides,
	}
	for _, sp := range s.Sweep {
		p.SweepKeys = append(p.SweepKeys, sp.Parts()...)
	}
	points := 1
	for _, sp := range s.Sweep {
		points *= len(sp.Values)
		if points > MaxTasks {
			return nil, &SpecError{File: s.File, Line: sp.Line, Key: sp.Key, Msg: fmt.Sprintf("the sweep expands to more than %d tasks", MaxTasks)}
		}
	}
	n := points * len(s.Workloads)
	if n > MaxTasks {
		return nil, &SpecError{File: s.File, Line: 1, Msg: fmt.Sprintf("%d workloads × %d sweep points is more than %d tasks", len(s.Workloads), points, MaxTasks)}
	}
	total = n
	tags := paramTags(p.SweepKeys)
	width := max(3, len(strconv.Itoa(n-1)))
	rawWorkloads, _ := s.raw["workload"].([]map[string]any)
	for w, wl := range s.Workloads {
		p.Workloads = append(p.Workloads, wl.Name)
		for pt := 0; pt < points; pt++ {
			idx := w*points + pt
			// Mixed-radix digits of pt, last key fastest.
			vals := make([]any, len(s.Sweep))
			rem := pt
			for k := len(s.Sweep) - 1; k >= 0; k-- {
				nv := len(s.Sweep[k].Values)
				vals[k] = s.Sweep[k].Values[rem%nv]
				rem /= nv
			}
			tree := map[string]any{
				"seed":     s.Run.Seed + int64(idx),
				"duration": s.Run.Duration.D().String(),
				"target":   deepCopy(s.raw["target"]),
				"slo":      deepCopy(s.raw["slo"]),
			}
			if s.Run.Interval > 0 {
				tree["interval"] = s.Run.Interval.D().String()
			}
			for k, v := range s.Run.Load {
				tree[k] = deepCopy(v)
			}
			if s.deployment != nil {
				// The replicas publish their addresses; the manifest names
				// the deployment instead.
				tg, _ := tree["target"].(map[string]any)
				if tg == nil {
					tg = map[string]any{}
					tree["target"] = tg
				}
				tg["url"] = deploy.TargetURL
			}
			if w < len(rawWorkloads) {
				tree["workload"] = deepCopy(rawWorkloads[w])
			} else {
				tree["workload"] = map[string]any{}
			}
			tree["workload"].(map[string]any)["name"] = wl.Name
			for k, sp := range s.Sweep {
				for j, key := range sp.Parts() {
					v := sp.component(vals[k], j)
					if err := tomlstrict.SetPath(tree, strings.Split(key, "."), func(any) any { return deepCopy(v) }); err != nil {
						return nil, &SpecError{File: s.File, Line: sp.Line, Key: key, Msg: fmt.Sprintf("sweep %q: %v", key, err)}
					}
				}
			}
			for k, v := range tree {
				if v == nil {
					delete(tree, k)
				}
			}
			var cfg loadgen.Config
			unknown, err := tomlstrict.DecodeTree(tree, &cfg)
			if err != nil {
				return nil, &SpecError{File: s.File, Line: 1, Msg: fmt.Sprintf("task %d: %v", idx, err)}
			}
			if len(unknown) > 0 {
				key := tomlstrict.Dotted(unknown[0])
				return nil, &SpecError{File: s.File, Line: 1, Key: key, Msg: fmt.Sprintf("task %d: unknown key %q", idx, key)}
			}
			// Semantic checks again, now that the point is applied.
			if err := validateTarget(cfg.Target, errAt); err != nil {
				return nil, err
			}
			if s.deployment != nil && cfg.Target.URL != deploy.TargetURL {
				return nil, errAt("target.url", "task %d: target.url: a [deployment]'s replicas publish their own addresses; don't set or sweep target.url", idx)
			}
			if cfg.Workload.Arrival == "" {
				return nil, errIn(w, "workload.arrival", "task %d: workload.arrival is empty", idx)
			}
			if cfg.Duration <= 0 {
				return nil, errIn(w, "duration", "task %d: duration must be positive", idx)
			}
			if err := check(w, idx, &cfg); err != nil {
				return nil, err
			}
			t := Task{Index: idx, Workload: wl.Name}
			name := fmt.Sprintf("t%0*d", width, idx)
			if len(s.Workloads) > 1 {
				name += "-" + wl.Name
			}
			if len(s.Sweep) > 0 {
				t.Params = map[string]any{}
			}
			cfg.Tags = map[string]string{"workload": wl.Name}
			for k, sp := range s.Sweep {
				for j, key := range sp.Parts() {
					cv := sp.component(vals[k], j)
					t.Params[key] = cv
					v := formatValue(cv)
					name += "-" + tags[key] + "=" + v
					cfg.Tags[tags[key]] = v
				}
			}
			t.Name = taskName(name)
			cfg.Experiment = s.Experiment.Name
			cfg.Task = t.Name
			if s.Run.Shards > 1 {
				cfg.Shards = s.Run.Shards
			}
			t.Config = cfg
			p.Tasks = append(p.Tasks, t)
		}
	}
	planDeployment(s, p)
	return p, nil
}

// specPath is the path in the spec of a manifest key of workload w's tasks:
// workload keys are in the w-th [[workload]], the manifest settings of
// [run] (duration, max_in_flight, …) under run.
func specPath(key string, w int) []string {
	path := strings.Split(key, ".")
	switch {
	case path[0] == "workload":
		return append([]string{"workload", tomlstrict.Elem(w)}, path[1:]...)
	case len(path) == 1 && contains(manifestRunKeys(), key):
		return []string{"run", key}
	}
	return path
}

// taskMsg names the task in a message about a plan with several.
func taskMsg(several bool, idx int, msg string) string {
	if several {
		return fmt.Sprintf("task %d: %s", idx, msg)
	}
	return msg
}

// MaxTasks bounds a plan; larger sweeps are almost always a typo.
const MaxTasks = 100000

// MaxPlanSources bounds the work of checking a plan: the workload sources
// (open and closed loops) of all its tasks together.
const MaxPlanSources = 10_000_000

// paramTags picks a short tag name per sweep key: its last segment, or the
// whole key with '_' for '.' where last segments collide.
func paramTags(keys []string) map[string]string {
	count := map[string]int{}
	for _, k := range keys {
		count[lastSeg(k)]++
	}
	out := map[string]string{}
	for _, k := range keys {
		if count[lastSeg(k)] > 1 || lastSeg(k) == "workload" {
			out[k] = strings.ReplaceAll(k, ".", "_")
		} else {
			out[k] = lastSeg(k)
		}
	}
	return out
}

func lastSeg(k string) string { return k[strings.LastIndexByte(k, '.')+1:] }

var badTaskChars = regexp.MustCompile(`[^A-Za-z0-9._=+,:-]+`)

// taskName keeps task names safe as file names, job names and metric tags.
func taskName(s string) string {
	s = badTaskChars.ReplaceAllString(s, "_")
	if len(s) > 100 {
		s = s[:100]
	}
	return s
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []map[string]any:
		s := make([]map[string]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e).(map[string]any)
		}
		return s
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	default:
		return v
	}
}

// HomeDir is where this plan's experiment directory goes: [output] dir if
// set, else Home() ($GPUORCH_HOME or ./gpuorch-runs).
func (p *Plan) HomeDir() string {
	if p.Output.Dir != "" {
		return p.Output.Dir
	}
	return Home()
}

// TaskEnv is the environment, beyond the Slurm array variables, that every
// task of the plan gets: [output.influxdb] as GPUORCH_INFLUX_* (read by the
// task's metrics sinks). Executors append it; the Slurm executor adds
// [slurm] env itself.
func (p *Plan) TaskEnv() []string {
	var env []string
	if in := p.Output.InfluxDB; in != nil {
		env = append(env, "GPUORCH_INFLUX_URL="+in.URL)
		if in.Bucket != "" {
			env = append(env, "GPUORCH_INFLUX_BUCKET="+in.Bucket)
		}
		if in.Org != "" {
			env = append(env, "GPUORCH_INFLUX_ORG="+in.Org)
		}
		if in.TokenFile != "" {
			env = append(env, "GPUORCH_INFLUX_TOKEN_FILE="+in.TokenFile)
		}
	}
	return env
}
