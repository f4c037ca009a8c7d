package loadgen_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/loadgen/simserver"
	"github.com/gpuorch/gpuorch/loadgen/simserver/simtest"
)

// TestSLOExp1AgainstSimServer runs slo-exp-1 over 1,000 model copies on the
// simulated server: the SLO factor steps, the per-interval factor in force
// and the per-step breakdown must come out of a real run.
func TestSLOExp1AgainstSimServer(t *testing.T) {
	const copies = 1000
	url := simtest.Start(t, simserver.Config{DNN: []simserver.DNNModel{{Name: "resnet50_v2", Copies: copies}}})

	cfg := &loadgen.Config{
		Seed: 1, Interval: loadgen.Duration(250 * time.Millisecond),
		Target: loadgen.TargetConfig{URL: url, Protocol: "kserve", Timeout: loadgen.Duration(2 * time.Second)},
		// 1000 copies at 400 r/s in total; factor 2, 4, 8 for 0.5 s each, then the run ends at 1.5 s.
		Workload: loadgen.WorkloadConfig{Arrival: "slo-exp-1", Args: []string{"resnet50_v2", fmt.Sprint(copies), "poisson", "400", "2", "8", "2", "mul", "0.5"}},
	}
	w, err := loadgen.BuildWorkload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Known batch-1 latencies: skip measuring 1,000 models one by one.
	b1 := map[string]time.Duration{}
	for _, m := range w.Models() {
		b1[m] = 3 * time.Millisecond
	}
	var mu sync.Mutex
	var snaps []loadgen.Snapshot
	sum, err := loadgen.Run(context.Background(), cfg, w, loadgen.RunOptions{
		Calibration: b1,
		OnSnapshot:  func(s loadgen.Snapshot) { mu.Lock(); snaps = append(snaps, s); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != loadgen.StatusCompleted || sum.Total.Errors+sum.Total.Timeouts != 0 {
		t.Fatalf("status %s, total %+v, errors %v", sum.Status, sum.Total, sum.ErrorKinds)
	}
	if n := sum.Total.Offered; n < 400*1.5-120 || n > 400*1.5+120 {
		t.Errorf("offered %d, want ≈ 600 (400/s until the sweep ends at 1.5 s)", n)
	}
	if len(sum.Steps) != 3 {
		t.Fatalf("steps %+v", sum.Steps)
	}
	var stepTotal int64
	for i, st := range sum.Steps {
		if want := float64(int(2) << i); st.SLOFactor != want {
			t.Errorf("step %d factor %g, want %g", i, st.SLOFactor, want)
		}
		stepTotal += st.Offered
	}
	if stepTotal != sum.Total.Offered {
		t.Errorf("steps hold %d requests, total %d", stepTotal, sum.Total.Offered)
	}
	// Each 250 ms snapshot carries the factor in force: 2, 2, 4, 4, 8, 8.
	mu.Lock()
	defer mu.Unlock()
	for _, s := range snaps {
		if s.Interval >= 6 || s.Offered == 0 {
			continue
		}
		if want := float64(int(2) << (s.Interval / 2)); s.SLOFactor != want {
			t.Errorf("interval %d: factor %g, want %g", s.Interval, s.SLOFactor, want)
		}
	}
	if len(sum.Deviations) == 0 {
		t.Error("no deviations recorded in the summary")
	}
}
