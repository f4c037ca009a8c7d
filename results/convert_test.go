package results

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
)

var t0 = time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)

// quant returns Quantiles whose every value is distinct and derived from
// base, so a field landing in the wrong place is caught.
func quant(count int64, base time.Duration) loadgen.Quantiles {
	return loadgen.Quantiles{
		Count: count, Min: base, Mean: base + 1*time.Microsecond,
		P25: base + 2*time.Microsecond, P50: base + 3*time.Microsecond,
		P75: base + 4*time.Microsecond, P90: base + 5*time.Microsecond,
		P95: base + 6*time.Microsecond, P99: base + 7*time.Microsecond,
		P999: base + 8*time.Microsecond, Max: base + 9*time.Microsecond,
	}
}

func fullSnapshot() loadgen.Snapshot {
	return loadgen.Snapshot{
		Interval: 7, Start: t0.Add(7 * time.Second), End: t0.Add(8 * time.Second),
		Class: "fg", Model: "resnet50-1", SLOFactor: 4,
		Offered: 100, Sent: 99, Completed: 90, Errors: 3, Timeouts: 2, Dropped: 1, Cancelled: 4, SLOMet: 80,
		OfferedRate: 100.5, AchievedRate: 90.25, Goodput: 80.125,
		Latency: quant(90, 10*time.Millisecond), Service: quant(91, 9*time.Millisecond),
		Lateness: quant(99, 50*time.Microsecond),
		TTFT:     quant(88, 20*time.Millisecond), TPOT: quant(87, 5*time.Millisecond),
		ITL: quant(500, 4*time.Millisecond), E2EL: quant(86, 300*time.Millisecond),
		InputTokens: 12345, OutputTokens: 6789,
		HDR: map[string]string{"latency": "HISTFAAAACx42pNpmSzMwMBgwQABjFCaEUzOmMFgDxEAAEZNAjk="},
	}
}

func testMeta() loadgen.Summary {
	return loadgen.Summary{
		Experiment: "exp1", Task: "t001-rate=100", Workload: "poisson",
		Target: "http://user:secret@127.0.0.1:8080/v2/models/x/infer?q=1", Protocol: "kserve",
		Tags:    map[string]string{"rate": "100", "task": "clash", "workload": "poisson"},
		Started: t0,
	}
}

// wantQuant lists the fields addQuantiles must produce for q under prefix.
func wantQuant(want map[string]any, prefix string, q loadgen.Quantiles) {
	want[prefix+"_count"] = q.Count
	for suf, d := range map[string]time.Duration{
		"min": q.Min, "mean": q.Mean, "p25": q.P25, "p50": q.P50, "p75": q.P75,
		"p90": q.P90, "p95": q.P95, "p99": q.P99, "p999": q.P999, "max": q.Max,
	} {
		want[prefix+"_"+suf] = float64(d) / 1e6
	}
}

