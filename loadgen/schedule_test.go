package loadgen

import (
	"context"
	"math"
	"sort"
	"testing"
	"time"
)

// planTimes runs w on the virtual clock for d and returns the arrivals.
func planTimes(t *testing.T, w *Workload, d time.Duration) []Arrival {
	t.Helper()
	var out []Arrival
	Plan(context.Background(), w, d, nil, func(a Arrival) bool { out = append(out, a); return true })
	return out
}

func openWorkload(t *testing.T, arrival string, rate, burst float64, seed int64) *Workload {
	t.Helper()
	w, err := BuildWorkload(&Config{Seed: seed, Workload: WorkloadConfig{Arrival: arrival, Rate: rate, Burstiness: burst}})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestScheduleRatesAndCounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		arrival string
		rate    float64
		burst   float64
		dur     time.Duration
		// acceptable count range
		lo, hi int
	}{
		{"fixed exact", "fixed", 100, 0, 10 * time.Second, 1000, 1000},
		{"fixed fractional", "fixed", 3, 0, 10 * time.Second, 30, 30},
		// Poisson(60000): ±5σ, σ = 245.
		{"poisson 1000/s 60s", "poisson", 1000, 0, 60 * time.Second, 60000 - 1225, 60000 + 1225},
		// Gamma shape 4: CV 0.5, count variance ≈ CV²·mean.
		{"gamma regular", "gamma", 500, 4, 60 * time.Second, 30000 - 400, 30000 + 400},
		// Gamma shape 0.25: CV 2, σ ≈ 2·sqrt(30000) ≈ 346.
		{"gamma bursty", "gamma", 500, 0.25, 60 * time.Second, 30000 - 1800, 30000 + 1800},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planTimes(t, openWorkload(t, tt.arrival, tt.rate, tt.burst, 7), tt.dur)
			if n := len(got); n < tt.lo || n > tt.hi {
				t.Fatalf("%d arrivals in %v at %v/s, want [%d, %d]", n, tt.dur, tt.rate, tt.lo, tt.hi)
			}
			for i := 1; i < len(got); i++ {
				if got[i].At < got[i-1].At {
					t.Fatalf("arrival %d at %v before arrival %d at %v", i, got[i].At, i-1, got[i-1].At)
				}
				if got[i].Seq != int64(i) {
					t.Fatalf("arrival %d has seq %d", i, got[i].Seq)
				}
			}
		})
	}
}

func TestScheduleDeterministicBySeed(t *testing.T) {
	a := planTimes(t, openWorkload(t, "poisson", 200, 0, 42), 5*time.Second)
	b := planTimes(t, openWorkload(t, "poisson", 200, 0, 42), 5*time.Second)
	c := planTimes(t, openWorkload(t, "poisson", 200, 0, 43), 5*time.Second)
	if len(a) != len(b) {
		t.Fatalf("same seed gave %d and %d arrivals", len(a), len(b))
	}
	for i := range a {
		if a[i].At != b[i].At {
			t.Fatalf("same seed differs at arrival %d", i)
		}
	}
	if len(a) == len(c) && a[len(a)/2].At == c[len(c)/2].At {
		t.Fatal("different seeds gave the same schedule")
	}
}

// ksExponential returns the Kolmogorov–Smirnov statistic of gaps (seconds)
// against the exponential distribution with the given rate.
func ksExponential(gaps []float64, rate float64) float64 {
	sort.Float64s(gaps)
	n := float64(len(gaps))
	d := 0.0
	for i, x := range gaps {
		f := 1 - math.Exp(-rate*x)
		d = math.Max(d, math.Max(f-float64(i)/n, float64(i+1)/n-f))
	}
	return d
}

func gapsOf(as []Arrival) []float64 {
	g := make([]float64, 0, len(as))
	for i := 1; i < len(as); i++ {
		g = append(g, (as[i].At - as[i-1].At).Seconds())
	}
	return g
}

