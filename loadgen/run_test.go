package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

func runCfg(url string, wc WorkloadConfig, d time.Duration) *Config {
	return &Config{Seed: 1, Duration: Duration(d), Target: TargetConfig{URL: url}, Workload: wc}
}

func mustRun(t *testing.T, cfg *Config, opts RunOptions) *Summary {
	t.Helper()
	w, err := BuildWorkload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), cfg, w, opts)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// The run ends on time and the achieved count equals the schedule.
func TestRunFixedRateCounts(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	var snaps []Snapshot
	start := time.Now()
	sum := mustRun(t, runCfg(srv.URL, WorkloadConfig{Arrival: "fixed", Rate: 200}, 2*time.Second),
		RunOptions{OnSnapshot: func(s Snapshot) { snaps = append(snaps, s) }})
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("2 s run took %v", el)
	}
	tot := sum.Total
	if tot.Offered != 400 || tot.Completed != 400 || tot.Sent != 400 {
		t.Errorf("offered %d sent %d completed %d, want 400 each", tot.Offered, tot.Sent, tot.Completed)
	}
	if sum.Status != StatusCompleted || tot.Interval != -1 {
		t.Errorf("status %q interval %d", sum.Status, tot.Interval)
	}
	if len(snaps) != 2 {
		t.Fatalf("%d interval snapshots, want 2", len(snaps))
	}
	for i, s := range snaps {
		if s.Interval != i || s.Offered != 200 || s.OfferedRate != 200 {
			t.Errorf("snapshot %d: interval %d offered %d rate %v", i, s.Interval, s.Offered, s.OfferedRate)
		}
	}
	if tot.Lateness.Count != 400 || tot.Latency.Count != 400 {
		t.Errorf("histogram counts %d/%d", tot.Lateness.Count, tot.Latency.Count)
	}
}

// Corrected latency (from the intended time) is never below the
// uncorrected one (from the actual send), and the server's delay shows in
// both.
func TestRunCorrectedVsUncorrected(t *testing.T) {
	t.Parallel()
	const delay = 20 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { time.Sleep(delay) }))
	defer srv.Close()
	var mu sync.Mutex
	var bad []string
	sum := mustRun(t, runCfg(srv.URL, WorkloadConfig{Arrival: "poisson", Rate: 100}, time.Second), RunOptions{
		OnResult: func(r *Result) {
			corrected, uncorrected, late := r.Done-r.Arrival.At, r.Done-r.Sent, r.Sent-r.Arrival.At
			if late < 0 || corrected != uncorrected+late || uncorrected < delay {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("corrected %v uncorrected %v late %v", corrected, uncorrected, late))
				mu.Unlock()
			}
		},
	})
	if len(bad) > 0 {
		t.Fatalf("%d bad results, e.g. %s", len(bad), bad[0])
	}
	if sum.Total.Service.P50 < delay || sum.Total.Latency.P50 < sum.Total.Service.P50 {
		t.Errorf("service p50 %v, latency p50 %v, server delay %v", sum.Total.Service.P50, sum.Total.Latency.P50, delay)
	}
}

func TestRecorderCorrectedLatency(t *testing.T) {
	var got []Snapshot
	rec := NewRecorder(time.Unix(0, 0), time.Second, LLMSLO{}, func(s Snapshot) { got = append(got, s) })
	a := Arrival{At: 100 * time.Millisecond}
	rec.Offered(a)
	// Sent 50 ms late, answered 10 ms after the send.
	rec.Record(&Result{Arrival: a, Sent: 150 * time.Millisecond, Done: 160 * time.Millisecond, Outcome: OutcomeOK})
	rec.Flush(2*time.Second, false, 0)
	if len(got) != 1 {
		t.Fatalf("%d snapshots, want 1", len(got))
	}
	s := got[0]
	// HDR histograms with 3 significant digits: equal to within 0.1%.
	near := func(got, want time.Duration) bool { return got >= want && got <= want+want/1000 }
	if !near(s.Latency.Max, 60*time.Millisecond) || !near(s.Service.Max, 10*time.Millisecond) || !near(s.Lateness.Max, 50*time.Millisecond) {
		t.Errorf("latency %v service %v lateness %v, want 60ms 10ms 50ms", s.Latency.Max, s.Service.Max, s.Lateness.Max)
	}
}

// An interval is emitted only once every request intended in it has
// finished, so a slow request is counted where it was scheduled.
func TestRecorderHoldsIntervalUntilFinished(t *testing.T) {
	var got []Snapshot
	rec := NewRecorder(time.Unix(0, 0), time.Second, LLMSLO{}, func(s Snapshot) { got = append(got, s) })
	a, b := Arrival{At: 500 * time.Millisecond}, Arrival{At: 1500 * time.Millisecond}
	rec.Offered(a)
	rec.Offered(b)
	rec.Record(&Result{Arrival: b, Sent: b.At, Done: b.At + time.Millisecond})
	rec.Flush(3*time.Second, false, 0)
	if len(got) != 0 {
		t.Fatalf("interval 0 emitted with a request in flight")
	}
	rec.Record(&Result{Arrival: a, Sent: a.At, Done: 2900 * time.Millisecond, Outcome: OutcomeTimeout})
	rec.Flush(3*time.Second, false, 0)
	if len(got) != 2 || got[0].Timeouts != 1 || got[1].Completed != 1 {
		t.Fatalf("snapshots %+v", got)
	}
}