func TestSnapshotPointsEveryField(t *testing.T) {
	s := fullSnapshot()
	pts := SnapshotPoints(testMeta(), s)
	if len(pts) != 1 {
		t.Fatalf("got %d points, want 1", len(pts))
	}
	p := pts[0]
	if p.Measurement != MeasServing {
		t.Errorf("measurement %q", p.Measurement)
	}
	if !p.Time.Equal(s.Start) {
		t.Errorf("time %v, want interval start %v", p.Time, s.Start)
	}
	wantTags := map[string]string{
		"experiment": "exp1", "task": "t001-rate=100", "workload": "poisson",
		"target": "127.0.0.1:8080", "protocol": "kserve", "class": "fg", "model": "resnet50-1",
		"rate": "100", "sweep_task": "clash",
	}
	if !reflect.DeepEqual(p.Tags, wantTags) {
		t.Errorf("tags\n got %v\nwant %v", p.Tags, wantTags)
	}
	want := map[string]any{
		"interval": int64(7), "interval_s": 1.0, "slo_factor": 4.0,
		"offered": int64(100), "sent": int64(99), "completed": int64(90), "errors": int64(3),
		"timeouts": int64(2), "dropped": int64(1), "cancelled": int64(4), "slo_met": int64(80),
		"offered_rate": 100.5, "achieved_rate": 90.25, "goodput": 80.125,
		"slo_attainment": 0.8,
		"input_tokens":   int64(12345),
		"output_tokens":  int64(6789),
		"latency_hdr":    s.HDR["latency"],
	}
	wantQuant(want, "latency", s.Latency)
	wantQuant(want, "service", s.Service)
	wantQuant(want, "lateness", s.Lateness)
	wantQuant(want, "ttft", s.TTFT)
	wantQuant(want, "tpot", s.TPOT)
	wantQuant(want, "itl", s.ITL)
	wantQuant(want, "e2el", s.E2EL)
	for k, v := range want {
		got, ok := p.Fields[k]
		if !ok {
			t.Errorf("field %s missing", k)
			continue
		}
		if g, ok := got.(float64); ok {
			if w, ok := v.(float64); !ok || abs(g-w) > 1e-9 {
				t.Errorf("field %s = %v (%T), want %v (%T)", k, got, got, v, v)
			}
		} else if got != v {
			t.Errorf("field %s = %v (%T), want %v (%T)", k, got, got, v, v)
		}
	}
	for k := range p.Fields {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %s", k)
		}
	}
	// Every field must be encodable.
	if _, err := AppendLine(nil, p); err != nil {
		t.Fatal(err)
	}
}

// Every exported measured field of Snapshot must map to a field prefix in
// the point; this catches a field added to the contract but not stored.
func TestSnapshotPointsCoverContract(t *testing.T) {
	p := SnapshotPoints(testMeta(), fullSnapshot())[0]
	stored := map[string]string{ // Snapshot field → point field or tag
		"Interval": "interval", "Start": "(time)", "End": "interval_s", "Class": "tag:class",
		"Model": "tag:model", "SLOFactor": "slo_factor", "Offered": "offered", "Sent": "sent",
		"Completed": "completed", "Errors": "errors", "Timeouts": "timeouts", "Dropped": "dropped", "Cancelled": "cancelled",
		"SLOMet": "slo_met", "OfferedRate": "offered_rate", "AchievedRate": "achieved_rate",
		"Goodput": "goodput", "Latency": "latency_p99", "Service": "service_p99",
		"Lateness": "lateness_p99", "TTFT": "ttft_p99", "TPOT": "tpot_p99", "ITL": "itl_p99",
		"E2EL": "e2el_p99", "InputTokens": "input_tokens", "OutputTokens": "output_tokens",
		"HDR": "latency_hdr",
	}
	rt := reflect.TypeOf(loadgen.Snapshot{})
	for i := 0; i < rt.NumField(); i++ {
		name := rt.Field(i).Name
		dst, ok := stored[name]
		if !ok {
			t.Errorf("Snapshot.%s has no documented destination; add it to convert.go and docs/metrics.md", name)
			continue
		}
		switch {
		case dst == "(time)":
		case strings.HasPrefix(dst, "tag:"):
			if p.Tags[dst[4:]] == "" {
				t.Errorf("Snapshot.%s: tag %s missing", name, dst[4:])
			}
		default:
			if _, ok := p.Fields[dst]; !ok {
				t.Errorf("Snapshot.%s: field %s missing", name, dst)
			}
		}
	}
}

func TestSnapshotPointsSparse(t *testing.T) {
	// An interval with nothing completed and no LLM metrics: no quantile
	// fields (they would chart as a fake 0 ms), no LLM fields, no tokens.
	s := loadgen.Snapshot{Interval: 0, Start: t0, End: t0.Add(time.Second), Offered: 0}
	p := SnapshotPoints(loadgen.Summary{Experiment: "e", Task: "t"}, s)[0]
	for k := range p.Fields {
		if strings.HasPrefix(k, "ttft") || strings.HasPrefix(k, "e2el") || strings.HasSuffix(k, "_p99") || k == "input_tokens" || k == "slo_attainment" {
			t.Errorf("unexpected field %s in sparse point", k)
		}
	}
	if p.Fields["latency_count"] != int64(0) {
		t.Errorf("latency_count = %v, want 0", p.Fields["latency_count"])
	}
	if _, ok := p.Tags["class"]; ok {
		t.Error("empty class must not be a tag")
	}
	if _, err := AppendLine(nil, p); err != nil {
		t.Fatal(err)
	}
}

