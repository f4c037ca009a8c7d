package loadgen

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustClockwork(t *testing.T, name string, dur time.Duration, args ...string) *Workload {
	t.Helper()
	w, err := ParseClockwork(name, args, nil, nil, 1, dur)
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return w
}

// planAll runs w on the virtual clock with a fixed closed-loop service time.
func planAll(w *Workload, dur, service time.Duration) []Arrival {
	var out []Arrival
	Plan(context.Background(), w, dur, func(Arrival) time.Duration { return service }, func(a Arrival) bool { out = append(out, a); return true })
	return out
}

func countBy(as []Arrival, key func(Arrival) string) map[string]int {
	m := map[string]int{}
	for _, a := range as {
		m[key(a)]++
	}
	return m
}

// within checks a Poisson count against its mean (±5σ, at least ±3).
func within(t *testing.T, what string, got int, mean float64) {
	t.Helper()
	tol := math.Max(5*math.Sqrt(mean), 3)
	if math.Abs(float64(got)-mean) > tol {
		t.Errorf("%s: %d, want %.1f ± %.1f", what, got, mean, tol)
	}
}

func TestSLOExp1StepsAndEnd(t *testing.T) {
	t.Parallel()
	// The client's own example: 2, 4, 8, 16, 32 for 7 s each, then exit at 35 s.
	w := mustClockwork(t, "slo-exp-1", 0, "resnet50_v2", "4", "fixed-rate", "100", "2", "32", "2", "mul", "7")
	rep, err := PlanWorkload(context.Background(), w, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.EndedBy != "timer" || rep.EndedAt != 35*time.Second {
		t.Fatalf("ended by %q at %v, want timer at 35s", rep.EndedBy, rep.EndedAt)
	}
	want := []float64{2, 4, 8, 16, 32}
	if len(rep.Steps) != len(want) {
		t.Fatalf("steps %+v", rep.Steps)
	}
	for i, s := range rep.Steps {
		from := time.Duration(i) * 7 * time.Second
		// Fixed rate 25/s per copy: the step's first arrival is at its start,
		// its last 40 ms before the next; 4 copies × 7 s × 25/s.
		if s.SLOFactor != want[i] || s.From != from || s.To != from+7*time.Second-40*time.Millisecond || s.Count != 700 {
			t.Errorf("step %d: %+v, want ×%g from %v, 700 requests", i, s, want[i], from)
		}
	}
	for _, m := range rep.Models {
		if m.Count != 875 {
			t.Errorf("model %s: %d requests, want 875 (25/s × 35 s)", m.Name, m.Count)
		}
	}
	if len(rep.Models) != 4 || rep.Models[0].Name != "resnet50_v2-0" || rep.Models[3].Name != "resnet50_v2-3" {
		t.Errorf("models %+v", rep.Models)
	}
	// The per-interval factor follows the steps.
	for _, iv := range rep.Intervals {
		if f := want[int(iv.Start/(7*time.Second))]; iv.SLOFactor != f {
			t.Errorf("interval %d: factor %g, want %g", iv.Index, iv.SLOFactor, f)
		}
	}

	// The add example: 10, 20, … 100 every 3 s, Poisson; ends at 30 s.
	w = mustClockwork(t, "slo-exp-1", 0, "resnet50_v2", "4", "poisson", "100", "10", "100", "10", "add", "3")
	rep, _ = PlanWorkload(context.Background(), w, PlanOptions{})
	if rep.EndedAt != 30*time.Second || len(rep.Steps) != 10 || rep.Steps[9].SLOFactor != 100 {
		t.Fatalf("add sweep: ended %v, steps %+v", rep.EndedAt, rep.Steps)
	}
	within(t, "poisson total over 30 s", int(rep.Total), 3000)
	// Fractional factors work (the original parses integers).
	w = mustClockwork(t, "slo-exp-1", 0, "m", "1", "fixed-rate", "10", "1.5", "3", "1.5", "mul", "1")
	rep, _ = PlanWorkload(context.Background(), w, PlanOptions{})
	if len(rep.Steps) != 2 || rep.Steps[0].SLOFactor != 1.5 || rep.Steps[1].SLOFactor != 2.25 || rep.EndedAt != 2*time.Second {
		t.Errorf("fractional sweep: %+v ended %v", rep.Steps, rep.EndedAt)
	}
}

func TestSLOExp2ClassesAndConcurrency(t *testing.T) {
	t.Parallel()
	w := mustClockwork(t, "slo-exp-2", 0, "resnet50_v2", "2", "poisson", "200", "2", "32", "2", "mul", "7", "4", "3", "100")
	svc := 5 * time.Millisecond
	as := planAll(w, 0, svc)
	cls := countBy(as, func(a Arrival) string { return a.Class })
	within(t, "fg requests", cls["fg"], 200*35)
	// BG: 4 copies × concurrency 3 from t = 10 s to 35 s, each request 5 ms.
	if want := 4 * 3 * int((25*time.Second+svc-1)/svc); cls["bg"] != want {
		t.Errorf("bg requests %d, want %d", cls["bg"], want)
	}
	// Concurrency per BG model never exceeds 3 and BG never starts before 10 s.
	open := map[string][]time.Duration{}
	for _, a := range as {
		if a.Class != "bg" {
			if a.SLOFactor == 100 {
				t.Fatalf("fg request with the bg factor: %+v", a)
			}
			continue
		}
		if a.At < 10*time.Second || a.SLOFactor != 100 {
			t.Fatalf("bg request %+v", a)
		}
		if a.Model < "resnet50_v2-2" || a.Model > "resnet50_v2-5" {
			t.Fatalf("bg model %s, want copies 2-5", a.Model)
		}
		live := open[a.Model][:0]
		for _, d := range open[a.Model] {
			if d > a.At {
				live = append(live, d)
			}
		}
		live = append(live, a.At+svc)
		if len(live) > 3 {
			t.Fatalf("model %s has %d outstanding at %v", a.Model, len(live), a.At)
		}
		open[a.Model] = live
	}
	rep, _ := PlanWorkload(context.Background(), mustClockwork(t, "slo-exp-2", 0, "resnet50_v2", "2", "poisson", "200", "2", "32", "2", "mul", "7", "4", "3", "32"), PlanOptions{})
	// The BG factor (32, equal to one FG step) must not create or merge steps.
	if len(rep.Steps) != 5 || rep.Steps[4].SLOFactor != 32 || rep.Steps[4].From < 28*time.Second {
		t.Errorf("steps %+v", rep.Steps)
	}
}

func TestClosedLoopWorkloads(t *testing.T) {
	t.Parallel()
	svc := 4 * time.Millisecond
	for _, tc := range []struct {
		name         string
		args         []string
		models, conc int
		model0       string
	}{
		{"spam", nil, 100, 100, "resnet50_v2-0"},
		{"spam", []string{"inception_v3"}, 100, 100, "inception_v3-0"},
		{"single-spam", nil, 100, 1000, "resnet50_v2-0"},
		{"simple", nil, 2, 1, "resnet50_v2-0"},
		{"comparison_experiment2", nil, 15, 16, "resnet50_v2-0"},
		{"comparison_experiment2", []string{"3", "2"}, 3, 2, "resnet50_v2-0"},
	} {
		t.Run(tc.name+strings.Join(tc.args, "_"), func(t *testing.T) {
			dur := 20 * svc       // keeps spam's 100 × 1000 slots cheap
			per := int(dur / svc) // requests per closed-loop slot
			w := mustClockwork(t, tc.name, dur, tc.args...)
			by := countBy(planAll(w, dur, svc), func(a Arrival) string { return a.Model })
			if len(by) != tc.models {
				t.Fatalf("%d models, want %d", len(by), tc.models)
			}
			for m, n := range by {
				if n != tc.conc*per {
					t.Fatalf("model %s: %d requests, want concurrency %d × %d", m, n, tc.conc, per)
				}
			}
			if by[tc.model0] == 0 {
				t.Errorf("no requests to %s", tc.model0)
			}
		})
	}
}

func TestSimpleSLOFactorSchedules(t *testing.T) {
	t.Parallel()
	w := mustClockwork(t, "simple-slo-factor", 40*time.Second)
	seen := map[string][]float64{}
	for _, a := range planAll(w, 40*time.Second, 10*time.Millisecond) {
		f := seen[a.Model]
		if len(f) == 0 || f[len(f)-1] != a.SLOFactor {
			// The factor changes exactly at multiples of 10 s.
			if len(f) > 0 && a.At%(10*time.Second) != 0 {
				t.Fatalf("%s: factor changed to %g at %v", a.Model, a.SLOFactor, a.At)
			}
			seen[a.Model] = append(f, a.SLOFactor)
		}
	}
	want := map[string][]float64{
		"resnet50_v2-0": {4, 5, 6.25, 7.8125},
		"resnet50_v2-1": {4, 5, 6, 7},
		"resnet50_v2-2": {10, 1, 10, 1}, // really toggles (quirk 5 fixed)
	}
	for m, f := range want {
		if fmt.Sprint(seen[m]) != fmt.Sprint(f) {
			t.Errorf("%s: factors %v, want %v", m, seen[m], f)
		}
	}
}

func TestSimpleParametricExactCounts(t *testing.T) {
	t.Parallel()
	// 5 models, 2 clients: groups of ceil(5/2) = 3 → [0,1,2] and [3,4];
	// concurrency 3, exactly 10 requests per client, then the run ends.
	w := mustClockwork(t, "simple-parametric", 0, "5", "2", "3", "10")
	rep, err := PlanWorkload(context.Background(), w, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, m := range rep.Models {
		got[m.Name] = m.Count
	}
	want := map[string]int64{"resnet50_v2-0": 4, "resnet50_v2-1": 3, "resnet50_v2-2": 3, "resnet50_v2-3": 5, "resnet50_v2-4": 5}
	if rep.Total != 20 || fmt.Sprint(got) != fmt.Sprint(want) || rep.EndedBy != "exhausted" {
		t.Errorf("total %d ended %q, per model %v, want %v", rep.Total, rep.EndedBy, got, want)
	}
	// 5 models over 4 clients: groups of 2 leave client 3 without models.
	w = mustClockwork(t, "simple-parametric", 0, "5", "4", "1", "2")
	if len(w.Closed) != 3 || !strings.Contains(strings.Join(w.Deviations, "\n"), "no models") {
		t.Errorf("%d clients, deviations %q", len(w.Closed), w.Deviations)
	}
}

func TestOpenLoopRates(t *testing.T) {
	t.Parallel()
	dur := 20 * time.Second
	for _, tc := range []struct {
		name  string
		args  []string
		rates map[string]float64 // per model
		n     int
	}{
		{"poisson-open-loop", []string{"4", "100"}, map[string]float64{"resnet50_v2-0": 25, "resnet50_v2-3": 25}, 4},
		{"comparison_experiment", nil, map[string]float64{"resnet50_v2-0": 1000.0 / 15, "resnet50_v2-14": 1000.0 / 15}, 15},
		{"fill_memory", nil, map[string]float64{"resnet50_v2-0": 1000, "resnet50_v2-1": 10, "resnet50_v2-10": 10, "resnet50_v2-11": 1, "resnet50_v2-410": 1}, 411},
	} {
		w := mustClockwork(t, tc.name, dur, tc.args...)
		as := planAll(w, dur, 0)
		by := countBy(as, func(a Arrival) string { return a.Model })
		if len(w.Open) != tc.n {
			t.Errorf("%s: %d sources, want %d", tc.name, len(w.Open), tc.n)
		}
		for m, r := range tc.rates {
			within(t, tc.name+" "+m, by[m], r*dur.Seconds())
		}
	}
}

func TestBurstyOnOffPeriods(t *testing.T) {
	t.Parallel()
	const rate = 10.0
	b := NewBurstyPoisson(rate, 10*time.Second, 20*time.Second, NewRNG(3, 0))
	var on time.Duration
	var wins [][2]time.Duration
	n := 0
	horizon := 3 * time.Hour
	for t0 := time.Duration(0); ; {
		next, _ := b.Next(t0)
		if next >= horizon {
			break
		}
		n++
		s, e := b.Window()
		if next < s || next >= e {
			t.Fatalf("arrival at %v outside the burst [%v, %v)", next, s, e)
		}
		if len(wins) == 0 || wins[len(wins)-1][0] != s {
			wins = append(wins, [2]time.Duration{s, e})
		}
		t0 = next
	}
	for _, w := range wins {
		on += min(w[1], horizon) - w[0]
	}
	// Within bursts the process is Poisson at rate; bursts are ~1/3 of the time.
	within(t, "arrivals during bursts", n, rate*on.Seconds())
	if f := on.Seconds() / horizon.Seconds(); f < 0.25 || f > 0.42 {
		t.Errorf("on fraction %.2f, want ≈ 1/3", f)
	}
	// Idle gaps have mean ≈ 20 s, bursts ≈ 10 s (both distributions used).
	var idle, burst time.Duration
	for i := 1; i < len(wins); i++ {
		idle += wins[i][0] - wins[i-1][1]
		burst += wins[i-1][1] - wins[i-1][0]
	}
	k := time.Duration(len(wins) - 1)
	if mi, mb := (idle / k).Seconds(), (burst / k).Seconds(); mi < 14 || mi > 27 || mb < 7 || mb > 13.5 {
		t.Errorf("mean idle %.1fs burst %.1fs, want ≈ 20 and 10", mi, mb)
	}
	// The phase is random: over many sources, about 2/3 start idle.
	idleStart := 0
	for s := 0; s < 300; s++ {
		o := NewOnOff(10*time.Second, 20*time.Second, NewRNG(int64(s), 1))
		if o.Gate(0) > 0 {
			idleStart++
		}
	}
	within(t, "sources starting idle of 300", idleStart, 200)
}

func TestExampleWorkload(t *testing.T) {
	t.Parallel()
	dur := 600 * time.Second
	w := mustClockwork(t, "example", dur, "zoo=3")
	as := planAll(w, dur, 5*time.Millisecond)
	cls := countBy(as, func(a Arrival) string { return a.Class })
	within(t, "fixed", cls["fixed"], 3*5*600)
	within(t, "poisson", cls["poisson"], 3*10*600)
	// Bursty open loop: 10/s during bursts, on ~1/3 of the time.
	if b := float64(cls["bursty"]) / (3 * 10 * 600); b < 0.15 || b > 0.55 {
		t.Errorf("bursty open loop at %.2f of its burst rate, want ≈ 1/3", b)
	}
	if c := cls["closed"]; c != 3*int(dur/(5*time.Millisecond)) {
		t.Errorf("closed loop: %d", c)
	}
	if b := float64(cls["bursty-closed"]) / float64(cls["closed"]); b < 0.15 || b > 0.55 {
		t.Errorf("bursty closed loop sends %.2f of the closed loop, want ≈ 1/3", b)
	}
	models := countBy(as, func(a Arrival) string { return a.Model })
	if len(models) != 3 || models["model00-0"] == 0 {
		t.Errorf("models %v", models)
	}
	// The default zoo has 61 models.
	if n := len(mustClockwork(t, "example", time.Second).Models()); n != DefaultZooSize {
		t.Errorf("default zoo: %d models", n)
	}
}

func TestBurstyExperimentRamp(t *testing.T) {
	t.Parallel()
	const m = 40
	dur := 350 * time.Second
	w := mustClockwork(t, "bursty_experiment", dur, fmt.Sprint(m))
	as := planAll(w, dur, 0)
	perSec := make([]int, 350)
	first := map[string]time.Duration{}
	hipri := 0
	for _, a := range as {
		if a.Class == "hipri" {
			hipri++
			continue
		}
		perSec[a.At/time.Second]++
		if _, ok := first[a.Model]; !ok {
			first[a.Model] = a.At
		}
	}
	within(t, "hi-pri 200/s", hipri, 200*350)
	for s := 0; s < 300; s++ {
		if perSec[s] != 0 {
			t.Fatalf("lead-in second %d has %d ramp requests", s, perSec[s])
		}
	}
	// 1000 r/s over k models from second 300; then the trace wraps to the lead-in.
	sum := 0
	for s := 300; s < 300+m; s++ {
		sum += perSec[s]
	}
	within(t, "ramp requests", sum, 1000*m)
	for s := 300 + m; s < 350; s++ {
		if perSec[s] != 0 {
			t.Fatalf("second %d after the ramp (wrapped lead-in) has %d requests", s, perSec[s])
		}
	}
	// Model j joins at second 300 + j.
	for j := 0; j < m; j++ {
		name := fmt.Sprintf("resnet50_v2-%d", j)
		if f, ok := first[name]; !ok || f < time.Duration(300+j)*time.Second || f > time.Duration(301+j)*time.Second {
			t.Errorf("%s first at %v, want in second %d", name, f, 300+j)
		}
	}
	// The last step is inside the vectors (quirk 4 fixed): model m-1 is active in second 300+m-1.
	if perSec[300+m-1] == 0 {
		t.Error("last ramp step missing")
	}
}

func TestTraceReplayTimeCompression(t *testing.T) {
	t.Parallel()
	rates := make(Floats, 4)
	rates[0], rates[1], rates[2] = 6000, 0, 12000
	for _, tc := range []struct {
		interval time.Duration
		want     [3]float64
	}{
		{60 * time.Second, [3]float64{6000, 0, 12000}},
		{time.Second, [3]float64{100, 0, 200}}, // interval compresses time, not counts
	} {
		var got [4]int
		const reps = 20
		for r := 0; r < reps; r++ {
			p := NewTraceReplay(rates, 1, tc.interval, 0, NewRNG(int64(r), 9))
			for at, ok := p.Next(0); ok && at < 3*tc.interval; at, ok = p.Next(at) {
				got[at/tc.interval]++
			}
		}
		for k := 0; k < 3; k++ {
			within(t, fmt.Sprintf("interval %v bucket %d", tc.interval, k), got[k], tc.want[k]*reps)
		}
	}
	// Scale multiplies the rate; a wrapped series repeats.
	p := NewTraceReplay(Floats{60, 120}, 2, time.Second, 0, NewRNG(1, 1))
	if e := p.ExpectedCount(0, 4*time.Second); math.Abs(e-12) > 1e-9 {
		t.Errorf("expected count %v, want 12", e)
	}
	// All-zero series never fires.
	if _, ok := NewTraceReplay(Floats{0, 0}, 1, time.Second, 0, NewRNG(1, 1)).Next(0); ok {
		t.Error("zero trace fired")
	}
}

// writeTrace writes functions with the given per-minute counts (minutes not
// given are 0).
func writeTrace(t *testing.T, dir string, day int, rows [][]uint32) {
	t.Helper()
	fns := make([]AzureFunction, len(rows))
	for i, r := range rows {
		c := make(Counts, AzureMinutes)
		copy(c, r)
		fns[i] = AzureFunction{Owner: "o", App: "a", Function: fmt.Sprintf("f%d", i), Trigger: "http", Counts: c}
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("invocations_per_function_md.anon.d%02d.csv", day)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := WriteAzureTrace(f, fns); err != nil {
		t.Fatal(err)
	}
}

func TestAzureSemantics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Function 1 is the busiest, function 0 the quietest.
	writeTrace(t, dir, 1, [][]uint32{{60, 60, 60}, {6000, 0, 12000}, {600, 600, 600}})
	// load 8 × 0.125 × 1 worker = scale 1; 1 s intervals; contiguous placement.
	w, err := ParseClockwork("azure", []string{"1", "0", "8", "1", "1", "1", "0", "trace_dir=" + dir, "placement=contiguous"}, nil, nil, 1, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Open) != 3 {
		t.Fatalf("%d sources", len(w.Open))
	}
	// 200 copies (mem 1, resnet50_v2 only), 3 functions: function i → models[200·i/3].
	wantModel := []string{"resnet50_v2-0", "resnet50_v2-66", "resnet50_v2-133"}
	for i, o := range w.Open {
		if o.Model != wantModel[i] {
			t.Errorf("function %d (by popularity) → %s, want %s", i, o.Model, wantModel[i])
		}
	}
	as := planAll(w, 3*time.Second, 0)
	var sec [3]map[string]int
	for i := range sec {
		sec[i] = map[string]int{}
	}
	for _, a := range as {
		sec[a.At/time.Second][a.Model]++
	}
	// The busiest function (6000, 0, 12000 per minute) on the first model: 100, 0, 200 per second.
	within(t, "busiest, second 0", sec[0]["resnet50_v2-0"], 100)
	if sec[1]["resnet50_v2-0"] != 0 {
		t.Errorf("zero-rate minute fired %d times", sec[1]["resnet50_v2-0"])
	}
	within(t, "busiest, second 2", sec[2]["resnet50_v2-0"], 200)
	within(t, "second function, second 1", sec[1]["resnet50_v2-66"], 10)

	// Scale = load × 0.125 × workers.
	w, _ = ParseClockwork("azure", []string{"4", "0", "2", "1", "1", "1", "0", "trace_dir=" + dir}, nil, nil, 1, time.Second)
	if s := w.Open[0].Proc.(*TraceReplay).Scale; s != 1 {
		t.Errorf("scale %v, want 2 × 0.125 × 4 = 1", s)
	}
	// mem → copies: all models of a 61-model zoo, mem 2 → 13 copies each.
	many := make([][]uint32, 900)
	for i := range many {
		many[i] = []uint32{uint32(i + 1)}
	}
	writeTrace(t, dir, 2, many)
	for _, tc := range []struct {
		useAll, mem string
		models      int
	}{{"1", "1", 183}, {"1", "2", 793}, {"0", "1", 200}, {"0", "2", 800}} {
		w, err := ParseClockwork("azure", []string{"1", tc.useAll, "1", tc.mem, "60", "2", "0", "trace_dir=" + dir}, nil, nil, 1, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(w.Models()); n != tc.models {
			t.Errorf("use_all %s mem %s: %d models, want %d", tc.useAll, tc.mem, n, tc.models)
		}
	}
	// randomise: start minutes spread over the day (not all at minute 735).
	w, _ = ParseClockwork("azure", []string{"1", "1", "1", "1", "60", "2", "1", "trace_dir=" + dir}, nil, nil, 1, time.Second)
	mins := map[int]bool{}
	for _, o := range w.Open {
		mins[int(o.Proc.(*TraceReplay).StartAt/time.Minute)] = true
	}
	if len(mins) < 400 {
		t.Errorf("randomise: only %d distinct start minutes over 900 functions", len(mins))
	}
	// memory_load_factor outside 1-4 is rejected.
	if _, err := ParseClockwork("azure", []string{"1", "1", "1", "5", "trace_dir=" + dir}, nil, nil, 1, time.Second); err == nil || !strings.Contains(err.Error(), "memory_load_factor") {
		t.Errorf("mem 5: %v", err)
	}
	// The shipped trace loads and gives a positive rate.
	w, err = ParseClockwork("azure", []string{"trace_dir=testdata/azure"}, nil, nil, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Open) != 200 || len(planAll(w, time.Minute, 0)) == 0 {
		t.Errorf("shipped trace: %d sources", len(w.Open))
	}
}

func TestAzureTraceErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	row := "o,a,f,http" + strings.Repeat(",1", AzureMinutes)
	for _, tc := range []struct {
		name, body, want string
	}{
		{"short row", "HashOwner,HashApp\n" + row + "\no,a,f,http,1,2\n", ":3: 6 fields, want 1444"},
		{"bad count", "HashOwner\n" + strings.Replace(row, ",1", ",x", 1) + "\n", ":2: minute 1: \"x\""},
		{"negative", row + "\n" + strings.Replace(row, ",1", ",-1", 1) + "\n", ":2: minute 1"},
		{"empty", "HashOwner,HashApp\n", "no functions"},
	} {
		p := filepath.Join(dir, tc.name+".csv")
		os.WriteFile(p, []byte(tc.body), 0o644)
		_, err := ReadAzureTrace(p)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want the file name and %q", tc.name, err, tc.want)
		}
	}
	// The older .svls. name is preferred when both exist.
	os.WriteFile(filepath.Join(dir, "invocations_per_function_md.svls.anon.d03.csv"), []byte(row+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "invocations_per_function_md.anon.d03.csv"), []byte("junk\n"), 0o644)
	if _, err := ReadAzureTraceDay(dir, 3); err != nil {
		t.Errorf("svls file not preferred: %v", err)
	}
}

func TestGeneratedTraceShape(t *testing.T) {
	t.Parallel()
	fns := GenerateAzureTrace(AzureGenOptions{Functions: 300, Seed: 4})
	tr := &AzureTrace{Functions: fns}
	pop := tr.ByPopularity()
	var total, top uint64
	for i, f := range pop {
		total += f.Total
		if i < 30 {
			top += f.Total
		}
	}
	// Heavy tail: the top 10% of functions carry most invocations.
	if share := float64(top) / float64(total); share < 0.6 {
		t.Errorf("top 10%% share %.2f, want heavy-tailed popularity", share)
	}
	// Diurnal: afternoon busier than night, summed over functions.
	var night, day uint64
	for _, f := range fns {
		for m := 2 * 60; m < 6*60; m++ {
			night += uint64(f.Counts[m])
		}
		for m := 14 * 60; m < 18*60; m++ {
			day += uint64(f.Counts[m])
		}
	}
	if day <= night {
		t.Errorf("afternoon %d ≤ night %d invocations", day, night)
	}
	// Same seed, same trace.
	again := GenerateAzureTrace(AzureGenOptions{Functions: 300, Seed: 4})
	if again[17].Function != fns[17].Function || again[17].Total != fns[17].Total {
		t.Error("generator not deterministic")
	}
}

func TestClockworkUsageErrors(t *testing.T) {
	t.Parallel()
	usage := "usage: slo-exp-1 model copies dist rate slo-start slo-end slo-factor slo-op period"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"slo-exp-1", []string{"resnet50_v2", "4"}, "missing dist"},
		{"slo-exp-1", []string{"resnet50_v2", "four", "poisson", "100", "2", "32", "2", "mul", "7"}, `copies: "four" is not an integer`},
		{"slo-exp-1", []string{"resnet50_v2", "4", "gamma", "100", "2", "32", "2", "mul", "7"}, "not one of poisson, fixed-rate"},
		{"slo-exp-1", []string{"resnet50_v2", "4", "poisson", "100", "2", "32", "2", "mul", "7", "8"}, "at most 9"},
		{"slo-exp-1", []string{"resnet50_v2", "4", "poisson", "100", "2", "32", "1", "mul", "7"}, "never exceeds"},
		{"slo-exp-1", []string{"resnet50_v2", "4", "poisson", "100", "2", "32", "2", "mul", "7", "--duration"}, "flags go before"},
		{"slo-exp-1", []string{"resnet50_v2", "4", "poisson", "100", "2", "32", "2", "mul", "7", "bogus=1"}, `unknown parameter "bogus"`},
	} {
		_, err := ParseClockwork(tc.name, tc.args, nil, nil, 1, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), usage) {
			t.Errorf("%v: %v, want %q and the usage line", tc.args, err, tc.want)
		}
	}
	if _, err := ParseClockwork("azure", []string{"1", "maybe"}, nil, nil, 1, time.Second); err == nil || !strings.Contains(err.Error(), "usage: azure [num_workers] [use_all_models]") {
		t.Errorf("azure bool: %v", err)
	}
	if _, err := ParseClockwork("poisson-open-loop", []string{"4", "100"}, nil, nil, 1, 0); err == nil || !strings.Contains(err.Error(), "give a duration") {
		t.Errorf("open-ended without duration: %v", err)
	}
	// Through BuildWorkload (what loadgen run does), the same messages.
	_, err := BuildWorkload(&Config{Workload: WorkloadConfig{Arrival: "simple-parametric", Args: []string{"1"}}})
	if err == nil || !strings.Contains(err.Error(), "usage: simple-parametric models clients concurrency requests") {
		t.Errorf("BuildWorkload: %v", err)
	}
}

