package results

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
)

// sloExperiment writes a 3-task experiment to a temp directory through the
// conversions and the local sink:
//   - t0-rate=100, t1-rate=200: completed, with two SLO steps and fg/bg classes
//   - t2-rate=400: killed after two intervals (no summary)
func sloExperiment(t *testing.T, id string, latScale float64) string {
	t.Helper()
	dir := t.TempDir()
	for i, rate := range []int{100, 200, 400} {
		meta := loadgen.Summary{
			Experiment: id, Task: fmt.Sprintf("t%d-rate=%d", i, rate), Workload: "slo-exp-2",
			Target: "http://127.0.0.1:8080/v2", Protocol: "kserve",
			Tags:    map[string]string{"rate": fmt.Sprint(rate)},
			Started: t0, Ended: t0.Add(20 * time.Second),
		}
		lat := func(p50, p99 float64) loadgen.Quantiles {
			d := func(ms float64) time.Duration { return time.Duration(ms * latScale * 1e6) }
			return loadgen.Quantiles{Count: 10, Min: d(1), Mean: d(p50), P25: d(p50), P50: d(p50), P75: d(p50), P90: d(p99 / 2), P95: d(p99 / 2), P99: d(p99), P999: d(p99 * 2), Max: d(p99 * 3)}
		}
		var snaps []loadgen.Snapshot
		for k := 0; k < 20; k++ {
			s := loadgen.Snapshot{Interval: k, Start: t0.Add(time.Duration(k) * time.Second), End: t0.Add(time.Duration(k+1) * time.Second),
				SLOFactor: 2, Offered: int64(rate), Sent: int64(rate), Completed: int64(rate - 1), Errors: 1, SLOMet: int64(rate - 5),
				OfferedRate: float64(rate), AchievedRate: float64(rate - 1), Goodput: float64(rate - 5), Latency: lat(5, 20)}
			if k >= 10 {
				s.SLOFactor = 4
			}
			snaps = append(snaps, s)
			fg := s
			fg.Class = "fg"
			snaps = append(snaps, fg) // class series must not be double counted
		}
		if i == 2 {
			meta.Status = "" // killed: no summary
			writeTask(t, dir, i, meta, snaps[:4])
			continue
		}
		meta.Status = loadgen.StatusCompleted
		meta.Total = loadgen.Snapshot{Interval: -1, Start: t0, End: t0.Add(20 * time.Second),
			Offered: int64(20 * rate), Sent: int64(20 * rate), Completed: int64(20*rate - 20), Errors: 12, Timeouts: 5, Dropped: 3,
			SLOMet: int64(18 * rate), OfferedRate: float64(rate), AchievedRate: float64(rate) - 1, Goodput: float64(rate) * 0.9,
			Latency: lat(float64(5+i), float64(20+10*i))}
		meta.Steps = []loadgen.Snapshot{
			{Interval: 0, Start: t0, SLOFactor: 2, Offered: int64(10 * rate), Completed: int64(10 * rate), SLOMet: int64(8 * rate), Goodput: float64(rate) * 0.8, Latency: lat(5, 20)},
			{Interval: 10, Start: t0.Add(10 * time.Second), SLOFactor: 4, Offered: int64(10 * rate), Completed: int64(10 * rate), SLOMet: int64(10 * rate), Goodput: float64(rate), Latency: lat(5, 20)},
		}
		meta.Classes = []loadgen.Snapshot{
			{Interval: -1, Class: "fg", Offered: int64(15 * rate), Completed: int64(15 * rate), SLOMet: int64(15 * rate), OfferedRate: float64(rate) * .75, Latency: lat(4, 10)},
			{Interval: -1, Class: "bg", Offered: int64(5 * rate), Completed: int64(5 * rate), SLOMet: int64(3 * rate), OfferedRate: float64(rate) * .25, Latency: lat(9, 90)},
		}
		writeTask(t, dir, i, meta, snaps)
	}
	return dir
}

