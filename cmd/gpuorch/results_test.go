package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/taskrun"
)

// runCLI runs the gpuorch app in-process and returns its output and exit code.
func runCLI(t *testing.T, home string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	t.Setenv("GPUORCH_HOME", home)
	app := newApp()
	var o, e bytes.Buffer
	app.Writer, app.ErrWriter = &o, &e
	code = run(t.Context(), app, append([]string{"gpuorch"}, args...), &e)
	return o.String(), e.String(), code
}

// makeExperiment creates an experiment of three tasks with the orchestrator
// and writes points for the first two as `gpuorch loadgen run` would, with
// p99 latencies scaled by scale; the third task stays pending.
func makeExperiment(t *testing.T, home, name string, scale float64) *orchestrator.Experiment {
	t.Helper()
	plan := &orchestrator.Plan{Experiment: orchestrator.ExperimentSpec{Name: name}, SweepKeys: []string{"workload.rate"}}
	for i, rate := range []int{100, 200, 400} {
		tags := map[string]string{"rate": fmt.Sprint(rate), "workload": "poisson"}
		plan.Tasks = append(plan.Tasks, orchestrator.Task{
			Index: i, Name: fmt.Sprintf("t%03d-rate=%d", i, rate), Workload: "poisson",
			Params: map[string]any{"workload.rate": rate},
			Config: loadgen.Config{Task: fmt.Sprintf("t%03d-rate=%d", i, rate), Tags: tags},
		})
	}
	exp, err := orchestrator.Create(home, nil, plan, "local")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	for i, task := range plan.Tasks[:2] {
		rate := float64(100 * (i + 1))
		sum := loadgen.Summary{
			Experiment: exp.ID(), Task: task.Name, Workload: "poisson", Target: "http://127.0.0.1:8000", Protocol: "kserve",
			Tags: task.Config.Tags, Status: loadgen.StatusCompleted, Started: t0, Ended: t0.Add(10 * time.Second),
		}
		ms := func(v float64) time.Duration { return time.Duration(v * scale * float64(time.Millisecond)) }
		sum.Total = loadgen.Snapshot{Interval: -1, Offered: int64(10 * rate), Sent: int64(10 * rate), Completed: int64(10 * rate), SLOMet: int64(9 * rate),
			OfferedRate: rate, AchievedRate: rate, Goodput: 0.9 * rate,
			Latency: loadgen.Quantiles{Count: int64(10 * rate), P50: ms(4), P90: ms(8), P99: ms(10 * float64(i+1)), P999: ms(50)}}
		sum.Steps = []loadgen.Snapshot{
			{Start: t0, SLOFactor: 2, Offered: int64(5 * rate), Completed: int64(5 * rate), SLOMet: int64(4 * rate), Goodput: 0.8 * rate},
			{Start: t0.Add(5 * time.Second), SLOFactor: 4, Offered: int64(5 * rate), Completed: int64(5 * rate), SLOMet: int64(5 * rate), Goodput: rate},
		}
		sink, err := taskrun.OpenSink(t.Context(), layout.Task(exp.TaskDir(task.Index)))
		if err != nil {
			t.Fatal(err)
		}
		snap := loadgen.Snapshot{Interval: 0, Start: t0, End: t0.Add(time.Second), Offered: int64(rate), Completed: int64(rate)}
		if err := sink.Write(context.Background(), results.SnapshotPoints(sum, snap)...); err != nil {
			t.Fatal(err)
		}
		if err := sink.Write(context.Background(), results.SummaryPoints(sum)...); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		if err := exp.UpdateTask(i, func(ts *orchestrator.TaskStatus) { ts.State = orchestrator.TaskCompleted }); err != nil {
			t.Fatal(err)
		}
	}
	return exp
}