func TestClockworkNamedParams(t *testing.T) {
	t.Parallel()
	// The TOML form: params by name (numbers as numbers), same workload as the positional form.
	cfg := &Config{Seed: 1, Workload: WorkloadConfig{Arrival: "slo-exp-1", Params: map[string]any{
		"model": "resnet50_v2", "copies": int64(4), "dist": "fixed-rate", "rate": 100.0,
		"slo_start": 2.0, "slo-end": int64(32), "slo-factor": 2.0, "slo-op": "mul", "period": int64(7),
	}}}
	w, err := BuildWorkload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep, _ := PlanWorkload(context.Background(), w, PlanOptions{})
	if rep.Total != 3500 || rep.EndedAt != 35*time.Second {
		t.Errorf("named params: %d requests ending at %v", rep.Total, rep.EndedAt)
	}
	// Options and a name pattern: copies served under one flat name.
	w = mustClockwork(t, "poisson-open-loop", time.Second, "3", "30", "pattern=rn50-{index}")
	if got := strings.Join(w.Models(), ","); got != "rn50-0,rn50-1,rn50-2" {
		t.Errorf("pattern: %s", got)
	}
	// The target's models are the zoo.
	w, err = ParseClockwork("example", nil, nil, []string{"b", "a"}, 1, time.Second)
	if err != nil || strings.Join(w.Models(), ",") != "a-0,b-0" {
		t.Errorf("zoo from target models: %v %v", w.Models(), err)
	}
	// Every catalogue entry builds with its defaults (given required params).
	req := map[string][]string{
		"simple-parametric": {"4", "2", "1", "5"}, "poisson-open-loop": {"2", "10"},
		"slo-exp-1": {"m", "2", "poisson", "10", "2", "8", "2", "mul", "1"},
		"slo-exp-2": {"m", "2", "poisson", "10", "2", "8", "2", "mul", "1", "1", "1", "50"},
		"azure":     {"trace_dir=testdata/azure"},
	}
	if n := len(ClockworkCatalogue()); n != 14 {
		t.Errorf("%d workloads, want 14", n)
	}
	for _, s := range ClockworkCatalogue() {
		if _, err := ParseClockwork(s.Name, req[s.Name], nil, nil, 1, time.Second); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
}
