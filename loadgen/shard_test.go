package loadgen

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// shardedPlans plans shard i of k of the workload build makes (a fresh one
// per shard, as every shard builds its own), and returns each shard's
// arrivals and the split.
func shardedPlans(t *testing.T, build func() *Workload, k int, d time.Duration, o ShardOptions) (per [][]Arrival, open, closed string) {
	t.Helper()
	for i := range k {
		w := build()
		var err error
		if open, closed, err = w.Shard(i, k, o); err != nil {
			t.Fatalf("shard %d of %d: %v", i, k, err)
		}
		per = append(per, planTimes(t, w, d))
	}
	return per, open, closed
}

// union merges the shards' arrivals into one time-ordered schedule (ties:
// by Seq when seqs are global, else by model then class).
func union(per [][]Arrival) []Arrival {
	var all []Arrival
	for _, p := range per {
		all = append(all, p...)
	}
	slices.SortStableFunc(all, func(a, b Arrival) int {
		if a.At != b.At {
			return int(a.At - b.At)
		}
		if a.Seq != b.Seq {
			return int(a.Seq - b.Seq)
		}
		return strings.Compare(a.Model+"\x00"+a.Class, b.Model+"\x00"+b.Class)
	})
	return all
}

// sameSchedule fails unless got and want hold the same arrivals: times,
// models, classes and SLO factors, and Seq when withSeq.
func sameSchedule(t *testing.T, what string, got, want []Arrival, withSeq bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: shards together have %d arrivals, unsharded %d", what, len(got), len(want))
	}
	if !withSeq {
		// Equal times may come out in any order: compare as sorted sets.
		key := func(a Arrival) string { return fmt.Sprintf("%d|%s|%s|%g", a.At, a.Model, a.Class, a.SLOFactor) }
		gk, wk := make([]string, len(got)), make([]string, len(want))
		for i := range got {
			gk[i], wk[i] = key(got[i]), key(want[i])
		}
		slices.Sort(gk)
		slices.Sort(wk)
		for i := range gk {
			if gk[i] != wk[i] {
				t.Fatalf("%s: arrival %d differs: shards %s, unsharded %s", what, i, gk[i], wk[i])
			}
		}
		return
	}
	for i := range got {
		g, w := got[i], want[i]
		g.closed, w.closed = 0, 0
		if g != w {
			t.Fatalf("%s: arrival %d differs:\n shards    %+v\n unsharded %+v", what, i, g, w)
		}
	}
}

// TestShardUnionIsUnsharded is the splitting property: for random seeds,
// arrival kinds, rates, model counts and shard counts, the shards' arrivals
// together are exactly the unsharded schedule.
func TestShardUnionIsUnsharded(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(18, 18))
	kinds := []string{"poisson", "fixed", "gamma"}
	for trial := range 60 {
		cfg := &Config{
			Seed: rng.Int64N(1 << 40),
			Workload: WorkloadConfig{
				Arrival: kinds[trial%len(kinds)], Rate: 50 + rng.Float64()*3000, Burstiness: 0.3 + rng.Float64()*3,
			},
		}
		for m := range 1 + rng.IntN(6) {
			cfg.Target.Models = append(cfg.Target.Models, fmt.Sprintf("m%d", m))
		}
		if trial%5 == 0 {
			cfg.Workload.MaxRequests = 1 + rng.Int64N(3000)
		}
		k := 1 + rng.IntN(9)
		d := time.Duration(1+rng.IntN(4)) * time.Second
		if cfg.Workload.MaxRequests > 0 {
			d = 0
		}
		build := func() *Workload {
			w, err := BuildWorkload(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return w
		}
		name := fmt.Sprintf("trial %d: %s %.0f/s seed %d, %d models, max %d, %d shards", trial, cfg.Workload.Arrival,
			cfg.Workload.Rate, cfg.Seed, len(cfg.Target.Models), cfg.Workload.MaxRequests, k)
		want := planTimes(t, build(), d)
		per, open, _ := shardedPlans(t, build, k, d, ShardOptions{})
		sameSchedule(t, name, union(per), want, open != SplitSources)
		if open == SplitArrivals {
			// Dealt round-robin: the shards' counts differ by at most one.
			lo, hi := len(per[0]), len(per[0])
			for _, p := range per {
				lo, hi = min(lo, len(p)), max(hi, len(p))
			}
			if hi-lo > 1 {
				t.Fatalf("%s: arrival split gave %d to %d arrivals per shard", name, lo, hi)
			}
		}
		if k > 1 && cfg.Workload.MaxRequests > 0 && open != SplitArrivals {
			t.Fatalf("%s: max_requests needs the arrival split, got %q", name, open)
		}
	}
}

func TestShardSplitChoice(t *testing.T) {
	t.Parallel()
	models := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("m%d", i))
		}
		return out
	}
	cases := []struct {
		name   string
		models int
		k      int
		keep   bool
		want   string
	}{
		{"one source", 1, 4, false, SplitArrivals},
		{"8 equal sources over 4", 8, 4, false, SplitSources},
		{"8 equal sources over 4, seq kept", 8, 4, true, SplitArrivals},
		{"5 equal sources over 4 (one shard twice as busy)", 5, 4, false, SplitArrivals},
		{"40 equal sources over 4", 40, 4, false, SplitSources},
		{"3 sources over 4", 3, 4, false, SplitArrivals},
	}
	for _, c := range cases {
		w, err := BuildWorkload(&Config{Seed: 1, Target: TargetConfig{Models: models(c.models)}, Workload: WorkloadConfig{Arrival: "poisson", Rate: 100}})
		if err != nil {
			t.Fatal(err)
		}
		open, closed, err := w.Shard(1, c.k, ShardOptions{KeepSeq: c.keep})
		if err != nil || open != c.want || closed != "" {
			t.Errorf("%s: split %q/%q, %v; want %q", c.name, open, closed, err, c.want)
		}
	}
}