func TestRunCountsErrorsTimeoutsDrops(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 1:
		case 2:
			http.Error(w, "boom", http.StatusInternalServerError)
		case 3:
			select { // hang past the client's timeout
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case 0:
			w.Header().Set(DroppedHeader, "deadline")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	cfg := runCfg(srv.URL, WorkloadConfig{Arrival: "fixed", Rate: 100}, time.Second)
	cfg.Target.Timeout = Duration(100 * time.Millisecond)
	sum := mustRun(t, cfg, RunOptions{})
	tot := sum.Total
	if tot.Offered != 100 || tot.Completed != 25 || tot.Errors != 25 || tot.Timeouts != 25 || tot.Dropped != 25 {
		t.Errorf("offered %d completed %d errors %d timeouts %d dropped %d, want 100/25/25/25/25",
			tot.Offered, tot.Completed, tot.Errors, tot.Timeouts, tot.Dropped)
	}
}

// A target that hangs: requests are cancelled at the end of the drain and
// counted; the run ends on time.
func TestRunHangingTargetEndsOnTime(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/ready" {
			return
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := runCfg(srv.URL+"/ready", WorkloadConfig{Arrival: "fixed", Rate: 50}, time.Second)
	cfg.Target.Method = "POST"
	cfg.Drain = Duration(200 * time.Millisecond)
	start := time.Now()
	sum := mustRun(t, cfg, RunOptions{})
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("run against a hanging target took %v", el)
	}
	if sum.Total.Cancelled != 50 || sum.Total.Completed != 0 {
		t.Errorf("cancelled %d completed %d, want 50 and 0", sum.Total.Cancelled, sum.Total.Completed)
	}
}

func TestRunUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := runCfg("http://"+addr, WorkloadConfig{Arrival: "fixed", Rate: 10}, time.Second)
	w, _ := BuildWorkload(cfg)
	sum, err := Run(context.Background(), cfg, w, RunOptions{})
	if !errors.Is(err, errkind.ErrUnavailable) || !strings.Contains(err.Error(), "target unreachable: ") {
		t.Fatalf("err = %v, want errkind.ErrUnavailable saying the target is unreachable", err)
	}
	if sum.Status != StatusFailed || sum.Error == "" {
		t.Errorf("summary status %q error %q", sum.Status, sum.Error)
	}
}

func TestRunBadTarget(t *testing.T) {
	for _, tc := range []TargetConfig{
		{URL: "ftp://x"}, {URL: "127.0.0.1:80"}, {URL: "http://127.0.0.1:1", Protocol: "grpc"},
		{URL: "http://127.0.0.1:1", CredentialEnv: "GPUORCH_TEST_SURELY_UNSET"},
	} {
		if _, err := NewTarget(tc); err == nil {
			t.Errorf("%+v: no error", tc)
		}
	}
}

func TestRunInterrupted(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	cfg := runCfg(srv.URL, WorkloadConfig{Arrival: "fixed", Rate: 100}, time.Minute)
	w, _ := BuildWorkload(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	sum, err := Run(ctx, cfg, w, RunOptions{})
	if !errors.Is(err, context.DeadlineExceeded) || sum.Status != StatusInterrupted {
		t.Fatalf("err %v status %q", err, sum.Status)
	}
	if time.Since(start) > 3*time.Second || sum.Total.Offered < 20 || sum.Total.Offered > 80 {
		t.Errorf("interrupted after %v with %d offered", time.Since(start), sum.Total.Offered)
	}
}

func TestRunClosedLoopConcurrencyBound(t *testing.T) {
	t.Parallel()
	var cur, peak atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			return // readiness probe
		}
		c := cur.Add(1)
		for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		cur.Add(-1)
	}))
	defer srv.Close()
	cfg := runCfg(srv.URL, WorkloadConfig{Arrival: "closed", Concurrency: 3, MaxRequests: 60}, 0)
	cfg.Target.Method = "POST"
	sum := mustRun(t, cfg, RunOptions{})
	if sum.Total.Completed != 60 || sum.Total.Offered != 60 {
		t.Errorf("completed %d offered %d, want 60", sum.Total.Completed, sum.Total.Offered)
	}
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak concurrency at the server %d, want ≤ 3 (and > 1)", p)
	}
}

