package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkRunOpenLoop runs open-loop Poisson load against an in-process
// server for b.N requests at 10,000/s; use -cpuprofile to see the sender's
// hot path (server frames are net/http.(*conn).serve).
func BenchmarkRunOpenLoop(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	const rate = 10000
	cfg := &Config{Seed: 1, Target: TargetConfig{URL: srv.URL}, Workload: WorkloadConfig{Arrival: "poisson", Rate: rate, MaxRequests: int64(b.N)}}
	cfg.Duration = Duration(time.Duration(float64(b.N)/rate*1e9) + time.Second)
	w, err := BuildWorkload(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	sum, err := Run(context.Background(), cfg, w, RunOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(sum.Total.Lateness.P99.Microseconds()), "p99-lateness-µs")
}

// nopTarget answers every request at once: it measures the generator's
// own ceiling (scheduler, sender, workers, recording) without a network.
type nopTarget struct{}

func (nopTarget) Ready(context.Context) error { return nil }
func (nopTarget) Do(_ context.Context, res *Result, clock func() time.Duration) error {
	res.Status, res.Outcome, res.Done = 200, OutcomeOK, clock()
	return nil
}

// BenchmarkRunNoNetwork sends b.N Poisson arrivals at 100,000/s to a target
// that answers immediately.
func BenchmarkRunNoNetwork(b *testing.B) {
	const rate = 100000
	cfg := &Config{Seed: 1, Workload: WorkloadConfig{Arrival: "poisson", Rate: rate, MaxRequests: int64(b.N)}}
	cfg.Duration = Duration(time.Duration(float64(b.N)/rate*1e9) + time.Second)
	w, err := BuildWorkload(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	sum, err := Run(context.Background(), cfg, w, RunOptions{Target: nopTarget{}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(sum.Total.Lateness.P99.Microseconds()), "p99-lateness-µs")
	b.ReportMetric(float64(sum.Total.Completed)/float64(sum.Total.Offered), "completed/offered")
}

// BenchmarkScheduler4000Sources pops arrivals from 4,000 merged Poisson
// sources on the virtual clock (Clockwork's azure scale).
func BenchmarkScheduler4000Sources(b *testing.B) {
	w := &Workload{}
	for i := 0; i < 4000; i++ {
		w.Open = append(w.Open, &OpenLoop{Model: "m", Proc: NewPoisson(1, NewRNG(1, uint64(i)))})
	}
	s := NewScheduler(w)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := s.Pop(); !ok {
			b.Fatal("scheduler ended")
		}
	}
}
