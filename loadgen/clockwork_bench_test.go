package loadgen

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	benchTraceOnce sync.Once
	benchTraceDir  string
)

// benchTrace generates (once per process) a day of 8,000 functions, enough
// for every one of the 4,026 copies of azure at memory_load_factor 4.
func benchTrace(b *testing.B) string {
	benchTraceOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gpuorch-azure-bench")
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, "invocations_per_function_md.anon.d01.csv"))
		if err != nil {
			b.Fatal(err)
		}
		if err := WriteAzureTrace(f, GenerateAzureTrace(AzureGenOptions{Functions: 8000, Seed: 1, Day: 1})); err != nil {
			b.Fatal(err)
		}
		f.Close()
		benchTraceDir = dir
	})
	return benchTraceDir
}

// azureAt builds azure with memory_load_factor 4 (4,026 models) and the load
// factor that makes the first span of the replay offer rate requests/s.
func azureAt(b *testing.B, rate float64, span time.Duration) func() *Workload {
	dir := benchTrace(b)
	args := func(load float64) []string {
		return []string{"1", "1", fmt.Sprint(load), "4", "60", "1", "0", "trace_dir=" + dir}
	}
	w, err := ParseClockwork("azure", args(1), nil, nil, 1, span)
	if err != nil {
		b.Fatal(err)
	}
	var e float64
	for _, o := range w.Open {
		e += o.Proc.(*TraceReplay).ExpectedCount(0, span)
	}
	load := rate * span.Seconds() / e
	return func() *Workload {
		w, err := ParseClockwork("azure", args(load), nil, nil, 1, span)
		if err != nil {
			b.Fatal(err)
		}
		return w
	}
}

// BenchmarkClockworkSchedule measures the schedule's own CPU: the whole
// arrival process of a workload (sources, heap, timers) on the virtual
// clock, nothing sent. cpu_%_of_core = CPU time per second of schedule.
//
//	go test ./loadgen -run '^$' -bench ClockworkSchedule -benchtime 3x
func BenchmarkClockworkSchedule(b *testing.B) {
	for _, bc := range []struct {
		name  string
		span  time.Duration
		build func(b *testing.B, span time.Duration) func() *Workload
	}{
		{"azure-mem4-1000rps", 60 * time.Second, func(b *testing.B, span time.Duration) func() *Workload {
			return azureAt(b, 1000, span)
		}},
		{"bursty_experiment-3600", 600 * time.Second, func(b *testing.B, span time.Duration) func() *Workload {
			return func() *Workload {
				w, err := ParseClockwork("bursty_experiment", nil, nil, nil, 1, span)
				if err != nil {
					b.Fatal(err)
				}
				return w
			}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			mk := bc.build(b, bc.span)
			var n int64
			var models int
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				w := mk()
				models = len(w.Models())
				b.StartTimer()
				st, _ := Plan(context.Background(), w, bc.span, nil, func(Arrival) bool { return true })
				n += st.Arrivals
			}
			el := b.Elapsed()
			b.ReportMetric(float64(n)/float64(b.N), "arrivals/op")
			b.ReportMetric(float64(n)/float64(b.N)/bc.span.Seconds(), "req/s")
			b.ReportMetric(float64(models), "models")
			b.ReportMetric(float64(el.Nanoseconds())/float64(n), "ns/arrival")
			b.ReportMetric(100*el.Seconds()/(float64(b.N)*bc.span.Seconds()), "cpu_%_of_core")
		})
	}
}