func TestLoadBuildsRowsFromConvertedPoints(t *testing.T) {
	dir := sloExperiment(t, "e1", 1)
	res, err := Load(context.Background(), NewLocalStore(dir), "e1")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tasks) != 3 || len(res.Steps) != 4 || len(res.Classes) != 4 {
		t.Fatalf("rows: %d tasks, %d steps, %d classes; want 3, 4, 4", len(res.Tasks), len(res.Steps), len(res.Classes))
	}
	if fmt.Sprint(res.ParamKeys) != "[rate]" {
		t.Errorf("param keys %v", res.ParamKeys)
	}
	t1 := res.Tasks[1]
	if t1.Task != "t1-rate=200" || t1.Params["rate"] != "200" || t1.Status != "completed" || t1.Target != "127.0.0.1:8080" ||
		t1.Offered != 4000 || t1.Errors != 12 || t1.Timeouts != 5 || t1.Dropped != 3 || t1.OfferedRate != 200 || t1.AchievedRate != 199 ||
		t1.Goodput != 180 || t1.SLOAttainment == nil || *t1.SLOAttainment != 0.9 || t1.DurationS != 20 || t1.Step != -1 {
		t.Errorf("task row t1: %+v", t1)
	}
	if t1.Latency == nil || t1.Latency.P50 != 6 || t1.Latency.P99 != 30 || t1.Latency.P999 != 60 || t1.Latency.P90 != 15 {
		t.Errorf("t1 latency: %+v", t1.Latency)
	}
	// The killed task: summed from its all-requests interval points only
	// (the fg class series is not added), rates over 2 s, no percentiles.
	t2 := res.Tasks[2]
	if t2.Status != StatusIncomplete || t2.Offered != 800 || t2.Completed != 798 || t2.Errors != 2 || t2.OfferedRate != 400 ||
		t2.Goodput != 395 || t2.Latency != nil || t2.Params["rate"] != "400" || math.Abs(*t2.SLOAttainment-790.0/800) > 1e-12 {
		t.Errorf("incomplete row t2: %+v", t2)
	}
	// Steps of t0: attainment and goodput per SLO factor.
	s0, s1 := res.Steps[0], res.Steps[1]
	if s0.Task != "t0-rate=100" || s0.Step != 0 || s0.SLOFactor != 2 || *s0.SLOAttainment != 0.8 || s0.Goodput != 80 ||
		s1.Step != 1 || s1.SLOFactor != 4 || *s1.SLOAttainment != 1 || s1.Goodput != 100 || s1.Breakdown != BreakdownStep {
		t.Errorf("steps: %+v\n%+v", s0, s1)
	}
	// Classes sorted by name within a task: bg, fg.
	c0, c1 := res.Classes[0], res.Classes[1]
	if c0.Class != "bg" || *c0.SLOAttainment != 0.6 || c0.Latency.P99 != 90 || c1.Class != "fg" || *c1.SLOAttainment != 1 || c1.OfferedRate != 75 {
		t.Errorf("classes: %+v\n%+v", c0, c1)
	}

	// Experiment filter: another id yields nothing.
	if other, _ := Load(context.Background(), NewLocalStore(dir), "nope"); len(other.Tasks) != 0 {
		t.Errorf("filter by experiment: %d rows", len(other.Tasks))
	}
}

