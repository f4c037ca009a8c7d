package deploy

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

func TestHistQuantile(t *testing.T) {
	var h Hist
	if h.Quantile(0.99) != 0 {
		t.Error("empty histogram has a quantile")
	}
	// 1..1000 ms: the p50 is 500 ms, the p99 990 ms.
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.125 {
			t.Errorf("q%g = %s, want %s .. +12.5%%", c.q, got, c.want)
		}
	}
	var o Hist
	o.Record(5 * time.Second)
	h.Add(&o)
	if h.Count() != 1001 || h.Quantile(1) != 5*time.Second {
		t.Errorf("after merge: count %d max %s", h.Count(), h.Quantile(1))
	}
	for _, us := range []uint64{0, 1, 7, 8, 9, 15, 16, 1000, 123456789} {
		if i := bucketOf(us); bucketHigh(i) < us || (i > 0 && bucketHigh(i-1) >= us) {
			t.Errorf("value %d in bucket %d (high %d, previous high %d)", us, i, bucketHigh(i), bucketHigh(i-1))
		}
	}
}

// sample is an interval with n requests of latency lat (miss of them over
// the SLO), sent at the same rate, and inflight in flight.
func sample(n int, lat time.Duration, miss int, inflight int64) *Sample {
	s := &Sample{Finished: int64(n), Missed: int64(miss), Sent: int64(n), InFlight: inflight}
	for range n {
		s.Latency.Record(lat)
	}
	return s
}

func p99Policy() Policy {
	return Policy{Min: 1, Max: 3, Signal: SignalP99, Target: 0.25, Window: 3 * time.Second, Interval: time.Second,
		UpAt: 1, DownAt: 0.5, UpCooldown: 4 * time.Second, DownCooldown: 5 * time.Second}
}

// ticker drives a controller one interval at a time.
type ticker struct {
	t   *testing.T
	c   *Controller
	now time.Time
}

func (k *ticker) tick(s *Sample, n Counts) Decision {
	k.now = k.now.Add(time.Second)
	return k.c.Tick(k.now, s, n)
}

func (k *ticker) expect(s *Sample, n Counts, action string, desired int, reason string) Decision {
	k.t.Helper()
	d := k.tick(s, n)
	if d.Action != action || d.Desired != desired || !strings.Contains(d.Reason, reason) {
		k.t.Fatalf("at %s with %+v: %s to %d (%s), want %s to %d (…%s…)", k.now.Format("05"), n, d.Action, d.Desired, d.Reason, action, desired, reason)
	}
	return d
}

// TestControllerP99: a breach adds one replica at a time, waiting for the
// starting one and the cooldown after it became ready, up to max; a calm
// window removes one at a time after the down cooldown, but never below the
// capacity a breach taught; min holds.
func TestControllerP99(t *testing.T) {
	k := &ticker{t: t, c: NewController(p99Policy(), 1), now: time.Unix(1000, 0)}
	one := Counts{Ready: 1}
	slow := sample(100, 400*time.Millisecond, 50, 40) // 100 req/s, p99 400 ms > 250 ms
	k.expect(slow, one, ActionHold, 1, "warming up: 1 of 3")
	k.expect(slow, one, ActionHold, 1, "warming up: 2 of 3")
	d := k.expect(slow, one, ActionScaleUp, 2, "1 → 2 replicas")
	if d.Add != 1 || d.Ratio < 1.5 || d.Ratio > 1.8 || d.Capacity != 100 || d.OfferedRate != 100 {
		t.Fatalf("scale-up %+v", d)
	}
	k.expect(slow, Counts{Ready: 1, Starting: 1}, ActionHold, 2, "waiting for 1 starting")
	k.c.Ready(k.now)
	two := Counts{Ready: 2}
	for range 3 {
		k.expect(slow, two, ActionHold, 2, "up cooldown")
	}
	d = k.expect(slow, two, ActionScaleUp, 3, "2 → 3 replicas")
	if d.Capacity != 50 {
		t.Errorf("capacity after a breach at 2 replicas: %g, want 50", d.Capacity)
	}
	k.c.Ready(k.now)
	three := Counts{Ready: 3}
	// Served well at 3 replicas (once the window has forgotten the slow
	// intervals): 100 req/s needs 2 replicas at 80 % of the 50 learned.
	fast := sample(100, 20*time.Millisecond, 0, 2)
	k.expect(fast, three, ActionHold, 3, "already at max_replicas 3")
	k.tick(fast, three)
	k.expect(fast, three, ActionHold, 3, "down cooldown")
	k.expect(fast, three, ActionHold, 3, "down cooldown")
	k.expect(fast, three, ActionHold, 3, "would exceed 2 replica(s) at 80% of the 50.0 req/s")
	// … and the load falls to 30 req/s: the window's 77 req/s fit 2
	// replicas, 30 fit 1; one replica at a time, after the cooldowns.
	calm := sample(30, 20*time.Millisecond, 0, 1)
	d = k.expect(calm, three, ActionScaleDown, 2, "3 → 2 replicas")
	if d.Drain != 1 || math.Abs(d.OfferedRate-230.0/3) > 1e-9 {
		t.Fatalf("scale-down %+v", d)
	}
	k.expect(calm, Counts{Ready: 2, Draining: 1}, ActionHold, 2, "1 draining")
	k.expect(calm, two, ActionHold, 2, "down cooldown")
	k.now = k.now.Add(5 * time.Second)
	k.expect(calm, two, ActionScaleDown, 1, "2 → 1 replicas")
	k.now = k.now.Add(5 * time.Second)
	k.expect(calm, one, ActionHold, 1, "already at min_replicas 1")
}