func TestPoissonInterArrivalsKS(t *testing.T) {
	t.Parallel()
	// Critical value at α = 0.01 is 1.63/sqrt(n).
	for _, seed := range []int64{1, 2, 3} {
		as := planTimes(t, openWorkload(t, "poisson", 1000, 0, seed), 30*time.Second)
		g := gapsOf(as)
		d, crit := ksExponential(g, 1000), 1.63/math.Sqrt(float64(len(g)))
		if d > crit {
			t.Errorf("seed %d: KS D = %.4f > %.4f: Poisson gaps are not exponential", seed, d, crit)
		}
	}
	// The test has power: gamma gaps with the same mean are rejected.
	as := planTimes(t, openWorkload(t, "gamma", 1000, 0.5, 1), 30*time.Second)
	g := gapsOf(as)
	if d, crit := ksExponential(g, 1000), 1.63/math.Sqrt(float64(len(g))); d <= crit {
		t.Errorf("gamma(0.5) gaps passed the exponential KS test (D = %.4f ≤ %.4f)", d, crit)
	}
}

func TestGammaCV(t *testing.T) {
	t.Parallel()
	for _, shape := range []float64{0.25, 0.5, 1, 2, 4} {
		as := planTimes(t, openWorkload(t, "gamma", 1000, shape, 3), 60*time.Second)
		g := gapsOf(as)
		var sum, sq float64
		for _, x := range g {
			sum += x
		}
		mean := sum / float64(len(g))
		for _, x := range g {
			sq += (x - mean) * (x - mean)
		}
		cv := math.Sqrt(sq/float64(len(g))) / mean
		want := 1 / math.Sqrt(shape)
		if math.Abs(cv-want)/want > 0.05 {
			t.Errorf("shape %v: CV %.3f, want %.3f ±5%%", shape, cv, want)
		}
		if math.Abs(mean-0.001)/0.001 > 0.03 {
			t.Errorf("shape %v: mean gap %.6fs, want 0.001s ±3%%", shape, mean)
		}
	}
}

// Arrival n of a fixed-rate source is at exactly n/rate however long the
// run: the schedule is computed from the count, not accumulated gaps.
func TestFixedNoDrift(t *testing.T) {
	t.Parallel()
	f := NewFixed(3000) // 333333.33… ns gaps: accumulating rounded gaps would drift
	var prev time.Duration
	for n := int64(0); n <= 3_000_000; n++ {
		at, ok := f.Next(prev)
		if !ok {
			t.Fatal("fixed process ended")
		}
		if n%500_000 == 0 {
			want := time.Duration(float64(n) * 1e9 / 3000)
			if at != want {
				t.Fatalf("arrival %d at %v, want %v", n, at, want)
			}
		}
		prev = at
	}
	if prev != 1000*time.Second {
		t.Fatalf("arrival 3e6 at %v, want 1000s exactly", prev)
	}
}

func TestPoissonMeanRateLongRun(t *testing.T) {
	// Over a long run the realised rate converges on the offered one: no
	// systematic bias from rounding gaps to nanoseconds.
	as := planTimes(t, openWorkload(t, "poisson", 20000, 0, 5), 60*time.Second)
	rate := float64(len(as)) / 60
	if math.Abs(rate-20000)/20000 > 0.005 {
		t.Fatalf("mean rate %.1f/s over 60 s, want 20000 ±0.5%%", rate)
	}
}

func TestManySourcesMerged(t *testing.T) {
	const n = 4000
	w := &Workload{}
	for i := 0; i < n; i++ {
		w.Open = append(w.Open, &OpenLoop{Model: "m", Proc: NewPoisson(0.5, NewRNG(1, uint64(i)))})
	}
	as := planTimes(t, w, 20*time.Second)
	// 4000 × 0.5/s × 20 s = 40000 ± 5σ.
	if len(as) < 40000-1000 || len(as) > 40000+1000 {
		t.Fatalf("%d arrivals, want about 40000", len(as))
	}
	for i := 1; i < len(as); i++ {
		if as[i].At < as[i-1].At {
			t.Fatalf("merged stream out of order at %d", i)
		}
	}
}