func TestResultsShowCLI(t *testing.T) {
	home := t.TempDir()
	exp := makeExperiment(t, home, "show", 1)

	out, errOut, code := runCLI(t, home, "results", "show", exp.ID())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "experiment "+exp.ID()) {
		t.Fatalf("output:\n%s", out)
	}
	if got := strings.Join(strings.Fields(lines[2]), " "); got != "task rate status offered_rps achieved_rps p50_ms p90_ms p99_ms p99.9_ms errors timeouts dropped slo_attainment goodput_rps" {
		t.Errorf("header: %s", got)
	}
	if got := strings.Join(strings.Fields(lines[4]), " "); got != "t001-rate=200 200 completed 200.0 200.0 4.00 8.00 20.00 50.00 0 0 0 90.00% 180.0" {
		t.Errorf("row t001: %s", got)
	}
	if got := strings.Fields(lines[5]); got[0] != "t002-rate=400" || got[1] != "400" || got[2] != "pending" {
		t.Errorf("pending row: %v", got)
	}
	if !strings.Contains(errOut, "--per-step") {
		t.Errorf("no hint about --per-step: %q", errOut)
	}

	// By name (latest run) and by directory, with SLO steps.
	out, _, code = runCLI(t, home, "results", "show", "--per-step", "show")
	if code != 0 || !strings.Contains(out, "SLO steps") || !strings.Contains(out, "80.00%") {
		t.Errorf("--per-step (exit %d):\n%s", code, out)
	}
	out2, _, _ := runCLI(t, home, "results", "show", "--per-step", exp.Dir)
	if out2 != out {
		t.Errorf("show by directory differs from show by name:\n%s\n%s", out2, out)
	}

	// --json: an array of row objects, tasks then steps.
	out, _, code = runCLI(t, home, "results", "show", "--json", "--per-step", exp.ID())
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != 0 {
		t.Fatalf("json (exit %d): %v\n%s", code, err, out)
	}
	if len(rows) != 3+4 || rows[1]["task"] != "t001-rate=200" || rows[1]["goodput"] != 180.0 || rows[2]["status"] != "pending" ||
		rows[3]["breakdown"] != "step" || rows[4]["slo_factor"] != 4.0 {
		t.Errorf("json rows: %v", rows)
	}

	// --csv: header plus one record per row, every column.
	out, _, code = runCLI(t, home, "results", "show", "--csv", exp.ID())
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || code != 0 || len(recs) != 4 || recs[0][0] != "experiment" || recs[2][1] != "t001-rate=200" {
		t.Errorf("csv (exit %d, %v): %v", code, err, recs)
	}
}

