package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
)

// writeLLMTask writes a task directory as an LLM task leaves it.
func writeLLMTask(t *testing.T, dir string, cfg loadgen.Config) {
	t.Helper()
	t0 := time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC)
	q := loadgen.Quantiles{Count: 100, Mean: 20 * time.Millisecond, P50: 20 * time.Millisecond, P99: 30 * time.Millisecond}
	sum := loadgen.Summary{Task: "0", Protocol: "openai", Status: loadgen.StatusCompleted, Started: t0, Ended: t0.Add(11 * time.Second),
		Total: loadgen.Snapshot{Interval: -1, Start: t0, End: t0.Add(10 * time.Second), Offered: 100, Completed: 100,
			TTFT: q, TPOT: q, ITL: q, E2EL: q, OutputTokens: 6400, InputTokens: 12800}}
	for name, v := range map[string]any{layout.SummaryFile: sum, layout.ManifestFile: cfg} {
		b, _ := json.Marshal(v)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestResultsExportCLI(t *testing.T) {
	home := t.TempDir()
	exp := filepath.Join(home, "sweep")
	cfg := loadgen.Config{Target: loadgen.TargetConfig{Protocol: "openai", Models: []string{"sim-llm"}},
		Workload: loadgen.WorkloadConfig{Arrival: "poisson", Rate: 10}}
	writeLLMTask(t, filepath.Join(exp, "tasks", "0"), cfg)

	// The only task of a directory, as vLLM's result file.
	out, stderr, code := runCLI(t, home, "results", "export", "--format", "vllm", exp)
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("exit %d: %s %s", code, out, stderr)
	}
	if v["model_id"] != "sim-llm" || v["request_rate"] != 10.0 || v["p99_ttft_ms"] != 30.0 || v["completed"] != 100.0 {
		t.Errorf("vllm export: %v", v)
	}

	// A second task: --task chooses; --out writes the file.
	writeLLMTask(t, filepath.Join(exp, "tasks", "1"), cfg)
	if _, stderr, code := runCLI(t, home, "results", "export", "--format", "aiperf", exp); code != 2 || !strings.Contains(stderr, "--task") {
		t.Errorf("two tasks, no --task: exit %d: %s", code, stderr)
	}
	file := filepath.Join(home, "aiperf.json")
	if _, stderr, code := runCLI(t, home, "results", "export", "--format", "aiperf", "--task", "1", "--out", file, exp); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, _ := os.ReadFile(file)
	if err := json.Unmarshal(b, &v); err != nil || v["time_to_first_token"].(map[string]any)["unit"] != "ms" {
		t.Errorf("aiperf export file: %v %s", err, b)
	}

	// A task directory itself (loadgen run --out), and the errors.
	if _, stderr, code := runCLI(t, home, "results", "export", "--format", "vllm", filepath.Join(exp, "tasks", "1")); code != 0 {
		t.Errorf("task directory: exit %d: %s", code, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "genai-perf", exp + "/tasks/0"}, "unknown export format"},
		{[]string{"--format", "vllm", "--task", "7", exp}, "no results to export"},
		{[]string{"--format", "vllm", "--task", "x", exp}, "want a task index"},
		{[]string{"--format", "vllm"}, "usage"},
	} {
		_, stderr, code := runCLI(t, home, append([]string{"results", "export"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