// TestControllerReplace: a lost replica is replaced at once, cooldowns or
// not, with the desired count unchanged; with no signal that is all it does.
func TestControllerReplace(t *testing.T) {
	for _, p := range []Policy{p99Policy(), {Min: 2, Max: 2, Interval: time.Second}} {
		k := &ticker{t: t, c: NewController(p, 2), now: time.Unix(1000, 0)}
		ok := sample(10, 10*time.Millisecond, 0, 0)
		d := k.expect(ok, Counts{Ready: 1}, ActionReplace, 2, "1 of 2 replicas ready or starting")
		if d.Replace != 1 {
			t.Errorf("replace %+v", d)
		}
		k.expect(ok, Counts{Ready: 1, Starting: 1}, ActionHold, 2, "")
	}
	k := &ticker{t: t, c: NewController(Policy{Min: 2, Max: 2, Interval: time.Second}, 2), now: time.Unix(0, 0)}
	k.expect(sample(10, time.Second, 10, 50), Counts{Ready: 2}, ActionHold, 2, "no autoscaling")
}

// TestControllerInFlight: a proportional signal adds what the ratio asks
// for at once, capped at max.
func TestControllerInFlight(t *testing.T) {
	p := p99Policy()
	p.Signal, p.Target, p.Max = SignalInFlight, 2, 5
	k := &ticker{t: t, c: NewController(p, 1), now: time.Unix(1000, 0)}
	busy := sample(50, 100*time.Millisecond, 0, 7) // 7 in flight on one replica: 3.5× the target
	k.tick(busy, Counts{Ready: 1})
	k.tick(busy, Counts{Ready: 1})
	d := k.expect(busy, Counts{Ready: 1}, ActionScaleUp, 4, "1 → 4 replicas")
	if d.Add != 3 || d.Value != 7 {
		t.Errorf("scale-up %+v", d)
	}
}

// TestControllerGoodput: misses beyond what the target attainment allows
// scale up; a window with nothing finished is no reason to act.
func TestControllerGoodput(t *testing.T) {
	p := p99Policy()
	p.Signal, p.Target = SignalGoodput, 0.99
	k := &ticker{t: t, c: NewController(p, 1), now: time.Unix(1000, 0)}
	k.tick(&Sample{}, Counts{Ready: 1})
	k.tick(&Sample{}, Counts{Ready: 1})
	k.expect(&Sample{}, Counts{Ready: 1}, ActionHold, 1, "nothing to judge by")
	k = &ticker{t: t, c: NewController(p, 1), now: time.Unix(1000, 0)}
	bad := sample(100, 10*time.Millisecond, 5, 1) // attainment 0.95: 5× the misses allowed
	k.tick(bad, Counts{Ready: 1})
	k.tick(bad, Counts{Ready: 1})
	d := k.expect(bad, Counts{Ready: 1}, ActionScaleUp, 2, "attainment 0.9500")
	if math.Abs(d.Ratio-5) > 1e-9 {
		t.Errorf("ratio %g, want 5", d.Ratio)
	}
}

// BenchmarkControllerTick is one decision with a 30-interval window whose
// intervals each hold 2,000 requests: the target is under 1 ms.
func BenchmarkControllerTick(b *testing.B) {
	p := p99Policy()
	p.Window = 30 * time.Second
	c := NewController(p, 2)
	rng := rand.New(rand.NewPCG(1, 2))
	samples := make([]*Sample, 64)
	for i := range samples {
		s := &Sample{Finished: 2000, Sent: 2000, InFlight: 20}
		for range 2000 {
			s.Latency.Record(time.Duration(rng.ExpFloat64() * float64(30*time.Millisecond)))
		}
		samples[i] = s
	}
	now := time.Unix(0, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Second)
		c.Tick(now, samples[i%len(samples)], Counts{Ready: 2})
	}
}

// BenchmarkWindowHDR is the same window kept as HDR histograms (1 µs to
// 1 h, 3 significant digits, what loadgen's recorder uses): merging 30 of
// them and reading the p99, for comparison with the controller's Hist.
func BenchmarkWindowHDR(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	ring := make([]*hdrhistogram.Histogram, 30)
	for i := range ring {
		ring[i] = hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)
		for range 2000 {
			ring[i].RecordValue(int64(rng.ExpFloat64() * 30000))
		}
	}
	win := hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		win.Reset()
		for _, h := range ring {
			win.Merge(h)
		}
		_ = win.ValueAtQuantile(99)
	}
}
