package nvmlx

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/gpuorch/gpuorch/gpuslice"
)

// BenchmarkEnforcerPoll measures one enforcer poll over 8 mock GPUs, each
// running 4 real processes of 4 jobs under their limits (the steady state:
// sample, charge to jobs, compare; nothing to do). "cached" is the normal
// case (PID → job cached by start time); "cold" reads /proc for every PID.
// Target: < 1 ms per device.
func BenchmarkEnforcerPoll(b *testing.B) {
	for _, m := range []struct {
		name string
		srv  func() *server.Server
	}{{"dgxa100", dgxa100.New}, {"dgxh100", dgxh100.New}} {
		for _, cold := range []bool{false, true} {
			name := m.name + "/cached"
			if cold {
				name = m.name + "/cold"
			}
			b.Run(name, func(b *testing.B) {
				srv := m.srv()
				g := wire(srv)
				t := &testing.T{}
				lim := gpuslice.StaticLimits{}
				for dev := 0; dev < len(srv.Devices); dev++ {
					for k := 0; k < 4; k++ {
						job := fmt.Sprint(7000 + k)
						lim[job] = gpuslice.JobLimit{VRAM: 64 * gpuslice.GiB, ComputePercent: 90, OnOverrun: gpuslice.ActionTerminate, Grace: time.Second}
						c := spawnB(b, t, job)
						g.set(dev, c.pid(), gpuslice.GiB, 10)
					}
				}
				s, err := Open(srv)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				e := &gpuslice.Enforcer{GPU: s, Procs: &gpuslice.ProcFS{}, Sig: &recorder{}, Limits: lim, Config: gpuslice.EnforcerConfig{Node: "bench"}}
				ctx := context.Background()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if cold {
						e.Procs = &gpuslice.ProcFS{}
					}
					evs, err := e.Poll(ctx)
					if err != nil || len(evs) != 0 {
						b.Fatal(err, evs)
					}
				}
				b.StopTimer()
				perDev := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(srv.Devices))
				b.ReportMetric(perDev/1e3, "µs/device")
			})
		}
	}
}

// BenchmarkEnforcerPoll8Procs measures one poll over 8 mock GPUs with 8
// processes each (8 jobs with VRAM and compute limits, each process on every
// GPU), NVML handing out 3 utilisation samples per process since the last
// poll (a 500 ms poll at the driver's ~1/6 s sample period), so the compute
// window and hysteresis run for every job. Steady state: all under their
// limits. Target: < 1 ms per device.
func BenchmarkEnforcerPoll8Procs(b *testing.B) {
	for _, m := range []struct {
		name string
		srv  func() *server.Server
	}{{"dgxa100", dgxa100.New}, {"dgxh100", dgxh100.New}} {
		b.Run(m.name, func(b *testing.B) {
			srv := m.srv()
			g := wire(srv)
			t := &testing.T{}
			lim := gpuslice.StaticLimits{}
			var pids []int
			for k := 0; k < 8; k++ {
				job := fmt.Sprint(7100 + k)
				lim[job] = gpuslice.JobLimit{VRAM: 64 * gpuslice.GiB, ComputePercent: 50, ComputeWindow: 10 * time.Second,
					OnOverrun: gpuslice.ActionTerminate, OnComputeOverrun: gpuslice.ActionTerminate, Grace: time.Second}
				pids = append(pids, spawnB(b, t, job).pid())
			}
			for dev := 0; dev < len(srv.Devices); dev++ {
				var batch []smSample
				for k, pid := range pids {
					g.set(dev, pid, gpuslice.GiB, 0)
					batch = append(batch, smSample{k, 9}, smSample{k, 10}, smSample{k, 11})
				}
				(&utilSeq{batches: repeat(b.N+1, batch...), pids: pids}).install(srv, dev)
			}
			s, err := Open(srv)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			e := &gpuslice.Enforcer{GPU: s, Procs: &gpuslice.ProcFS{}, Sig: &recorder{}, Limits: lim, Config: gpuslice.EnforcerConfig{Node: "bench"}}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				evs, err := e.Poll(ctx)
				if err != nil || len(evs) != 0 {
					b.Fatal(err, evs)
				}
			}
			b.StopTimer()
			perDev := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(srv.Devices))
			b.ReportMetric(perDev/1e3, "µs/device")
		})
	}
}

