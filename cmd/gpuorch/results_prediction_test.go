package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/llmbench"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/perfmodel"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/taskrun"
)

// predCase is one benchmark level: what was measured and what the roofline
// predicted, with the errors results show must print.
type predCase struct {
	concurrency                        int
	ttft, tpot, e2el                   time.Duration // measured means
	outTokens                          int64         // over 10 s
	pTTFT, pTPOT, pE2EL                time.Duration
	pOutTokS                           float64
	errTTFT, errTPOT, errE2EL, errOutS float64
}

var predCases = []predCase{
	{1, 200 * time.Millisecond, 10 * time.Millisecond, 400 * time.Millisecond, 1000,
		210 * time.Millisecond, 9 * time.Millisecond, 400 * time.Millisecond, 120, 5, -10, 0, 20},
	{4, 400 * time.Millisecond, 20 * time.Millisecond, 800 * time.Millisecond, 4000,
		300 * time.Millisecond, 25 * time.Millisecond, 1000 * time.Millisecond, 300, -25, 25, 25, -25},
	{8, 0, 0, 0, 0, 150 * time.Millisecond, 12 * time.Millisecond, 500 * time.Millisecond, 500, 0, 0, 0, 0}, // not run
}

// makeBenchExperiment creates a benchmark-like experiment: every task has a
// prediction written by llmbench.WritePrediction (as bench run does);
// the tasks that ran copied it into their task sink (as bench task does)
// and wrote their summary points and summary.json as loadgen run does.
func makeBenchExperiment(t *testing.T, home string) *orchestrator.Experiment {
	t.Helper()
	plan := &orchestrator.Plan{Experiment: orchestrator.ExperimentSpec{Name: "llm-bench"}, SweepKeys: []string{"workload.concurrency"}}
	for i, c := range predCases {
		name := fmt.Sprintf("t%03d-concurrency=%d", i, c.concurrency)
		cfg := loadgen.Config{Task: name, Tags: map[string]string{"concurrency": fmt.Sprint(c.concurrency)}}
		cfg.Target.Protocol = "openai"
		cfg.Workload.Concurrency = c.concurrency
		plan.Tasks = append(plan.Tasks, orchestrator.Task{Index: i, Name: name, Workload: "closed",
			Params: map[string]any{"workload.concurrency": c.concurrency}, Config: cfg})
	}
	exp, err := orchestrator.Create(home, nil, plan, "local")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	for i, c := range predCases {
		task := plan.Tasks[i]
		pred := perfmodel.Prediction{Concurrency: c.concurrency, Batch: c.concurrency, KVCapacity: 64,
			TTFT: c.pTTFT, TPOT: c.pTPOT, E2EL: c.pE2EL, OutputTokensPerS: c.pOutTokS, RequestsPerS: 1}
		if err := llmbench.WritePrediction(exp.TaskDir(i), exp.ID(), &task, pred); err != nil {
			t.Fatal(err)
		}
		if c.ttft == 0 {
			continue // pending: a prediction, no measurement
		}
		q := func(d time.Duration) loadgen.Quantiles {
			return loadgen.Quantiles{Count: 20, Min: d / 2, Mean: d, P25: d * 9 / 10, P50: d, P75: d * 11 / 10, P90: d * 12 / 10,
				P95: d * 13 / 10, P99: d * 2, P999: d * 2, Max: d * 2}
		}
		sum := loadgen.Summary{Experiment: exp.ID(), Task: task.Name, Workload: "closed", Target: "http://127.0.0.1:8000", Protocol: "openai",
			Tags: task.Config.Tags, Status: loadgen.StatusCompleted, Started: t0, Ended: t0.Add(10 * time.Second)}
		sum.Total = loadgen.Snapshot{Interval: -1, Offered: 20, Sent: 20, Completed: 20, SLOMet: 20, OfferedRate: 2, AchievedRate: 2, Goodput: 2,
			Latency: q(c.e2el), TTFT: q(c.ttft), TPOT: q(c.tpot), ITL: q(c.tpot), E2EL: q(c.e2el), InputTokens: 2000, OutputTokens: c.outTokens}
		sink, err := taskrun.OpenSink(t.Context(), layout.Task(exp.TaskDir(i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := taskrun.CopyPrediction(context.Background(), layout.Task(exp.TaskDir(i)), sink); err != nil {
			t.Fatal(err)
		}
		if err := sink.Write(context.Background(), results.SummaryPoints(sum)...); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(sum)
		if err := os.WriteFile(filepath.Join(exp.Dir, orchestrator.SummaryPath(i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := exp.UpdateTask(i, func(ts *orchestrator.TaskStatus) { ts.State = orchestrator.TaskCompleted }); err != nil {
			t.Fatal(err)
		}
	}
	return exp
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

type predJSON struct {
	Task      string
	Status    string
	Predicted *struct {
		TTFT     float64            `json:"ttft_ms"`
		TPOT     float64            `json:"tpot_ms"`
		E2EL     float64            `json:"e2el_ms"`
		OutTokS  float64            `json:"output_tokens_per_s"`
		ErrorPct map[string]float64 `json:"error_pct"`
	}
}

func checkPredRows(t *testing.T, rows []predJSON, withPending bool) {
	t.Helper()
	want := len(predCases)
	if !withPending {
		want--
	}
	if len(rows) < want {
		t.Fatalf("%d rows, want %d", len(rows), want)
	}
	for i, c := range predCases[:want] {
		r := rows[i]
		p := r.Predicted
		if p == nil {
			t.Fatalf("row %s: no prediction", r.Task)
		}
		ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
		if !near(p.TTFT, ms(c.pTTFT)) || !near(p.TPOT, ms(c.pTPOT)) || !near(p.E2EL, ms(c.pE2EL)) || !near(p.OutTokS, c.pOutTokS) {
			t.Errorf("row %s: predicted %+v, want %v %v %v %v", r.Task, *p, c.pTTFT, c.pTPOT, c.pE2EL, c.pOutTokS)
		}
		if c.ttft == 0 {
			if len(p.ErrorPct) != 0 || r.Status != "pending" {
				t.Errorf("pending row %s: status %s, errors %v", r.Task, r.Status, p.ErrorPct)
			}
			continue
		}
		for k, v := range map[string]float64{"ttft": c.errTTFT, "tpot": c.errTPOT, "e2el": c.errE2EL, "output_tokens_per_s": c.errOutS} {
			if got, ok := p.ErrorPct[k]; !ok || !near(got, v) {
				t.Errorf("row %s: error %s = %v (present %v), want %v", r.Task, k, got, ok, v)
			}
		}
	}
}

// results show puts the prediction beside the measured means with the
// error, in text, JSON and CSV; bench show prints the same errors.
func TestResultsShowPredictions(t *testing.T) {
	clearInfluxEnv(t)
	home := t.TempDir()
	exp := makeBenchExperiment(t, home)

	out, errOut, code := runCLI(t, home, "results", "show", "--json", exp.ID())
	if code != 0 {
		t.Fatalf("show --json: exit %d %s", code, errOut)
	}
	var rows []predJSON
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	checkPredRows(t, rows, true)

	text, errOut, code := runCLI(t, home, "results", "show", exp.ID())
	if code != 0 {
		t.Fatalf("show: exit %d %s", code, errOut)
	}
	_, table, ok := strings.Cut(text, "Predicted (roofline) vs measured\n")
	if !ok {
		t.Fatalf("no prediction table:\n%s", text)
	}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "task concurrency status ttft_mean_ms ttft_pred_ms ttft_err tpot_mean_ms tpot_pred_ms tpot_err e2el_mean_ms e2el_pred_ms e2el_err out_tok_s out_tok_s_pred out_tok_s_err" {
		t.Errorf("prediction header: %s", got)
	}
	if got := strings.Join(strings.Fields(lines[1]), " "); got != "t000-concurrency=1 1 completed 200.0 210.0 +5.0% 10.00 9.00 -10.0% 400.0 400.0 +0.0% 100.0 120.0 +20.0%" {
		t.Errorf("row c=1: %s", got)
	}
	if got := strings.Join(strings.Fields(lines[3]), " "); got != "t002-concurrency=8 8 pending - 150.0 - - 12.00 - - 500.0 - - 500.0 -" {
		t.Errorf("pending row: %s", got)
	}

	out, _, code = runCLI(t, home, "results", "show", "--csv", exp.ID())
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || code != 0 || len(recs) != 4 {
		t.Fatalf("csv (exit %d): %v\n%s", code, err, out)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		if _, dup := col[h]; dup {
			t.Errorf("csv column %s twice", h)
		}
		col[h] = i
	}
	for _, c := range []struct{ col, want string }{
		{"ttft_mean_ms", "400"}, {"ttft_pred_ms", "300"}, {"ttft_err_pct", "-25"}, {"tpot_err_pct", "25"},
		{"e2el_pred_ms", "1000"}, {"e2el_err_pct", "25"}, {"out_tok_s", "400"}, {"out_tok_s_pred", "300"}, {"out_tok_s_err_pct", "-25"},
	} {
		if i, ok := col[c.col]; !ok || recs[2][i] != c.want {
			t.Errorf("csv %s = %q (column present %v), want %s", c.col, recs[2][min(i, len(recs[2])-1)], ok, c.want)
		}
	}

	// bench show computes the same errors through the same code.
	out, errOut, code = runCLI(t, home, "bench", "show", "--json", exp.ID())
	if code != 0 {
		t.Fatalf("bench show: exit %d %s", code, errOut)
	}
	var bs struct {
		Levels []struct {
			ErrorPct map[string]float64 `json:"error_pct"`
		}
	}
	if err := json.Unmarshal([]byte(out), &bs); err != nil || len(bs.Levels) != 3 {
		t.Fatalf("bench show --json: %v\n%s", err, out)
	}
	for i, l := range bs.Levels[:2] {
		for k, v := range rows[i].Predicted.ErrorPct {
			if k == "output_tokens_per_s" {
				k = "output_throughput"
			}
			if !near(l.ErrorPct[k], v) {
				t.Errorf("level %d: bench show error %s = %v, results show %v", i, k, l.ErrorPct[k], v)
			}
		}
	}

	// An experiment without predictions prints no prediction columns.
	plain := makeExperiment(t, home, "plain", 1)
	text, _, _ = runCLI(t, home, "results", "show", plain.ID())
	csvOut, _, _ := runCLI(t, home, "results", "show", "--csv", plain.ID())
	if strings.Contains(text, "Predicted") || strings.Contains(csvOut, "_pred") {
		t.Errorf("prediction columns without predictions:\n%s\n%s", text, csvOut)
	}
}

// Through InfluxDB: the task sink carried each run task's prediction, so
// show from InfluxDB prints the same predictions and errors.
func TestResultsShowPredictionsInflux(t *testing.T) {
	clearInfluxEnv(t)
	base := testgate.InfluxDB(t)
	home := t.TempDir()
	t.Setenv("GPUORCH_INFLUX_URL", base)
	t.Setenv("GPUORCH_INFLUX_BUCKET", testDB(t, base))
	exp := makeBenchExperiment(t, home)
	out, errOut, code := runCLI(t, home, "results", "show", "--json", exp.ID())
	if code != 0 {
		t.Fatalf("show from influx: exit %d %s", code, errOut)
	}
	var rows []predJSON
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The pending task never ran, so its prediction is only local.
	checkPredRows(t, rows, false)
	if len(rows) != 3 || rows[2].Predicted != nil {
		t.Errorf("pending row from influx: %+v", rows)
	}
}