func TestTaskTableText(t *testing.T) {
	res, err := Load(context.Background(), NewLocalStore(sloExperiment(t, "e1", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	tab := res.TaskTable(Human)
	wantCols := "task rate status offered_rps achieved_rps p50_ms p90_ms p99_ms p99.9_ms errors timeouts dropped slo_attainment goodput_rps"
	if strings.Join(tab.Columns, " ") != wantCols {
		t.Errorf("columns\n got %s\nwant %s", strings.Join(tab.Columns, " "), wantCols)
	}
	var b bytes.Buffer
	if err := tab.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("text table:\n%s", b.String())
	}
	if f := strings.Fields(lines[2]); strings.Join(f, " ") != "t1-rate=200 200 completed 200.0 199.0 6.00 15.00 30.00 60.00 12 5 3 90.00% 180.0" {
		t.Errorf("row t1: %q", lines[2])
	}
	if f := strings.Fields(lines[3]); f[2] != "incomplete" || f[5] != "-" || f[12] != "98.75%" {
		t.Errorf("row t2: %q", lines[3])
	}
	// Columns line up: every row starts its status column at the same offset.
	col := strings.Index(lines[0], "status")
	for _, l := range lines[1:] {
		if l[col-2:col] != "  " || l[col] == ' ' {
			t.Errorf("misaligned row %q (status at %d)", l, col)
		}
	}

	st := res.StepTable(Human)
	if strings.Join(st.Columns, " ") != "task rate step slo_factor offered completed slo_met slo_attainment goodput_rps p50_ms p99_ms" || len(st.Rows) != 4 ||
		strings.Join(st.Rows[1], " ") != "t0-rate=100 100 1 4.00 1000 1000 1000 100.00% 100.0 5.00 20.00" {
		t.Errorf("step table: %v\n%v", st.Columns, st.Rows)
	}
	ct := res.ClassTable(Human)
	if len(ct.Rows) != 4 || ct.Rows[0][2] != "bg" || ct.Rows[0][12] != "60.00%" {
		t.Errorf("class table: %v\n%v", ct.Columns, ct.Rows)
	}
}

func TestFlatTableCSVAndJSON(t *testing.T) {
	res, err := Load(context.Background(), NewLocalStore(sloExperiment(t, "e1", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	rows := append(append(append([]Row{}, res.Tasks...), res.Steps...), res.Classes...)
	tab := FlatTable(rows, res.ParamKeys, Machine)
	var b bytes.Buffer
	if err := tab.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+3+4+4 {
		t.Fatalf("csv records: %d", len(recs))
	}
	hdr := map[string]int{}
	for i, c := range recs[0] {
		hdr[c] = i
	}
	for _, c := range []string{"experiment", "task", "breakdown", "class", "step", "rate", "status", "offered_rps", "latency_p99_ms", "slo_attainment", "goodput_rps", "ttft_p99_ms", "output_tokens"} {
		if _, ok := hdr[c]; !ok {
			t.Errorf("csv header lacks %s: %v", c, recs[0])
		}
	}
	if recs[0][0] != "experiment" || hdr["rate"] != hdr["protocol"]+1 {
		t.Errorf("csv column order: %v", recs[0])
	}
	r := recs[2] // t1
	if r[hdr["task"]] != "t1-rate=200" || r[hdr["slo_attainment"]] != "0.9" || r[hdr["latency_p99_ms"]] != "30" || r[hdr["step"]] != "" || r[hdr["ttft_p99_ms"]] != "" {
		t.Errorf("csv t1: %v", r)
	}
	if s := recs[5]; s[hdr["breakdown"]] != "step" || s[hdr["step"]] != "1" || s[hdr["slo_factor"]] != "4" {
		t.Errorf("csv step row: %v", s)
	}

	js, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != 11 || back[1]["task"] != "t1-rate=200" || back[1]["slo_attainment"] != 0.9 ||
		back[1]["latency"].(map[string]any)["p99_ms"] != 30.0 || back[1]["params"].(map[string]any)["rate"] != "200" ||
		back[2]["latency"] != nil || back[3]["breakdown"] != "step" {
		t.Errorf("json rows: %s", js)
	}
}

func TestLLMColumns(t *testing.T) {
	dir := t.TempDir()
	q := loadgen.Quantiles{Count: 4, P50: 50 * time.Millisecond, P99: 90 * time.Millisecond}
	meta := loadgen.Summary{Experiment: "llm", Task: "t0", Protocol: "openai", Status: "completed", Started: t0, Ended: t0.Add(10 * time.Second)}
	meta.Total = loadgen.Snapshot{Interval: -1, Offered: 4, Completed: 4, SLOMet: 4, Latency: q, TTFT: q, TPOT: q, ITL: q, E2EL: q, OutputTokens: 1000}
	writeTask(t, dir, 0, meta, nil)
	res, _ := Load(context.Background(), NewLocalStore(dir), "")
	tab := res.TaskTable(Human)
	cols := strings.Join(tab.Columns, " ")
	if !strings.Contains(cols, "ttft_p50_ms ttft_p99_ms tpot_p50_ms tpot_p99_ms itl_p50_ms itl_p99_ms e2el_p50_ms e2el_p99_ms out_tok_s") {
		t.Fatalf("LLM columns missing: %s", cols)
	}
	row := strings.Join(tab.Rows[0][len(tab.Rows[0])-9:], " ")
	if row != "50.00 90.00 50.00 90.00 50.00 90.00 50.00 90.00 100.0" {
		t.Errorf("LLM cells: %s", row)
	}
}

func TestAddTaskStates(t *testing.T) {
	res, err := Load(context.Background(), NewLocalStore(sloExperiment(t, "e1", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	res.AddTaskStates([]TaskInfo{
		{Experiment: "e1", Task: "t0-rate=100", State: "completed"},
		{Experiment: "e1", Task: "t2-rate=400", State: "failed", Error: "exit status 1"},
		{Experiment: "e1", Task: "t10-rate=800", State: "pending", Workload: "w", Params: map[string]string{"rate": "800", "burst": "2", "workload": "w"}},
		{Experiment: "e1", Task: "t3-rate=600", State: "failed", Error: "target unreachable"},
	})
	var got []string
	for _, r := range res.Tasks {
		got = append(got, r.Task+":"+r.Status+":"+r.Error)
	}
	want := "t0-rate=100:completed:|t1-rate=200:completed:|t2-rate=400:failed:exit status 1|t3-rate=600:failed:target unreachable|t10-rate=800:pending:"
	if strings.Join(got, "|") != want {
		t.Errorf("rows\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
	if fmt.Sprint(res.ParamKeys) != "[burst rate]" || res.Tasks[4].Params["rate"] != "800" || res.Tasks[4].Latency != nil {
		t.Errorf("params %v, row %+v", res.ParamKeys, res.Tasks[4])
	}
}

func TestParamsFromTags(t *testing.T) {
	tags := map[string]string{"experiment": "e", "task": "t1", "workload": "poisson", "sweep_workload": "poisson", "rate": "5", "sweep_task": "x", "model": "m"}
	// With sweep_tags: exactly the listed keys, under their sweep_ names;
	// a key repeating an identity tag's value is dropped.
	p := Point{Measurement: MeasServingSummary, Tags: tags, Fields: map[string]any{"sweep_tags": "rate,task,workload,model"}}
	if got := fmt.Sprint(params(p)); got != "map[model:m rate:5 task:x]" {
		t.Errorf("with sweep_tags: %s", got)
	}
	// Without (interval points): every non-identity tag.
	p.Fields = map[string]any{}
	if got := fmt.Sprint(params(p)); got != "map[rate:5 task:x]" {
		t.Errorf("without sweep_tags: %s", got)
	}
}