// TestShardClockworkSLOExp splits Clockwork's slo-exp-1 (a timer raising
// every source's SLO factor and ending the run) both ways: by source with
// copies a multiple of the shards, by arrival otherwise; the factors and
// the end agree with the unsharded run.
func TestShardClockworkSLOExp(t *testing.T) {
	t.Parallel()
	for _, copies := range []string{"8", "5"} {
		cfg := &Config{Seed: 3, Workload: WorkloadConfig{Arrival: "slo-exp-1", Params: map[string]any{
			"model": "resnet50_v2", "copies": copies, "dist": "poisson", "rate": 800,
			"slo-start": 2, "slo-end": 16, "slo-factor": 2, "slo-op": "mul", "period": 1,
		}}}
		build := func() *Workload {
			w, err := BuildWorkload(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return w
		}
		want := planTimes(t, build(), 0)
		per, open, _ := shardedPlans(t, build, 4, 0, ShardOptions{})
		if wantSplit := map[string]string{"8": SplitSources, "5": SplitArrivals}[copies]; open != wantSplit {
			t.Fatalf("copies %s: split %q, want %q", copies, open, wantSplit)
		}
		sameSchedule(t, "slo-exp-1 copies "+copies, union(per), want, open == SplitArrivals)
		factors := map[float64]bool{}
		for _, a := range want {
			factors[a.SLOFactor] = true
		}
		if len(factors) != 4 {
			t.Fatalf("copies %s: unsharded schedule has factors %v, want 2, 4, 8, 16", copies, factors)
		}
	}
}

// TestShardClosedClients deals closed-loop clients round-robin and divides
// each loop's request count so that the shards send exactly as many.
func TestShardClosedClients(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		conc, k int
		max     int64
	}{{10, 3, 1000}, {8, 3, 2}, {3, 4, 7}, {1, 2, 5}, {16, 16, 100}} {
		cfg := &Config{Seed: 1, Workload: WorkloadConfig{Arrival: "closed", Concurrency: c.conc, MaxRequests: c.max}}
		total, clients := 0, 0
		for i := range c.k {
			w, err := BuildWorkload(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, closed, err := w.Shard(i, c.k, ShardOptions{})
			if err != nil || closed != SplitClients {
				t.Fatalf("%+v: %q, %v", c, closed, err)
			}
			clients += w.Closed[0].Concurrency
			total += len(planTimes(t, w, 0))
		}
		// A shard whose clients have no share of the count starts none.
		if (c.max >= int64(c.conc) && clients != c.conc) || int64(total) != c.max {
			t.Errorf("conc %d max %d over %d shards: %d clients sent %d requests", c.conc, c.max, c.k, clients, total)
		}
	}
}

func TestShardErrors(t *testing.T) {
	t.Parallel()
	poisson := func() *Workload {
		w, _ := BuildWorkload(&Config{Seed: 1, Workload: WorkloadConfig{Arrival: "poisson", Rate: 10}})
		return w
	}
	for _, c := range []struct {
		i, k int
		want string
	}{{0, 0, "between 1 and 1024"}, {4, 4, "between 0 and 3"}, {-1, 2, "between 0 and 1"}, {0, MaxShards + 1, "between 1 and 1024"}} {
		if _, _, err := poisson().Shard(c.i, c.k, ShardOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Shard(%d, %d): %v, want %q", c.i, c.k, err, c.want)
		}
	}
	w := poisson()
	if _, _, err := w.Shard(0, 2, ShardOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Shard(1, 2, ShardOptions{}); err == nil {
		t.Error("a workload sharded twice: no error")
	}
	mixed := &Workload{MaxRequests: 10,
		Open:   []*OpenLoop{{Proc: NewFixed(10)}},
		Closed: []*ClosedLoop{{Concurrency: 2}}}
	if _, _, err := mixed.Shard(0, 2, ShardOptions{}); err == nil || !strings.Contains(err.Error(), "max_requests") {
		t.Errorf("open+closed with max_requests: %v", err)
	}
}

// BenchmarkShardSkip is what an arrival split costs a shard per arrival of
// the other shards: the schedule is walked, never slept on.
func BenchmarkShardSkip(b *testing.B) {
	for _, k := range []int{1, 4, 40} {
		b.Run(fmt.Sprintf("shards=%d", k), func(b *testing.B) {
			w, _ := BuildWorkload(&Config{Seed: 1, Workload: WorkloadConfig{Arrival: "poisson", Rate: 1e6}})
			if _, _, err := w.Shard(0, k, ShardOptions{}); err != nil {
				b.Fatal(err)
			}
			s := NewScheduler(w)
			b.ResetTimer()
			// One op = one arrival of the whole schedule (1/k of them kept).
			for n := 0; n < b.N; n += k {
				if _, ok := s.Next(); !ok {
					b.Fatal("schedule ended")
				}
				s.Pop()
			}
		})
	}
}
