package taskrun

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestParseShard(t *testing.T) {
	t.Parallel()
	slurm := env(map[string]string{"SLURM_PROCID": "2", "SLURM_STEP_NUM_TASKS": "4"})
	cases := []struct {
		v        string
		manifest int
		getenv   func(string) string
		want     shardSpec
		err      string
	}{
		{"", 0, nil, shardSpec{count: 1}, ""},
		{"", 1, nil, shardSpec{count: 1}, ""},
		{"", 4, nil, shardSpec{}, "runs as 4 shards"},
		{"2/4", 4, nil, shardSpec{index: 2, count: 4}, ""},
		{"2/4", 0, nil, shardSpec{index: 2, count: 4}, ""},
		{"2/4", 8, nil, shardSpec{}, "the manifest says 8 shards"},
		{"4/4", 4, nil, shardSpec{}, "0 ≤ I < K"},
		{"0/1", 0, nil, shardSpec{}, "2 ≤ K"},
		{"0/2000", 0, nil, shardSpec{}, "K ≤ 1024"},
		{"x", 4, nil, shardSpec{}, "want I/K"},
		{"1/", 4, nil, shardSpec{}, "want I/K"},
		{"slurm", 4, slurm, shardSpec{index: 2, count: 4}, ""},
		{"slurm", 4, env(nil), shardSpec{}, "SLURM_PROCID"},
		{"merge", 4, nil, shardSpec{merge: true, count: 4}, ""},
		{"merge", 0, nil, shardSpec{}, "merge/K"},
		{"merge/3", 0, nil, shardSpec{merge: true, count: 3}, ""},
	}
	for _, c := range cases {
		g := c.getenv
		if g == nil {
			g = env(nil)
		}
		got, err := parseShard(c.v, c.manifest, g)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseShard(%q, %d): %v, want error with %q", c.v, c.manifest, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseShard(%q, %d) = %+v, %v; want %+v", c.v, c.manifest, got, err, c.want)
		}
	}
}

func TestAttemptID(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env  map[string]string
		want string
		err  string
	}{
		{map[string]string{"SLURM_JOB_ID": "2370"}, "2370.0", ""},
		{map[string]string{"SLURM_JOB_ID": "2370", "SLURM_RESTART_COUNT": "2"}, "2370.2", ""},
		{map[string]string{"SLURM_JOB_ID": "2370", "GPUORCH_SHARD_ATTEMPT": "mine-1"}, "mine-1", ""},
		{nil, "", "GPUORCH_SHARD_ATTEMPT"},
		{map[string]string{"GPUORCH_SHARD_ATTEMPT": "../x"}, "", "letters, digits"},
		{map[string]string{"GPUORCH_SHARD_ATTEMPT": ".."}, "", "letters, digits"},
	} {
		got, err := attemptID(env(c.env))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: %q, %v; want error with %q", c.env, got, err, c.err)
			}
		} else if got != c.want || err != nil {
			t.Errorf("%v: %q, %v; want %q", c.env, got, err, c.want)
		}
	}
}

// TestRendezvous: shards that get ready at different times agree on one
// start (the latest ready time plus the margin) and on shard 0's
// calibration, whoever was last.
func TestRendezvous(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const k = 4
	type got struct {
		start time.Time
		calib map[string]time.Duration
		me    readyRecord
		err   error
	}
	out := make([]got, k)
	var wg sync.WaitGroup
	for s := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(k-s) * 30 * time.Millisecond) // shard 0 last
			rv := &rendezvous{dir: dir, shard: s, count: k, timeout: 10 * time.Second, host: fmt.Sprintf("node%d", s+1)}
			var calib map[string]time.Duration
			if s == 0 {
				calib = map[string]time.Duration{"m": 7 * time.Millisecond}
			}
			out[s].start, out[s].calib, out[s].me, out[s].err = rv.meet(context.Background(), calib)
		}()
	}
	wg.Wait()
	var latest time.Time
	for s, g := range out {
		if g.err != nil {
			t.Fatalf("shard %d: %v", s, g.err)
		}
		if g.me.Wall.After(latest) {
			latest = g.me.Wall
		}
		if !g.start.Equal(out[0].start) || g.calib["m"] != 7*time.Millisecond {
			t.Errorf("shard %d: start %v calibration %v; shard 0: %v", s, g.start, g.calib, out[0].start)
		}
		// One machine: its clock and the filesystem's agree to within the
		// uncertainty, which is at most a scheduler tick or two here.
		if a := g.me.ClockOffset.Abs(); a > g.me.ClockUncertainty+time.Millisecond || g.me.ClockUncertainty > 50*time.Millisecond {
			t.Errorf("shard %d: clock offset %v ± %v on one machine", s, g.me.ClockOffset, g.me.ClockUncertainty)
		}
	}
	if !out[0].start.Equal(latest.Add(startMargin)) {
		t.Errorf("start %v, want the last ready time %v + %v", out[0].start, latest, startMargin)
	}
}

