package loadgen_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/loadgen/simserver"
	"github.com/gpuorch/gpuorch/loadgen/simserver/simtest"
)

// countingServer answers 200 after delay and counts the requests it got.
func countingServer(t *testing.T, delay time.Duration) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		time.Sleep(delay)
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func newReplicas(t *testing.T, policy string) *loadgen.Replicas {
	t.Helper()
	m, err := loadgen.NewReplicas(loadgen.TargetConfig{Protocol: "http", Timeout: loadgen.Duration(5 * time.Second)}, policy)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func send(t *testing.T, m *loadgen.Replicas) (*loadgen.Result, error) {
	t.Helper()
	start := time.Now()
	clock := func() time.Duration { return time.Since(start) }
	res := &loadgen.Result{}
	err := m.Do(context.Background(), res, clock)
	return res, err
}

func TestReplicasRoundRobin(t *testing.T) {
	m := newReplicas(t, loadgen.BalanceRoundRobin)
	var counts []*atomic.Int64
	for _, name := range []string{"r0", "r1", "r2"} {
		srv, n := countingServer(t, 0)
		counts = append(counts, n)
		if err := m.Add(name, srv.URL); err != nil {
			t.Fatal(err)
		}
	}
	served := map[string]int{}
	m.OnDone = func(r string, res *loadgen.Result) { served[r]++ }
	for range 30 {
		if res, err := send(t, m); err != nil || res.Outcome != loadgen.OutcomeOK {
			t.Fatalf("outcome %v, err %v", res.Outcome, err)
		}
	}
	for i, n := range counts {
		if n.Load() != 10 {
			t.Errorf("replica %d got %d of 30 requests, want 10", i, n.Load())
		}
	}
	if served["r0"] != 10 || served["r1"] != 10 || served["r2"] != 10 {
		t.Errorf("OnDone saw %v", served)
	}
}

// TestReplicasLeastOutstanding: with one replica ten times slower, the
// policy sends most concurrent requests to the fast one; round robin
// splits them evenly whatever the speed.
func TestReplicasLeastOutstanding(t *testing.T) {
	for _, c := range []struct {
		policy   string
		fastMore bool
	}{{loadgen.BalanceLeastOutstanding, true}, {loadgen.BalanceRoundRobin, false}} {
		t.Run(c.policy, func(t *testing.T) {
			m := newReplicas(t, c.policy)
			slow, ns := countingServer(t, 50*time.Millisecond)
			fast, nf := countingServer(t, 5*time.Millisecond)
			m.Add("slow", slow.URL)
			m.Add("fast", fast.URL)
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 20 {
						if _, err := send(t, m); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if c.fastMore && nf.Load() < 3*ns.Load() {
				t.Errorf("fast replica got %d, slow %d: want the fast one at least 3 times more", nf.Load(), ns.Load())
			}
			if !c.fastMore && (nf.Load() > ns.Load()+8 || ns.Load() > nf.Load()+8) {
				t.Errorf("round robin gave fast %d, slow %d", nf.Load(), ns.Load())
			}
		})
	}
}

// TestReplicasDrainEjectAdmit: a drained replica gets no new request and
// finishes those in flight; a replica that fails with a transport error is
// taken out of rotation at once (its failure counted), and Admit puts it back.
func TestReplicasDrainEjectAdmit(t *testing.T) {
	m := newReplicas(t, loadgen.BalanceRoundRobin)
	a, na := countingServer(t, 100*time.Millisecond)
	b, nb := countingServer(t, 0)
	m.Add("a", a.URL)
	m.Add("b", b.URL)
	// One request in flight on a (round robin starts after a), then drain a.
	inflight := make(chan *loadgen.Result, 1)
	go func() {
		for {
			res, _ := send(t, m)
			if na.Load() > 0 {
				inflight <- res
				return
			}
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	for m.InFlight("a") == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !m.Drain("a") {
		t.Fatal("drain: replica a not there")
	}
	before := nb.Load()
	for range 5 {
		if res, err := send(t, m); err != nil || res.Outcome != loadgen.OutcomeOK {
			t.Fatalf("while a drains: %v %v", res.Outcome, err)
		}
	}
	if nb.Load() != before+5 || na.Load() != 1 {
		t.Errorf("during the drain a got %d, b %d new", na.Load()-1, nb.Load()-before)
	}
	if res := <-inflight; res.Outcome != loadgen.OutcomeOK {
		t.Errorf("the drained replica's request ended %v", res.Outcome)
	}
	if m.InFlight("a") != 0 {
		t.Errorf("in flight on a after the drain: %d", m.InFlight("a"))
	}
	m.Remove("a")

	// A replica that went away: its request fails (counted), then it is
	// out of rotation until admitted.
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	m.Add("c", gone.URL)
	var failed []string
	m.OnDone = func(r string, res *loadgen.Result) {
		if res.Outcome != loadgen.OutcomeOK {
			failed = append(failed, r)
		}
	}
	for range 6 {
		send(t, m)
	}
	if len(failed) != 1 || failed[0] != "c" {
		t.Errorf("failures %v, want exactly one on c", failed)
	}
	st := m.States()
	if len(st) != 2 || st[1].Name != "c" || !st[1].Ejected || st[1].Active {
		t.Fatalf("states %+v", st)
	}
	if !m.Admit("c") || !m.States()[1].Active {
		t.Error("admit did not put c back")
	}
}

func TestReplicasNone(t *testing.T) {
	m := newReplicas(t, "")
	var got []string
	m.OnDone = func(r string, res *loadgen.Result) { got = append(got, r) }
	res, err := send(t, m)
	if !errors.Is(err, loadgen.ErrNoReplica) || res.Outcome != loadgen.OutcomeError || len(got) != 1 || got[0] != "" {
		t.Errorf("err %v outcome %v reported %q", err, res.Outcome, got)
	}
	if err := m.Ready(context.Background()); !errors.Is(err, loadgen.ErrNoReplica) {
		t.Errorf("ready with no replica: %v", err)
	}
	if _, err := loadgen.NewReplicas(loadgen.TargetConfig{Protocol: "http"}, "random"); err == nil {
		t.Error("unknown policy accepted")
	}
}

// TestReplicasRun: a whole load run over three simulated servers through
// the run loop: every request is served, by each replica about a third,
// and the per-replica counts add up to the run's total.
func TestReplicasRun(t *testing.T) {
	m, err := loadgen.NewReplicas(loadgen.TargetConfig{Protocol: "kserve", Models: []string{"m"}}, loadgen.BalanceRoundRobin)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"r0", "r1", "r2"} {
		m.Add(name, simtest.Start(t, simserver.Config{DNN: []simserver.DNNModel{{Name: "m", B1: simserver.Duration(time.Millisecond)}}}))
	}
	var mu sync.Mutex
	per := map[string]int64{}
	m.OnDone = func(r string, res *loadgen.Result) {
		mu.Lock()
		if res.Outcome == loadgen.OutcomeOK {
			per[r]++
		}
		mu.Unlock()
	}
	cfg := &loadgen.Config{Seed: 1, Duration: loadgen.Duration(time.Second),
		Target:   loadgen.TargetConfig{URL: "http://replicas", Protocol: "kserve", Models: []string{"m"}},
		Workload: loadgen.WorkloadConfig{Arrival: "fixed", Rate: 300}}
	w, err := loadgen.BuildWorkload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := loadgen.Run(context.Background(), cfg, w, loadgen.RunOptions{Target: m})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	total := per["r0"] + per["r1"] + per["r2"]
	if sum.Total.Completed != sum.Total.Offered || total != sum.Total.Completed {
		t.Fatalf("offered %d completed %d, per replica %v", sum.Total.Offered, sum.Total.Completed, per)
	}
	for r, n := range per {
		if n < total/3-2 || n > total/3+2 {
			t.Errorf("replica %s served %d of %d", r, n, total)
		}
	}
}
