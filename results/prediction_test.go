package results

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
)

// predictionPoint is a serving_prediction point as gpuorch bench writes it
// (llmbench.PredictionPoint; the CLI tests use that one).
func predictionPoint(exp, task string, ttft, tpot, e2el, outTokS float64, at time.Time) Point {
	return Point{Measurement: MeasServingPrediction, Time: at,
		Tags: map[string]string{TagExperiment: exp, TagTask: task, TagWorkload: "closed", TagProtocol: "openai", "concurrency": "4"},
		Fields: map[string]any{"ttft_ms": ttft, "tpot_ms": tpot, "e2el_ms": e2el, "output_tokens_per_s": outTokS,
			"requests_per_s": 2.5, "batch": int64(4), "kv_capacity": int64(100), "queue_ms": 0.0}}
}

func llmSummary(exp, task string, start time.Time) loadgen.Summary {
	q := func(d time.Duration) loadgen.Quantiles {
		return loadgen.Quantiles{Count: 10, Min: d / 2, Mean: d, P25: d, P50: d, P75: d, P90: d, P95: d, P99: d, P999: d, Max: d}
	}
	s := loadgen.Summary{Experiment: exp, Task: task, Workload: "closed", Protocol: "openai", Status: loadgen.StatusCompleted,
		Tags: map[string]string{"concurrency": "4"}, Started: start, Ended: start.Add(20 * time.Second)}
	s.Total = loadgen.Snapshot{Interval: -1, Offered: 10, Sent: 10, Completed: 10, SLOMet: 10,
		Latency: q(time.Second), TTFT: q(80 * time.Millisecond), TPOT: q(16 * time.Millisecond), E2EL: q(time.Second),
		InputTokens: 1000, OutputTokens: 2000}
	return s
}

func writePoints(t *testing.T, path string, pts ...Point) {
	t.Helper()
	lf, err := OpenLineFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := lf.Write(context.Background(), pts...); err != nil {
		t.Fatal(err)
	}
	if err := lf.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPredictionAgainst(t *testing.T) {
	for _, c := range []struct {
		name string
		pred Prediction
		meas Measured
		want map[string]float64
	}{
		{"all", Prediction{TTFT: 100, TPOT: 10, E2EL: 1100, OutputTokensPerS: 90}, Measured{TTFT: 80, TPOT: 16, E2EL: 1000, OutputTokensPerS: 100},
			map[string]float64{"ttft": 25, "tpot": -37.5, "e2el": 10, "output_tokens_per_s": -10}},
		{"unmeasured", Prediction{TTFT: 100, TPOT: 10}, Measured{TTFT: 50}, map[string]float64{"ttft": 100}},
		{"nothing", Prediction{TTFT: 100}, Measured{}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.pred.Against(c.meas)
			if !reflect.DeepEqual(c.pred.ErrorPct, c.want) {
				t.Errorf("ErrorPct = %v, want %v", c.pred.ErrorPct, c.want)
			}
		})
	}
}

// The local store reads prediction.lp beside metrics.lp; the copy of the
// prediction that the task sink put into metrics.lp is not counted twice;
// a copied directory (another experiment id) still matches by task.
func TestLoadPredictionsLocal(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	pred := predictionPoint("e1", "t0", 100, 10, 1100, 90, start.Add(-time.Minute))
	task := filepath.Join(dir, "tasks", "0")
	writePoints(t, filepath.Join(task, layout.PredictionFile), pred)
	writePoints(t, filepath.Join(task, layout.MetricsFile), append([]Point{pred}, SummaryPoints(llmSummary("e1", "t0", start))...)...)

	st := NewLocalStore(dir)
	pts, err := st.Query(context.Background(), Query{Measurement: MeasServingPrediction})
	if err != nil || len(pts) != 1 {
		t.Fatalf("prediction query: %d points, %v", len(pts), err)
	}
	if pts, _ := st.Query(context.Background(), Query{Measurement: MeasServingSummary}); len(pts) != 1 {
		t.Fatalf("summary query: %d points", len(pts))
	}
	for _, exp := range []string{"e1", ""} {
		res, err := Load(context.Background(), st, exp)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Tasks) != 1 || res.Tasks[0].Predicted == nil {
			t.Fatalf("rows: %+v", res.Tasks)
		}
		p := res.Tasks[0].Predicted
		want := map[string]float64{"ttft": 25, "tpot": -37.5, "e2el": 10, "output_tokens_per_s": -10}
		if p.TTFT != 100 || p.Concurrency != 4 || p.Batch != 4 || !reflect.DeepEqual(p.ErrorPct, want) {
			t.Errorf("prediction %+v, want errors %v", *p, want)
		}
	}

	// A copy of the experiment under another id matches by task name; a
	// task that has not run yet keeps its prediction without errors.
	res := Build(SummaryPoints(llmSummary("copy", "t0", start)), nil)
	res.AddPredictions([]Point{pred, predictionPoint("e1", "t1", 1, 1, 1, 1, start)})
	res.AddTaskStates([]TaskInfo{{Experiment: "copy", Task: "t1", State: "pending"}})
	if len(res.Tasks) != 2 || res.Tasks[0].Predicted == nil || res.Tasks[1].Predicted == nil || res.Tasks[1].Predicted.ErrorPct != nil {
		t.Fatalf("rows: %+v %+v", res.Tasks[0].Predicted, res.Tasks[1].Predicted)
	}

	// Tables: the prediction table, and FlatTable's extra columns only
	// with predictions.
	pt := res.PredictionTable(Human)
	if got := pt.Rows[0][1:7]; !reflect.DeepEqual(got, []string{"4", "completed", "80.00", "100.0", "+25.0%", "16.00"}) {
		t.Errorf("prediction table row: %v", pt.Rows[0])
	}
	with := FlatTable(res.Tasks, res.ParamKeys, Machine)
	without := FlatTable(Build(SummaryPoints(llmSummary("copy", "t0", start)), nil).Tasks, res.ParamKeys, Machine)
	if len(with.Columns) != len(without.Columns)+11 {
		t.Errorf("FlatTable: %d columns with predictions, %d without", len(with.Columns), len(without.Columns))
	}
}

// InfluxDB returns the same predictions as the local store.
func TestLoadPredictionsInflux(t *testing.T) {
	cfg := testDatabase(t)
	dir := t.TempDir()
	start := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	task := filepath.Join(dir, "tasks", "0")
	pred := predictionPoint("e1", "t0", 100, 10, 1100, 90, start.Add(-time.Minute))
	writePoints(t, filepath.Join(task, layout.PredictionFile), pred)
	local, err := OpenLineFile(filepath.Join(task, layout.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	inf, err := NewInfluxSink(cfg, filepath.Join(task, "influx-spool"))
	if err != nil {
		t.Fatal(err)
	}
	sink := Tee(local, inf)
	if err := sink.Write(context.Background(), append([]Point{pred}, SummaryPoints(llmSummary("e1", "t0", start))...)...); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := Load(context.Background(), NewLocalStore(dir), "e1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(context.Background(), NewInfluxSource(cfg), "e1")
	if err != nil {
		t.Fatal(err)
	}
	if a.Tasks[0].Predicted == nil || !reflect.DeepEqual(a.Tasks, b.Tasks) {
		t.Fatalf("rows differ:\nlocal  %+v\ninflux %+v", a.Tasks, b.Tasks)
	}
}
