package orchestrator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sbatch"
)

// benchSweep is a spec with n sweep points whose jobs are submitted held
// (they never run; the benchmark cancels them).
func benchSweep(b *testing.B, n int) *Spec {
	rates := make([]string, n)
	for i := range rates {
		rates[i] = fmt.Sprint(i + 1)
	}
	src := `[experiment]
name = "bench-submit"
[target]
url = "http://127.0.0.1:1"
[[workload]]
arrival = "poisson"
rate = 1
[sweep]
"workload.rate" = [` + strings.Join(rates, ", ") + `]
[run]
duration = "10s"
[slurm]
extra_args = ["--hold"]
`
	s, err := ParseSpec("bench.toml", []byte(src), nil)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkSlurmSubmit1000 submits a 1,000-point sweep to the test cluster
// two ways, in the same run: as one array job through the Slurm executor
// (render, save the script, one sbatch, record the id), and as one sbatch
// call per point (what a shell loop does). Jobs are held and cancelled.
//
//	go test -run '^$' -bench SlurmSubmit -benchtime 1x ./orchestrator/
func BenchmarkSlurmSubmit1000(b *testing.B) {
	testgate.Slurm(b)
	const n = 1000
	ctx := context.Background()
	client := &sbatch.Client{}
	s := benchSweep(b, n)
	p, err := s.Plan()
	if err != nil {
		b.Fatal(err)
	}
	if len(p.Tasks) != n {
		b.Fatalf("plan has %d tasks", len(p.Tasks))
	}

	b.Run("array-one-sbatch", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			exp, err := Create(b.TempDir(), s, p, "slurm")
			if err != nil {
				b.Fatal(err)
			}
			ex, _ := NewSlurm(ExecutorOptions{Binary: "/bin/true"})
			b.StartTimer()
			start := time.Now()
			if err := Execute(ctx, exp, ex, nil); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(time.Since(start).Seconds(), "s/sweep")
			b.StopTimer()
			_ = client.Cancel(ctx, exp.Snapshot().Submissions[0].JobID)
			b.StartTimer()
		}
	})

	b.Run("loop-sbatch-per-point", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			exp, err := Create(b.TempDir(), s, p, "slurm")
			if err != nil {
				b.Fatal(err)
			}
			var ids []string
			b.StartTimer()
			start := time.Now()
			for k := 0; k < n; k++ {
				job, err := SlurmJob(exp.Plan, exp.ID(), exp.Dir, "/bin/true", []int{k})
				if err != nil {
					b.Fatal(err)
				}
				script, err := job.Render()
				if err != nil {
					b.Fatal(err)
				}
				id, err := client.Submit(ctx, script)
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, id)
			}
			b.ReportMetric(time.Since(start).Seconds(), "s/sweep")
			b.StopTimer()
			if err := client.CancelJobs(ctx, ids...); err != nil {
				b.Error(err)
			}
			b.StartTimer()
		}
	})
}