func TestTargetTag(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080/v1/completions":   "127.0.0.1:8080",
		"https://user:pw@host.example:443/x?y=1": "host.example:443",
		"127.0.0.1:9000":                         "127.0.0.1:9000",
		"localhost:9000/path":                    "localhost:9000",
		"":                                       "",
		"http://[::1]:8000/v2/models/m/infer":    "[::1]:8000",
		"tok@10.0.0.1:80/abc":                    "10.0.0.1:80",
	} {
		if got := TargetTag(in); got != want {
			t.Errorf("TargetTag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSummaryPoints(t *testing.T) {
	meta := testMeta()
	meta.Status = loadgen.StatusInterrupted
	meta.Error = "interrupted by signal"
	meta.Ended = t0.Add(30 * time.Second)
	meta.Total = fullSnapshot()
	meta.Total.Interval, meta.Total.Class, meta.Total.Model = -1, "", ""
	fg, bg := fullSnapshot(), fullSnapshot()
	fg.Class, fg.Model, bg.Class, bg.Model = "fg", "", "bg", ""
	bg.SLOMet = 10
	meta.Classes = []loadgen.Snapshot{fg, bg}
	s0, s1 := fullSnapshot(), fullSnapshot()
	s0.Class, s0.Model, s1.Class, s1.Model = "", "", "", ""
	s0.Start, s0.SLOFactor = t0, 2
	s1.Start, s1.SLOFactor = t0.Add(10*time.Second), 4
	meta.Steps = []loadgen.Snapshot{s0, s1}
	meta.Calibration = map[string]time.Duration{"m-1": 2500 * time.Microsecond, "m-0": 3 * time.Millisecond}

	pts := SummaryPoints(meta)
	if len(pts) != 7 {
		t.Fatalf("got %d points, want 1 total + 2 classes + 2 steps + 2 calibration", len(pts))
	}
	type key struct{ meas, breakdown, class, step, model string }
	got := map[key]Point{}
	for _, p := range pts {
		got[key{p.Measurement, p.Tags["breakdown"], p.Tags["class"], p.Tags["step"], p.Tags["model"]}] = p
		if p.Tags["experiment"] != "exp1" || p.Tags["rate"] != "100" || p.Tags["target"] != "127.0.0.1:8080" {
			t.Errorf("identity/sweep tags missing on %v", p.Tags)
		}
		if _, err := AppendLine(nil, p); err != nil {
			t.Error(err)
		}
	}
	total, ok := got[key{MeasServingSummary, "total", "", "", ""}]
	if !ok {
		t.Fatalf("no total point in %v", pts)
	}
	if total.Fields["status"] != "interrupted" || total.Fields["error"] != "interrupted by signal" ||
		total.Fields["duration_s"] != 30.0 || total.Fields["sweep_tags"] != "rate,task" ||
		total.Fields["interval"] != int64(-1) || !total.Time.Equal(t0) {
		t.Errorf("total point: %v at %v", total.Fields, total.Time)
	}
	if bgp := got[key{MeasServingSummary, "class", "bg", "", ""}]; bgp.Fields["slo_attainment"] != 0.1 || bgp.Fields["status"] != "interrupted" {
		t.Errorf("bg class point: %v", bgp.Fields)
	}
	if _, ok := got[key{MeasServingSummary, "class", "fg", "", ""}]; !ok {
		t.Error("no fg class point")
	}
	st1 := got[key{MeasServingSummary, "step", "", "1", ""}]
	if st1.Fields["slo_factor"] != 4.0 || !st1.Time.Equal(t0.Add(10*time.Second)) {
		t.Errorf("step 1 point: %v at %v", st1.Fields, st1.Time)
	}
	if c := got[key{MeasServingCalibration, "", "", "", "m-1"}]; c.Fields["batch1_latency_ms"] != 2.5 {
		t.Errorf("calibration m-1: %v", c.Fields)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
