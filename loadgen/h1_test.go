package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadH1Response(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		head    bool
		status  int
		keep    bool
		dropped bool
		rest    string // what must remain unread (the next answer)
		err     bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokNEXT", false, 200, true, false, "NEXT", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3;x=y\r\nabc\r\n0\r\nTrailer: 1\r\n\r\nNEXT", false, 200, true, false, "NEXT", false},
		{"connection close", "HTTP/1.1 500 Internal\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, 500, false, false, "", false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false, 200, false, false, "", false},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", false, 200, true, false, "", false},
		{"until close", "HTTP/1.1 200 OK\r\n\r\nbody to EOF", false, 200, false, false, "", false},
		{"dropped", "HTTP/1.1 503 Service Unavailable\r\nx-dropped: deadline\r\ncontent-length: 0\r\n\r\n", false, 503, true, true, "", false},
		{"interim 100", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nNEXT", false, 204, true, false, "NEXT", false},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nNEXT", true, 200, true, false, "NEXT", false},
		{"LF only", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", false, 200, true, false, "", false},
		{"garbage", "SSH-2.0-OpenSSH\r\n\r\n", false, 0, false, false, "", true},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, 200, false, false, "", true},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", false, 200, false, false, "", true},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, 200, false, false, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.in))
			resp, keep, _, err := readH1Response(br, tt.head)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			if resp.status != tt.status || keep != tt.keep || resp.dropped != tt.dropped {
				t.Fatalf("status %d keep %v dropped %v", resp.status, keep, resp.dropped)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tt.rest {
				t.Fatalf("left unread %q, want %q", rest, tt.rest)
			}
		})
	}
}

func FuzzReadH1Response(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.0 503 x\r\nX-Dropped: deadline\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(strings.NewReader(string(b)))
		resp, keep, _, err := readH1Response(br, false)
		if err == nil && (resp.status < 200 || resp.status > 999) {
			t.Fatalf("accepted status %d", resp.status)
		}
		if err != nil && keep {
			t.Fatal("connection kept after an error")
		}
	})
}

func TestRenderH1(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:8000/v2/models/m%2F1/infer?x=1")
	got := string(renderH1("POST", u, http.Header{"Content-Type": {"application/json"}}, []byte("{}")))
	for _, want := range []string{"POST /v2/models/m%2F1/infer?x=1 HTTP/1.1\r\n", "Host: 127.0.0.1:8000\r\n",
		"Content-Type: application/json\r\n", "Content-Length: 2\r\n", "User-Agent: gpuorch-loadgen\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered request lacks %q:\n%s", want, got)
		}
	}
	if strings.HasSuffix(got, "\r\n\r\n") {
		t.Error("rendered head already ends the headers")
	}
}

// A keep-alive connection the server closed while idle is retried once on a
// new connection instead of failing the request.
func TestH1RetriesStaleConnection(t *testing.T) {
	t.Parallel()
	addr, conns := serveTCP(t, func(c net.Conn) {
		// Answer exactly one request, then close (a server whose
		// keep-alive timeout is very short).
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil || l == "\r\n" {
				break
			}
		}
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(20 * time.Millisecond)
		c.Close()
	})
	u, _ := url.Parse("http://" + addr + "/")
	h := newH1Client(u, 2*time.Second)
	tmpl := &reqTemplate{method: "GET", h1: renderH1("GET", u, http.Header{}, nil)}
	for i := 0; i < 3; i++ {
		resp, err := h.do(context.Background(), tmpl, &Result{}, func() time.Duration { return 0 })
		if err != nil || resp.status != 200 {
			t.Fatalf("request %d: %v (status %d)", i, err, resp.status)
		}
		time.Sleep(50 * time.Millisecond) // let the server close the idle connection
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 requests, want 3", n)
	}
}

// With a connection cap, requests beyond it wait for a free connection and
// the wait shows as lateness, not as service time.
func TestH1ConnectionCap(t *testing.T) {
	t.Parallel()
	var cur, peak atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			return
		}
		c := cur.Add(1)
		for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		cur.Add(-1)
	}))
	defer srv.Close()
	cfg := runCfg(srv.URL, WorkloadConfig{Arrival: "fixed", Rate: 200}, 500*time.Millisecond)
	cfg.Target.Method = "POST"
	cfg.Target.MaxConnections = 2
	sum := mustRun(t, cfg, RunOptions{})
	if p := peak.Load(); p > 2 {
		t.Errorf("%d concurrent requests at the server with a cap of 2 connections", p)
	}
	tot := sum.Total
	if tot.Completed != 100 {
		t.Fatalf("completed %d of 100", tot.Completed)
	}
	// 2 connections × 50/s < 200/s: a queue builds, seen as lateness.
	if tot.Lateness.P99 < 100*time.Millisecond || tot.Service.P50 > 100*time.Millisecond {
		t.Errorf("lateness p99 %v service p50 %v: queueing for connections should show as lateness", tot.Lateness.P99, tot.Service.P50)
	}
}

// serveTCP runs handle on every connection to a new loopback listener
// (closed when the test ends) and counts the connections.
func serveTCP(t *testing.T, handle func(net.Conn)) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go handle(c)
		}
	}()
	return ln.Addr().String(), conns
}