func TestResultsShowCLIErrors(t *testing.T) {
	home := t.TempDir()
	if _, errOut, code := runCLI(t, home, "results", "show", "no-such-exp"); code != exitUsage || !strings.Contains(errOut, "not found") {
		t.Errorf("unknown experiment: exit %d, %q", code, errOut)
	}
	if _, _, code := runCLI(t, home, "results", "show"); code != exitUsage {
		t.Errorf("missing EXP: exit %d", code)
	}
	exp := makeExperiment(t, home, "errs", 1)
	if _, _, code := runCLI(t, home, "results", "show", "--json", "--csv", exp.ID()); code != exitUsage {
		t.Errorf("--json --csv: exit %d", code)
	}
	// A torn line (task killed mid-write) is a warning with file:line, not a failure.
	mf := filepath.Join(exp.TaskDir(0), "metrics.lp")
	f, _ := os.OpenFile(mf, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("serving,task=x offered=")
	f.Close()
	out, errOut, code := runCLI(t, home, "results", "show", exp.ID())
	if code != 0 || !strings.Contains(errOut, mf+":") || !strings.Contains(out, "t001-rate=200") {
		t.Errorf("torn line: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

func TestResultsCompareCLI(t *testing.T) {
	home := t.TempDir()
	a := makeExperiment(t, home, "base", 1)
	b := makeExperiment(t, home, "tuned", 0.5)

	out, errOut, code := runCLI(t, home, "results", "compare", a.ID(), b.ID())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var p99 string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "poisson rate=200") && strings.Contains(l, "p99_ms ") {
			p99 = strings.Join(strings.Fields(l), " ")
		}
	}
	if p99 != "poisson rate=200 p99_ms 20.00 10.00 -10.00 (-50.0%)" {
		t.Errorf("p99 line %q in:\n%s", p99, out)
	}

	out, _, code = runCLI(t, home, "results", "compare", "--csv", a.ID(), b.ID())
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || code != 0 {
		t.Fatalf("csv: exit %d, %v", code, err)
	}
	if strings.Join(recs[0], ",") != "key,task,breakdown,class,step,metric,"+a.ID()+","+b.ID()+",delta_"+b.ID()+",delta_pct_"+b.ID() {
		t.Errorf("csv header %v", recs[0])
	}

	out, _, code = runCLI(t, home, "results", "compare", "--json", "--per-step", a.ID(), b.ID())
	var rows []results.CompareRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != 0 {
		t.Fatalf("json: exit %d, %v", code, err)
	}
	steps := 0
	for _, r := range rows {
		if r.Breakdown == "step" {
			steps++
		}
	}
	if steps != 4*len(results.CompareMetrics) {
		t.Errorf("step rows: %d", steps)
	}
	if _, _, code := runCLI(t, home, "results", "compare", a.ID()); code != exitUsage {
		t.Errorf("one EXP: exit %d", code)
	}
}

// TestResultsShowDirMustBeAnExperiment: a directory is reviewed only when it
// is an experiment directory or holds task metrics where the layout puts
// them; $GPUORCH_HOME itself, /usr or an empty directory are refused with
// exit 2, naming what was expected, and nothing is walked.
func TestResultsShowDirMustBeAnExperiment(t *testing.T) {
	home := t.TempDir()
	exp := makeExperiment(t, home, "dirs", 1)
	makeExperiment(t, home, "other", 2)
	empty := t.TempDir()
	// Metrics deeper than the layout (tasks/<i>/metrics.lp) are not looked for.
	deep := t.TempDir()
	if err := os.MkdirAll(filepath.Join(deep, "a", "tasks", "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(exp.TaskDir(0), "metrics.lp"), filepath.Join(deep, "a", "tasks", "0", "metrics.lp")); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{home, "/usr", empty, deep} {
		out, errOut, code := runCLI(t, home, "results", "show", dir)
		if code != exitUsage || !strings.Contains(errOut, "not an experiment directory") || !strings.Contains(errOut, "tasks/<i>/metrics.lp") || out != "" {
			t.Errorf("results show %s: exit %d\nstdout %q\nstderr %q", dir, code, out, errOut)
		}
	}
	if _, errOut, code := runCLI(t, home, "results", "compare", exp.ID(), home); code != exitUsage || !strings.Contains(errOut, "not an experiment directory") {
		t.Errorf("compare with $GPUORCH_HOME: exit %d, %q", code, errOut)
	}

	// Accepted: an experiment directory; a copy of its tasks/ alone (from a
	// cluster); a `loadgen run --out` directory (metrics.lp at its top).
	copied := t.TempDir()
	if err := os.MkdirAll(filepath.Join(copied, "tasks", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(exp.TaskDir(1), "metrics.lp"), filepath.Join(copied, "tasks", "1", "metrics.lp")); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{exp.Dir, copied, exp.TaskDir(1)} {
		out, errOut, code := runCLI(t, home, "results", "show", dir)
		if code != 0 || !strings.Contains(out, "t001-rate=200") {
			t.Errorf("results show %s: exit %d\nstdout %s\nstderr %s", dir, code, out, errOut)
		}
	}
}

// TestResultsShowMalformedMetrics: malformed lines are counted and reported
// once per file (file:line and how many), whatever measurement they would
// have been; a metrics file without a single valid line is an error, not an
// empty table.
func TestResultsShowMalformedMetrics(t *testing.T) {
	home := t.TempDir()
	exp := makeExperiment(t, home, "garbage", 1)
	mf := filepath.Join(exp.TaskDir(0), "metrics.lp")
	f, err := os.OpenFile(mf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Not one of them looks like a serving point.
	f.WriteString("hello world\n{\"json\": true}\n\x00\x01\x02\nserving_summary,task=x offered=\n")
	f.Close()
	lines := strings.Count(readFile(mf), "\n")
	out, errOut, code := runCLI(t, home, "results", "show", exp.ID())
	if code != 0 || !strings.Contains(out, "t000-rate=100") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	want := fmt.Sprintf("%s: 4 malformed lines skipped (lines %d, %d, %d, %d)", mf, lines-3, lines-2, lines-1, lines)
	if !strings.Contains(errOut, want) || strings.Count(errOut, mf) != 1 {
		t.Errorf("stderr %q\nwant one warning: %q", errOut, want)
	}

	// Nothing valid at all: an error naming the file, exit 2.
	gf := filepath.Join(exp.TaskDir(1), "metrics.lp")
	if err := os.WriteFile(gf, []byte("this is not line protocol\nnor is this\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, home, "results", "show", exp.ID())
	if code != exitUsage || !strings.Contains(errOut, gf+":1:") || !strings.Contains(errOut, "no valid line (2 malformed)") || out != "" {
		t.Errorf("all garbage: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}