func TestRunSLODeadlineHeaderAndAttainment(t *testing.T) {
	t.Parallel()
	var bad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			return
		}
		v, err := strconv.ParseFloat(r.Header.Get(DeadlineHeader), 64)
		if err != nil || v < 0 || v > 150 {
			bad.Add(1)
		}
		if r.URL.Query().Get("slow") != "" {
			time.Sleep(300 * time.Millisecond)
		}
	}))
	defer srv.Close()
	for _, slow := range []bool{false, true} {
		u := srv.URL
		if slow {
			u += "/?slow=1"
		}
		cfg := runCfg(u, WorkloadConfig{Arrival: "fixed", Rate: 50}, time.Second)
		cfg.Target.Method = "POST"
		cfg.SLO.Deadline = Duration(150 * time.Millisecond)
		sum := mustRun(t, cfg, RunOptions{})
		tot := sum.Total
		if !slow && tot.SLOMet < 25 { // slack for a heavily loaded machine
			t.Errorf("fast server: %d of %d met a 150 ms SLO", tot.SLOMet, tot.Completed)
		}
		if slow && (tot.SLOMet != 0 || tot.Goodput != 0 || tot.Completed != 50) {
			t.Errorf("slow server: slo_met %d goodput %v completed %d", tot.SLOMet, tot.Goodput, tot.Completed)
		}
	}
	if bad.Load() > 0 {
		t.Errorf("%d requests without a sane %s header", bad.Load(), DeadlineHeader)
	}
}

func TestRunSLOFactorCalibration(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/health/ready" {
			return
		}
		time.Sleep(4 * time.Millisecond)
		w.Write([]byte(`{"outputs":[]}`))
	}))
	defer srv.Close()
	src := &OpenLoop{Model: "resnet", Proc: NewFixed(50), SLOFactor: 100}
	w := &Workload{Name: "steps", Open: []*OpenLoop{src}, Timers: []*Timer{{At: 500 * time.Millisecond, Fire: func(time.Duration) TimerAction {
		src.SLOFactor = 0.01 // impossible: far below the batch-1 latency
		return TimerStop
	}}}}
	cfg := &Config{Duration: Duration(time.Second), Target: TargetConfig{URL: srv.URL, Protocol: "kserve"},
		SLO: SLOConfig{CalibrationRequests: 3}}
	sum, err := Run(context.Background(), cfg, w, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b1 := sum.Calibration["resnet"]
	if b1 < 4*time.Millisecond || b1 > 200*time.Millisecond {
		t.Fatalf("calibrated batch-1 latency %v, want ≥ 4ms", b1)
	}
	if len(sum.Steps) != 2 || sum.Steps[0].SLOFactor != 100 || sum.Steps[1].SLOFactor != 0.01 {
		t.Fatalf("steps %+v", sum.Steps)
	}
	if s := sum.Steps[0]; s.SLOMet < s.Completed*9/10 || s.Offered != 25 {
		t.Errorf("factor 100: met %d of %d (offered %d)", s.SLOMet, s.Completed, s.Offered)
	}
	if s := sum.Steps[1]; s.SLOMet != 0 || s.Offered != 25 {
		t.Errorf("factor 0.01: met %d of %d (offered %d)", s.SLOMet, s.Completed, s.Offered)
	}
}

func TestRunClassesBreakdown(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	w := &Workload{Open: []*OpenLoop{
		{Model: "a", Class: "fg", Proc: NewFixed(30)},
		{Model: "b", Class: "bg", Proc: NewFixed(10)},
	}}
	cfg := &Config{Duration: Duration(time.Second), Target: TargetConfig{URL: srv.URL}}
	sum, err := Run(context.Background(), cfg, w, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Classes) != 2 || sum.Classes[0].Class != "bg" || sum.Classes[0].Offered != 10 || sum.Classes[1].Offered != 30 {
		t.Fatalf("classes %+v", sum.Classes)
	}
}

// TestRunNoneSucceeded: a run whose every request failed (the wrong path
// or protocol) is a failed run naming the most common failure, not a
// completed one with a table of errors.
func TestRunNoneSucceeded(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	cfg := runCfg(srv.URL, WorkloadConfig{Arrival: "fixed", Rate: 20}, 500*time.Millisecond)
	w, _ := BuildWorkload(cfg)
	sum, err := Run(context.Background(), cfg, w, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "no request succeeded") || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("err = %v, want no request succeeded, most often HTTP 404", err)
	}
	if errors.Is(err, errkind.ErrUnavailable) || errors.Is(err, errkind.ErrInvalid) {
		t.Errorf("err = %v: the target answered, so the run failed (exit 1)", err)
	}
	if sum.Status != StatusFailed || sum.Total.Sent == 0 {
		t.Errorf("status %q, sent %d", sum.Status, sum.Total.Sent)
	}
	// Some successes make a completed run.
	var n atomic.Int64
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 != 0 {
			http.NotFound(w, r)
		}
	}))
	defer ok.Close()
	cfg = runCfg(ok.URL, WorkloadConfig{Arrival: "fixed", Rate: 20}, 500*time.Millisecond)
	w, _ = BuildWorkload(cfg)
	if sum, err := Run(context.Background(), cfg, w, RunOptions{}); err != nil || sum.Status != StatusCompleted {
		t.Errorf("some successes: %v, status %q", err, sum.Status)
	}
}
