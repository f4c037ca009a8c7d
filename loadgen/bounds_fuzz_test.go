package loadgen_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/loadgen/simserver"
	"github.com/gpuorch/gpuorch/loadgen/simserver/simtest"
)

// FuzzBounds drives Check, a plan and a short run against the simulated
// server with numeric extremes. Each input is either refused with an
// errkind.ErrInvalid error, or planned within its bound on arrivals and run
// within its documented bound in time: the duration, the drain (at most
// the request timeout + 1 s), and the pacer's overrun, plus slack for
// starting up and calibrating.
func FuzzBounds(f *testing.F) {
	url := simtest.Start(f, simserver.Config{DNN: []simserver.DNNModel{{Name: "m"}}})

	// arrival (mod 4: poisson, fixed, gamma, closed), rate, duration (ns),
	// concurrency, burstiness, max_requests, interval (ns), slo factor,
	// timeout (ns), max_in_flight.
	f.Add(uint8(0), 200.0, int64(300e6), 0, 0.0, int64(0), int64(100e6), 0.0, int64(2e9), 0)
	f.Add(uint8(1), loadgen.MaxRate, int64(loadgen.MaxDuration), 0, 0.0, int64(0), int64(0), 0.0, int64(0), 0)
	f.Add(uint8(2), 50.0, int64(200e6), 0, loadgen.MinBurstiness, int64(0), int64(0), 2.0, int64(0), 100)
	f.Add(uint8(3), 0.0, int64(200e6), 8, 0.0, int64(50), int64(0), 0.0, int64(1e9), 0)
	f.Add(uint8(0), 1e-300, int64(2e9), 0, 0.0, int64(0), int64(0), 0.0, int64(0), 0)
	f.Add(uint8(0), 1e300, int64(2e9), 0, 0.0, int64(0), int64(0), 0.0, int64(0), 0)
	f.Add(uint8(2), 10.0, int64(1<<62), 0, 1e-300, int64(-1), int64(1), -1.0, int64(-1), -1)
	f.Add(uint8(3), 0.0, int64(0), 1<<40, 0.0, int64(1<<62), int64(0), 0.0, int64(0), 1<<40)
	f.Fuzz(func(t *testing.T, kind uint8, rate float64, durNs int64, conc int, burst float64, maxReq, ivNs int64, factor float64, timeoutNs int64, inFlight int) {
		cfg := loadgen.Config{
			Seed: 1, Duration: loadgen.Duration(durNs), Interval: loadgen.Duration(ivNs), MaxInFlight: inFlight,
			Target: loadgen.TargetConfig{URL: url, Protocol: "kserve", Models: []string{"m"}, Timeout: loadgen.Duration(timeoutNs)},
			Workload: loadgen.WorkloadConfig{Arrival: []string{"poisson", "fixed", "gamma", "closed"}[kind%4],
				Rate: rate, Burstiness: burst, Concurrency: conc, MaxRequests: maxReq},
			SLO: loadgen.SLOConfig{Factor: factor},
		}
		if err := loadgen.Check(&cfg); err != nil {
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Fatalf("refused, but not as invalid input: %v", err)
			}
			return
		}
		const bound = 200_000
		w, err := loadgen.BuildWorkload(&cfg)
		if err != nil {
			t.Fatalf("Check passed, BuildWorkload refused: %v", err)
		}
		pctx, pcancel := context.WithTimeout(context.Background(), time.Minute)
		defer pcancel()
		rep, err := loadgen.PlanWorkload(pctx, w, loadgen.PlanOptions{Duration: cfg.Duration.D(), MaxArrivals: bound})
		switch {
		case err != nil && !errors.Is(err, errkind.ErrInvalid):
			t.Fatalf("plan failed, but not as invalid input: %v", err)
		case err == nil && rep.Total > bound:
			t.Fatalf("plan of %d arrivals passed its bound of %d", rep.Total, bound)
		}

		// The same settings, run for a short while.
		run := cfg
		run.Duration = loadgen.Duration(min(max(cfg.Duration.D(), 0), 300*time.Millisecond))
		if run.Duration == 0 {
			run.Duration = loadgen.Duration(300 * time.Millisecond)
		}
		run.Interval, run.Drain = 0, loadgen.Duration(100*time.Millisecond)
		if err := loadgen.Check(&run); err != nil {
			t.Fatalf("a shorter run of a valid config refused: %v", err)
		}
		w, err = loadgen.BuildWorkload(&run)
		if err != nil {
			t.Fatal(err)
		}
		timeout := run.Target.Timeout.D()
		if timeout <= 0 {
			timeout = loadgen.DefaultTimeout
		}
		limit := run.Duration.D() + min(run.Drain.D(), timeout+time.Second) + 5*time.Second + 10*time.Second
		rctx, rcancel := context.WithTimeout(context.Background(), 2*limit)
		defer rcancel()
		start := time.Now()
		sum, err := loadgen.Run(rctx, &run, w, loadgen.RunOptions{Calibration: map[string]time.Duration{"m": 3 * time.Millisecond}})
		if el := time.Since(start); el > limit {
			t.Fatalf("run of %v took %v, past its bound of %v", run.Duration.D(), el, limit)
		}
		if err != nil {
			t.Fatalf("run failed: %v (summary %+v)", err, sum)
		}
	})
}