func TestClosedLoopPlan(t *testing.T) {
	tests := []struct {
		conc    int
		think   time.Duration
		service time.Duration
		max     int64
		dur     time.Duration
		want    int // exact count
	}{
		{conc: 4, service: 10 * time.Millisecond, dur: time.Second, want: 400},
		{conc: 2, think: 10 * time.Millisecond, service: 10 * time.Millisecond, dur: time.Second, want: 100},
		{conc: 3, service: time.Millisecond, max: 10, want: 10},
		{conc: 5, service: time.Millisecond, max: 3, want: 3},
	}
	for _, tt := range tests {
		w := &Workload{Closed: []*ClosedLoop{{Models: []string{"a", "b"}, Concurrency: tt.conc, Think: tt.think, Max: tt.max}}}
		var out []Arrival
		Plan(context.Background(), w, tt.dur, func(Arrival) time.Duration { return tt.service }, func(a Arrival) bool {
			out = append(out, a)
			return true
		})
		if len(out) != tt.want {
			t.Errorf("conc %d think %v max %d: %d arrivals, want %d", tt.conc, tt.think, tt.max, len(out), tt.want)
		}
		// Never more than conc outstanding: at each arrival, count the
		// earlier ones still in service.
		for i, a := range out {
			busy := 0
			for _, b := range out[:i] {
				if b.At+tt.service > a.At {
					busy++
				}
			}
			if busy >= tt.conc {
				t.Fatalf("conc %d: %d requests outstanding at %v", tt.conc, busy+1, a.At)
			}
		}
		if len(out) > 1 && out[0].Model == out[1].Model {
			t.Errorf("closed loop does not alternate models: %q, %q", out[0].Model, out[1].Model)
		}
	}
}

func TestTimersChangeFactorAndEndRun(t *testing.T) {
	src := &OpenLoop{Model: "m", Proc: NewFixed(10), SLOFactor: 2}
	w := &Workload{Open: []*OpenLoop{src}}
	w.Timers = []*Timer{{At: time.Second, Period: time.Second, Fire: func(now time.Duration) TimerAction {
		src.SLOFactor *= 2
		if src.SLOFactor > 8 {
			return TimerEndRun
		}
		return TimerContinue
	}}}
	as := planTimes(t, w, time.Minute)
	if len(as) != 30 { // 10/s for 3 s, then the factor passes 8 and the run ends
		t.Fatalf("%d arrivals, want 30", len(as))
	}
	for _, a := range as {
		want := 2 * math.Pow(2, math.Floor(a.At.Seconds()))
		if a.SLOFactor != want {
			t.Fatalf("arrival at %v has factor %v, want %v", a.At, a.SLOFactor, want)
		}
	}
}

func TestRateChangeMidRun(t *testing.T) {
	p := NewFixed(10)
	src := &OpenLoop{Model: "m", Proc: p}
	w := &Workload{Open: []*OpenLoop{src}, Timers: []*Timer{{At: time.Second, Fire: func(time.Duration) TimerAction {
		p.SetRate(100)
		return TimerStop
	}}}}
	as := planTimes(t, w, 2*time.Second)
	// 10 in the first second (0..0.9), the pending one at 1.0 s, then 100/s.
	if len(as) < 105 || len(as) > 112 {
		t.Fatalf("%d arrivals, want about 110", len(as))
	}
}

func TestBuildWorkloadErrors(t *testing.T) {
	tests := []WorkloadConfig{
		{Arrival: ""},
		{Arrival: "nosuch"},
		{Arrival: "poisson"},
		{Arrival: "gamma", Rate: 1, Burstiness: -1},
		{Arrival: "closed"},
	}
	for _, wc := range tests {
		if _, err := BuildWorkload(&Config{Workload: wc}); err == nil {
			t.Errorf("%+v: no error", wc)
		}
	}
}
