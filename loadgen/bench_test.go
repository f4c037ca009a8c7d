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
