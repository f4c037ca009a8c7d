package loadgen

import (
	"context"
	"testing"
	"time"
)

// BenchmarkPlanCancel measures how soon a plan stops after its context is
// cancelled (the bound is CancelLatency, 100 ms) and what one planned
// arrival costs: Plan looks at its context every planCheckEvery events.
func BenchmarkPlanCancel(b *testing.B) {
	var worst, total time.Duration
	var arrivals int64
	var planned time.Duration
	for i := 0; i < b.N; i++ {
		w, err := BuildWorkload(&Config{Seed: int64(i), Workload: WorkloadConfig{Arrival: "poisson", Rate: MaxRate}})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan time.Time, 1)
		var n int64
		start := time.Now()
		go func() {
			_, _ = Plan(ctx, w, 90*time.Second, nil, func(Arrival) bool { n++; return true })
			done <- time.Now()
		}()
		time.Sleep(200 * time.Millisecond)
		cancel()
		at := time.Now()
		end := <-done
		lat := end.Sub(at)
		total += lat
		worst = max(worst, lat)
		arrivals += n
		planned += at.Sub(start)
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "ms-max-to-stop")
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-mean-to-stop")
	b.ReportMetric(float64(planned.Nanoseconds())/float64(arrivals), "ns/arrival")
}