// TestRendezvousFailures: a shard that fails before the start stops the
// others at once, naming it; shards that never come make the others give
// up after the timeout, naming them.
func TestRendezvousFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	(&rendezvous{dir: dir, shard: 3, count: 4, host: "node4"}).fail(errors.New("target unreachable"))
	t0 := time.Now()
	_, _, _, err := (&rendezvous{dir: dir, shard: 0, count: 4, timeout: time.Minute}).meet(context.Background(), nil)
	if err == nil || err.Error() != "shard 3 of 4 (node4) failed before the start: target unreachable" || time.Since(t0) > 5*time.Second {
		t.Errorf("after a failed shard: %v (after %v)", err, time.Since(t0))
	}

	dir = t.TempDir()
	_, _, _, err = (&rendezvous{dir: dir, shard: 1, count: 3, timeout: 300 * time.Millisecond}).meet(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "shards 0, 2 of 3 not ready after 300ms") {
		t.Errorf("alone: %v", err)
	}
	// … and it told the others so.
	if _, _, _, err := (&rendezvous{dir: dir, shard: 0, count: 3, timeout: time.Minute}).meet(context.Background(), nil); err == nil ||
		!strings.Contains(err.Error(), "shard 1 of 3 failed before the start: shards 0, 2 of 3 not ready") {
		t.Errorf("after one gave up: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, _, err := (&rendezvous{dir: t.TempDir(), shard: 0, count: 2, timeout: time.Minute}).meet(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// shardedTask runs k shards of cfg in this process (each as a shard
// process would: Prepare, then Run with --shard i/k), then merges them.
func shardedTask(t *testing.T, cfg loadgen.Config, dir string, k int, skip map[int]bool) (shards []*loadgen.Summary, errs []error, merged *loadgen.Summary, mergeErr error) {
	t.Helper()
	shards = make([]*loadgen.Summary, k)
	errs = make([]error, k)
	var wg sync.WaitGroup
	for i := range k {
		if skip[i] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cfg
			w, err := Prepare(&c)
			if err != nil {
				errs[i] = err
				return
			}
			shards[i], errs[i] = Run(context.Background(), &c, w, Options{Dir: dir, Shard: fmt.Sprintf("%d/%d", i, k)})
		}()
	}
	wg.Wait()
	c := cfg
	w, err := Prepare(&c)
	if err != nil {
		t.Fatal(err)
	}
	merged, mergeErr = Run(context.Background(), &c, w, Options{Dir: dir, Shard: "merge"})
	return shards, errs, merged, mergeErr
}

// TestShardedTaskInProcess runs a 4-shard Poisson task against a real HTTP
// server: the shards start together, send between them exactly the
// unsharded schedule, and the merged summary counts every request once; a
// shard that never ran is named by the merge, which keeps the others'.
func TestShardedTaskInProcess(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { time.Sleep(time.Millisecond) }))
	defer srv.Close()
	cfg := loadgen.Config{
		Experiment: "e", Task: "t000", Seed: 11, Duration: loadgen.Duration(2 * time.Second), Shards: 4,
		ShardTimeout: loadgen.Duration(20 * time.Second),
		Target:       loadgen.TargetConfig{URL: srv.URL, Protocol: "http"},
		Workload:     loadgen.WorkloadConfig{Arrival: "poisson", Rate: 400},
	}
	w, err := loadgen.BuildWorkload(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := loadgen.Plan(context.Background(), w, cfg.Duration.D(), nil, func(loadgen.Arrival) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	planned := st.Arrivals

	t.Setenv("GPUORCH_SHARD_ATTEMPT", "inproc-1")
	dir := t.TempDir()
	shards, errs, merged, err := shardedTask(t, cfg, dir, 4, nil)
	if err != nil || errors.Join(errs...) != nil {
		t.Fatalf("merge: %v; shards: %v", err, errs)
	}
	if merged.Total.Offered != planned || merged.Status != loadgen.StatusCompleted || len(merged.Shards) != 4 {
		t.Errorf("merged: offered %d (planned %d), status %s, %d shards", merged.Total.Offered, planned, merged.Status, len(merged.Shards))
	}
	var sum int64
	for i, s := range shards {
		sum += s.Total.Offered
		if s.Shard == nil || !s.Shard.Start.Equal(shards[0].Shard.Start) || !s.Started.Equal(s.Shard.Start) || s.Shard.StartOffset >= 0 {
			t.Errorf("shard %d: %+v started %v", i, s.Shard, s.Started)
		}
		if _, err := os.Stat(layout.Task(dir).Shard(i).Metrics()); err != nil {
			t.Errorf("shard %d: %v", i, err)
		}
	}
	if sum != planned {
		t.Errorf("shards offered %d in all, planned %d", sum, planned)
	}
	// The live view of a sharded task merges its shards' last intervals.
	last, ok := LastSnapshot(layout.Task(dir))
	var lastSum int64
	for i := range 4 {
		sn, _ := lastSnapshot(layout.Task(dir).Shard(i))
		lastSum += sn.Offered
	}
	if !ok || last.Offered != lastSum || last.Interval != 1 {
		t.Errorf("last snapshot of the sharded task: %v, interval %d offered %d (shards: %d)", ok, last.Interval, last.Offered, lastSum)
	}
	if _, err := Run(context.Background(), &cfg, w, Options{Shard: "1/4"}); err == nil || !strings.Contains(err.Error(), "give --out DIR") {
		t.Errorf("a shard without a directory: %v", err)
	}
	var onDisk loadgen.Summary
	if err := readJSON(layout.Task(dir).Summary(), &onDisk); err != nil || onDisk.Total.Offered != planned {
		t.Errorf("summary.json: %v, offered %d", err, onDisk.Total.Offered)
	}

	// Shard 2's summary is gone (as if it was killed at the end): the merge
	// names it, with its host, and keeps the others' requests.
	if err := os.Remove(layout.Task(dir).Shard(2).Summary()); err != nil {
		t.Fatal(err)
	}
	c := cfg
	w2, _ := Prepare(&c)
	merged, err = Run(context.Background(), &c, w2, Options{Dir: dir, Shard: "merge"})
	host := shards[2].Shard.Host
	if err == nil || !strings.Contains(err.Error(), "shard 2 of 4 ("+host+") wrote no summary") ||
		merged.Total.Offered != planned-shards[2].Total.Offered || merged.Shards[2].Status != "missing" {
		t.Errorf("shard 2 lost: %v; offered %d", err, merged.Total.Offered)
	}

	// Shard 2 never runs (as if killed before it wrote anything): the
	// others give up on it at the start, and the merge names it.
	t.Setenv("GPUORCH_SHARD_ATTEMPT", "inproc-2")
	cfg.ShardTimeout = loadgen.Duration(time.Second)
	_, errs, merged, err = shardedTask(t, cfg, filepath.Join(dir, "again"), 4, map[int]bool{2: true})
	if err == nil || merged.Status != loadgen.StatusFailed || !strings.Contains(err.Error(), "shard 2 of 4 wrote no summary") {
		t.Errorf("a missing shard: %v (status %s)", err, merged.Status)
	}
	for i, e := range errs {
		if i != 2 && (e == nil || !strings.Contains(e.Error(), "not ready after 1s")) {
			t.Errorf("shard %d without shard 2: %v", i, e)
		}
	}
	if errors.Is(err, errkind.ErrInvalid) {
		t.Errorf("a missing shard is no bad input: %v", err)
	}
}
