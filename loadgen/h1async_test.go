package loadgen

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// A request written on a keep-alive connection that the server closes
// without answering (the stale keep-alive race) is sent once more, on
// another connection, and succeeds.
func TestAsyncRetriesStaleKeepAlive(t *testing.T) {
	t.Parallel()
	addr, conns := serveTCP(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			for { // one request's headers
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == "\r\n" {
					break
				}
			}
			if i == 1 {
				return // the second request on a connection: close, no answer
			}
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	cfg := runCfg("http://"+addr+"/", WorkloadConfig{Arrival: "fixed", Rate: 50}, 400*time.Millisecond)
	cfg.Target.MaxConnections = 1
	sum := mustRun(t, cfg, RunOptions{})
	tot := sum.Total
	if tot.Offered != 20 || tot.Completed != 20 || tot.Errors != 0 {
		t.Errorf("offered %d completed %d errors %d (%v), want 20/20/0; %+v", tot.Offered, tot.Completed, tot.Errors, sum.ErrorKinds, tot)
	}
	// The readiness probe, then every request but the first on a new connection.
	if n := conns.Load(); n < 20 {
		t.Errorf("%d connections, want at least 20", n)
	}
}

// Slow answers do not hold back sends: with connections to spare, requests
// go out on time while earlier ones are still being served.
func TestAsyncSendsDoNotWaitForAnswers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			time.Sleep(50 * time.Millisecond)
		}
	}))
	defer srv.Close()
	cfg := runCfg(srv.URL, WorkloadConfig{Arrival: "fixed", Rate: 400}, 500*time.Millisecond)
	cfg.Target.Method = "POST"
	sum := mustRun(t, cfg, RunOptions{})
	tot := sum.Total
	if tot.Completed != 200 {
		t.Fatalf("completed %d of 200", tot.Completed)
	}
	if tot.Service.P50 < 50*time.Millisecond {
		t.Errorf("service p50 %v, want ≥ the server's 50 ms", tot.Service.P50)
	}
	// 20 requests are in flight at any time; were sends serialised behind
	// answers, lateness would grow by 50 ms per request.
	if tot.Lateness.P99 > 25*time.Millisecond {
		t.Errorf("lateness p99 %v: sends waited for answers", tot.Lateness.P99)
	}
	if !slices.Contains([]string{PacerRealtime, PacerNice, PacerNormal}, sum.Pacer) {
		t.Errorf("summary pacer %q", sum.Pacer)
	}
}

// With pacer_priority "normal" the pacer does not ask for more.
func TestPacerPriorityNormal(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	cfg := runCfg(srv.URL, WorkloadConfig{Arrival: "fixed", Rate: 100}, 100*time.Millisecond)
	cfg.PacerPriority = PacerNormal
	if sum := mustRun(t, cfg, RunOptions{}); sum.Pacer != PacerNormal {
		t.Errorf("pacer %q, want normal", sum.Pacer)
	}
}

// A target that goes away mid-run: later requests fail with the dial error
// (counted as errors, not left waiting for a connection), and the run ends
// on time.
func TestAsyncTargetGoesAway(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	cfg := runCfg(srv.URL, WorkloadConfig{Arrival: "fixed", Rate: 200}, time.Second)
	go func() {
		time.Sleep(300 * time.Millisecond)
		srv.Close()
	}()
	start := time.Now()
	sum := mustRun(t, cfg, RunOptions{})
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("run took %v", el)
	}
	tot := sum.Total
	if tot.Offered != 200 || tot.Completed+tot.Errors+tot.Cancelled != 200 || tot.Dropped != 0 {
		t.Errorf("offered %d completed %d errors %d cancelled %d dropped %d: every request should be completed or failed",
			tot.Offered, tot.Completed, tot.Errors, tot.Cancelled, tot.Dropped)
	}
	if tot.Completed < 20 || tot.Errors < 100 || sum.ErrorKinds["ECONNREFUSED"] == 0 {
		t.Errorf("completed %d errors %d (%v): want the first ~60 completed and refused connections after", tot.Completed, tot.Errors, sum.ErrorKinds)
	}
}

// A run gives its pacer a P of its own for as long as it runs (one more per
// run at once), and gives it back; a GOMAXPROCS from the environment is
// left alone. Not parallel: it reads the process's GOMAXPROCS.
func TestPacerGetsItsOwnP(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	base := runtime.GOMAXPROCS(0)
	r1 := addPacerP()
	r2 := addPacerP()
	if got := runtime.GOMAXPROCS(0); got != base+2 {
		t.Errorf("two runs: GOMAXPROCS %d, want %d", got, base+2)
	}
	r1()
	if got := runtime.GOMAXPROCS(0); got != base+1 {
		t.Errorf("one run left: GOMAXPROCS %d, want %d", got, base+1)
	}
	r2()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("after the runs: GOMAXPROCS %d, want %d", got, base)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	cfg := runCfg(srv.URL, WorkloadConfig{Arrival: "fixed", Rate: 100}, 300*time.Millisecond)
	var during atomic.Int64
	mustRun(t, cfg, RunOptions{OnSnapshot: func(Snapshot) { during.Store(int64(runtime.GOMAXPROCS(0))) }})
	if got := during.Load(); got != int64(base+1) {
		t.Errorf("during a run: GOMAXPROCS %d, want %d", got, base+1)
	}
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("after a run: GOMAXPROCS %d, want %d", got, base)
	}

	t.Setenv("GOMAXPROCS", strconv.Itoa(base))
	release := addPacerP()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("GOMAXPROCS=%d in the environment: %d during a run", base, got)
	}
	release()
}