// spawnB starts a sleep child for a benchmark and stops it at the end.
func spawnB(b *testing.B, t *testing.T, job string) *child {
	b.Helper()
	var c *child
	func() {
		defer func() {
			if t.Failed() {
				b.Fatal("spawn failed")
			}
		}()
		c = spawnNoCleanup(t, job)
	}()
	b.Cleanup(func() { c.cmd.Process.Kill(); <-c.done })
	return c
}

// BenchmarkOverrunLatency runs the enforcer loop at the default 500 ms
// interval and measures, per iteration, the time from the mock starting to
// report a VRAM overrun to the offending process being dead (SIGTERM). The
// overrun starts at a random phase of the poll cycle, so the mean should be
// about half an interval and the max under one interval.
// Run with -benchtime 20x.
func BenchmarkOverrunLatency(b *testing.B) {
	srv := dgxh100.New()
	g := wire(srv)
	s, err := Open(srv)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	lim := gpuslice.StaticLimits{}
	e := &gpuslice.Enforcer{GPU: s, Procs: &gpuslice.ProcFS{}, Sig: &recorder{}, Limits: lim,
		Config: gpuslice.EnforcerConfig{Node: "bench", Interval: 500 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	acted := make(chan time.Time, 100)
	go e.Run(ctx, func(gpuslice.Event) { acted <- time.Now() })
	t := &testing.T{}
	var total, worst, worstAct time.Duration
	for i := 0; i < b.N; i++ {
		job := fmt.Sprint(9000 + i)
		lim[job] = gpuslice.JobLimit{VRAM: gpuslice.GiB, OnOverrun: gpuslice.ActionTerminate, Grace: time.Minute}
		c := spawnB(b, t, job)
		time.Sleep(time.Duration(i%10) * 53 * time.Millisecond) // vary the phase
		start := time.Now()
		g.set(i%8, c.pid(), 2*gpuslice.GiB, 0)
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			b.Fatalf("overrun %d not acted on", i)
		}
		lat := time.Since(start)
		total += lat
		worst = max(worst, lat)
		worstAct = max(worstAct, (<-acted).Sub(start))
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-mean")
	b.ReportMetric(float64(worst.Milliseconds()), "ms-max")
	b.ReportMetric(float64(worstAct.Milliseconds()), "ms-max-to-signal")
}

// BenchmarkComputeOverrunLatency runs the enforcer loop at the default
// 500 ms interval with a 1 s compute window (policy terminate) and
// measures, per iteration, the time from the mock starting to report a
// process at 80 % SM against a 30 % limit to the process dying of SIGTERM.
// The target is the window plus at most one interval. Run with
// -benchtime 10x.
func BenchmarkComputeOverrunLatency(b *testing.B) {
	srv := dgxh100.New()
	g := wire(srv)
	s, err := Open(srv)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	lim := gpuslice.StaticLimits{}
	var mu sync.Mutex
	e := &gpuslice.Enforcer{GPU: s, Procs: &gpuslice.ProcFS{}, Sig: &recorder{}, Limits: lockedLimits{&mu, lim},
		Config: gpuslice.EnforcerConfig{Node: "bench", Interval: 500 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx, nil)
	t := &testing.T{}
	var total, worst time.Duration
	for i := 0; i < b.N; i++ {
		job := fmt.Sprint(9500 + i)
		mu.Lock()
		lim[job] = gpuslice.JobLimit{ComputePercent: 30, ComputeWindow: time.Second, OnComputeOverrun: gpuslice.ActionTerminate, Grace: time.Minute}
		mu.Unlock()
		c := spawnB(b, t, job)
		time.Sleep(time.Duration(i%10) * 53 * time.Millisecond) // vary the phase
		start := time.Now()
		g.set(i%8, c.pid(), gpuslice.MiB, 80)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			b.Fatalf("compute overrun %d not acted on", i)
		}
		lat := time.Since(start)
		total += lat
		worst = max(worst, lat)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-mean")
	b.ReportMetric(float64(worst.Milliseconds()), "ms-max")
}

// lockedLimits guards a StaticLimits the benchmark adds to while the
// enforcer reads it.
type lockedLimits struct {
	mu *sync.Mutex
	m  gpuslice.StaticLimits
}

func (l lockedLimits) Limit(job string) (gpuslice.JobLimit, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m.Limit(job)
}
