package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/rxstamp"
)

// rawServer answers every request on a connection with the pieces answer
// returns, written one write(2) each after its pause; it counts accepted
// connections. A nil answer closes the connection without a word; a piece
// closeConn closes it after what came before, holdConn waits until the
// client goes away.
type rawServer struct {
	ln      net.Listener
	accepts atomic.Int32
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
	writes  [][2]time.Time // when each piece's write began and ended
}

type piece struct {
	pause time.Duration
	data  string
}

var (
	closeConn = piece{data: "\x00close"}
	holdConn  = piece{data: "\x00hold"}
)

func newRawServer(t *testing.T, answer func(n int) []piece) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	var reqs atomic.Int32
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if err := readRequest(br); err != nil {
						return
					}
					ps := answer(int(reqs.Add(1)))
					if ps == nil {
						return
					}
					for _, p := range ps {
						switch p {
						case closeConn:
							return
						case holdConn:
							io.Copy(io.Discard, br)
							return
						}
						time.Sleep(p.pause)
						began := time.Now()
						if _, err := c.Write([]byte(p.data)); err != nil {
							return
						}
						s.mu.Lock()
						s.writes = append(s.writes, [2]time.Time{began, time.Now()})
						s.mu.Unlock()
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns { // the client keeps them alive
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() }

// readRequest consumes one request (headers and a Content-Length body).
func readRequest(br *bufio.Reader) error {
	n := 0
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			break
		}
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "content-length") {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	_, err := io.CopyN(io.Discard, br, int64(n))
	return err
}

const sseHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

func ev(text string) string { return `data: {"choices":[{"text":"` + text + `"}]}` + "\n\n" }

// oneSSE sends one OpenAI completion request to url through sseClient.
func oneSSE(t *testing.T, target string, timeout time.Duration) (*Result, error) {
	t.Helper()
	tgt, err := NewTarget(TargetConfig{URL: target, Protocol: "openai", Models: []string{"m"}, Timeout: Duration(timeout), InputTokens: 3, OutputTokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	h := tgt.(*httpTarget)
	if h.sse == nil {
		t.Fatal("an http:// OpenAI target does not use sseClient")
	}
	start := time.Now()
	clock := func() time.Duration { return time.Since(start) }
	res := &Result{Arrival: Arrival{Model: "m"}}
	err = h.Do(context.Background(), res, clock)
	return res, err
}

func TestSSEClientFraming(t *testing.T) {
	usage := `data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}` + "\n\n"
	done := "data: [DONE]\n\n"
	all := ev("a") + ev("b") + ev("c") + ev("d") + usage + done
	tests := []struct {
		name   string
		pieces []piece
	}{
		{"one chunk per event", []piece{{0, sseHead}, {0, chunk(ev("a"))}, {0, chunk(ev("b"))}, {0, chunk(ev("c"))},
			{0, chunk(ev("d"))}, {0, chunk(usage)}, {0, chunk(done) + "0\r\n\r\n"}}},
		{"all at once", []piece{{0, sseHead + chunk(all) + "0\r\n\r\n"}}},
		{"split everywhere", func() []piece {
			// chunks of 7 bytes, written 13 bytes at a time: events, lines,
			// chunk sizes and CRLFs cut in the middle.
			var body strings.Builder
			for i := 0; i < len(all); i += 7 {
				body.WriteString(chunk(all[i:min(i+7, len(all))]))
			}
			body.WriteString("0\r\nX-Trailer: 1\r\n\r\n")
			s := sseHead + body.String()
			var ps []piece
			for i := 0; i < len(s); i += 13 {
				ps = append(ps, piece{time.Millisecond, s[i:min(i+13, len(s))]})
			}
			return ps
		}()},
		{"CRLF lines, comments, other fields", []piece{{0, sseHead + chunk(": keep-alive\r\n\r\nevent: x\r\n"+
			strings.ReplaceAll(all, "\n", "\r\n")) + "0\r\n\r\n"}}},
		{"Content-Length", []piece{{0, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: " +
			strconv.Itoa(len(all)) + "\r\n\r\n" + all}}},
		{"until close", []piece{{0, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nConnection: close\r\n\r\n" + all}, closeConn}},
		{"until close, no [DONE]", []piece{{0, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + strings.TrimSuffix(all, done)}, closeConn}},
		{"interim answer first", []piece{{0, "HTTP/1.1 100 Continue\r\n\r\n" + sseHead + chunk(all) + "0\r\n\r\n"}}},
		{"header line longer than the buffer", []piece{{0, "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("x", 3*sseBufSize) +
			"\r\n" + strings.TrimPrefix(sseHead, "HTTP/1.1 200 OK\r\n") + chunk(all) + "0\r\n\r\n"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRawServer(t, func(int) []piece { return tt.pieces })
			res, err := oneSSE(t, srv.url(), 5*time.Second)
			if err != nil || res.Outcome != OutcomeOK {
				t.Fatalf("outcome %v, err %v", res.Outcome, err)
			}
			if len(res.Chunks) != 4 || res.InputTokens != 3 || res.OutputTokens != 4 || !res.Streamed {
				t.Fatalf("%d chunks, tokens %d/%d, streamed %v", len(res.Chunks), res.InputTokens, res.OutputTokens, res.Streamed)
			}
			for i := 1; i < len(res.Chunks); i++ {
				if res.Chunks[i].At < res.Chunks[i-1].At {
					t.Errorf("chunk %d at %v before chunk %d at %v", i, res.Chunks[i].At, i-1, res.Chunks[i-1].At)
				}
			}
			if res.E2EL() < res.Chunks[3].At || res.Sent <= 0 {
				t.Errorf("E2EL %v before the last chunk at %v (sent %v)", res.E2EL(), res.Chunks[3].At, res.Sent)
			}
		})
	}
}

// Events that arrive in one read share its time; events written apart keep
// the gap the server left between them.
func TestSSEClientStampsReads(t *testing.T) {
	const gap = 60 * time.Millisecond
	srv := newRawServer(t, func(int) []piece {
		return []piece{{0, sseHead + chunk(ev("a")+ev("b"))}, {gap, chunk(ev("c"))}, {gap, chunk(ev("d")+"data: [DONE]\n\n") + "0\r\n\r\n"}}
	})
	tgt, err := NewTarget(TargetConfig{URL: srv.url(), Protocol: "openai", Models: []string{"m"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := &Result{Arrival: Arrival{Model: "m"}}
	if err := tgt.Do(context.Background(), res, func() time.Duration { return time.Since(start) }); err != nil || len(res.Chunks) != 4 {
		t.Fatalf("%v, %d chunks", err, len(res.Chunks))
	}
	c := res.Chunks
	if c[1].At != c[0].At {
		t.Errorf("two events of one write stamped %v and %v", c[0].At, c[1].At)
	}
	if res.Done != res.Sent+c[3].At {
		t.Errorf("[DONE] came in the same write as the last token; E2EL %v, last token at %v", res.E2EL(), c[3].At)
	}
	// Each event is stamped with its arrival: within the server's write
	// (the kernel's receive time, Linux), however late the sleeps between
	// the writes ran on a busy machine.
	if runtime.GOOS != "linux" {
		return
	}
	var w [][2]time.Time
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		srv.mu.Lock()
		w = srv.writes // the server notes its last write after the client may have read it
		srv.mu.Unlock()
		if len(w) == 3 || time.Now().After(deadline) {
			break
		}
	}
	if len(w) != 3 {
		t.Fatalf("%d writes", len(w))
	}
	for i, wi := range []int{0, 0, 1, 2} {
		at := start.Add(res.Sent + c[i].At)
		if at.Before(w[wi][0].Add(-time.Millisecond)) || at.After(w[wi][1].Add(time.Millisecond)) {
			t.Errorf("chunk %d stamped %v after the start; its write ran from %v to %v", i,
				at.Sub(start), w[wi][0].Sub(start), w[wi][1].Sub(start))
		}
	}
}

func TestSSEClientKeepAliveAndStale(t *testing.T) {
	body := sseHead + chunk(ev("a")+"data: [DONE]\n\n") + "0\r\n\r\n"
	srv := newRawServer(t, func(n int) []piece {
		if n == 2 {
			return nil // the server closed the kept-alive connection: the request goes again on a new one
		}
		return []piece{{0, body}}
	})
	tgt, err := NewTarget(TargetConfig{URL: srv.url(), Protocol: "openai-chat", Models: []string{"m"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	clock := func() time.Duration { return time.Since(start) }
	for i := 0; i < 4; i++ {
		res := &Result{Arrival: Arrival{Model: "m"}}
		if err := tgt.Do(context.Background(), res, clock); err != nil || res.Outcome != OutcomeOK || len(res.Chunks) != 1 {
			t.Fatalf("request %d: %v, outcome %v, %d chunks", i, err, res.Outcome, len(res.Chunks))
		}
	}
	if n := srv.accepts.Load(); n != 2 {
		t.Errorf("%d connections for 4 sequential requests and one stale connection, want 2", n)
	}
}

func TestSSEClientStatusAndFailures(t *testing.T) {
	tests := []struct {
		name    string
		pieces  []piece
		outcome Outcome
		err     string
		timeout time.Duration
	}{
		{"500", []piece{{0, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!"}}, OutcomeError, "", 0},
		{"503 dropped", []piece{{0, "HTTP/1.1 503 Service Unavailable\r\nX-Dropped: deadline\r\nContent-Length: 0\r\n\r\n"}}, OutcomeDropped, "", 0},
		{"error event", []piece{{0, sseHead + chunk(`data: {"error":{"message":"overloaded"}}`+"\n\n") + "0\r\n\r\n"}}, OutcomeError, "overloaded", 0},
		{"no content", []piece{{0, sseHead + chunk("data: [DONE]\n\n") + "0\r\n\r\n"}}, OutcomeError, "without any content", 0},
		{"cut short", []piece{{0, sseHead + chunk(ev("a"))[:20]}, closeConn}, OutcomeError, "EOF", 0},
		{"bad status line", []piece{{0, "HTTP/1.1 2x0 OK\r\n\r\n"}}, OutcomeError, "malformed status line", 0},
		{"bad chunk size", []piece{{0, sseHead + "zz\r\n"}}, OutcomeError, "bad chunk size", 0},
		{"silent server", []piece{holdConn}, OutcomeError, "deadline exceeded", 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRawServer(t, func(int) []piece { return tt.pieces })
			if tt.timeout == 0 {
				tt.timeout = 5 * time.Second
			}
			t0 := time.Now()
			res, err := oneSSE(t, srv.url(), tt.timeout)
			if res.Outcome != tt.outcome {
				t.Errorf("outcome %v, want %v (err %v)", res.Outcome, tt.outcome, err)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("err %v, want one saying %q", err, tt.err)
			}
			if tt.timeout < time.Second {
				if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > tt.timeout+time.Second {
					t.Errorf("after %v: %v, want a timeout at %v", time.Since(t0), err, tt.timeout)
				}
			}
			if tt.name == "500" && (res.Status != 500 || res.Err == nil || res.Err.Error() != "HTTP 500") {
				t.Errorf("status %d err %v", res.Status, res.Err)
			}
		})
	}
}

func TestSSEClientAbort(t *testing.T) {
	srv := newRawServer(t, func(int) []piece { return []piece{{0, sseHead + chunk(ev("a"))}, holdConn} })
	tgt, err := NewTarget(TargetConfig{URL: srv.url(), Protocol: "openai", Models: []string{"m"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		res := &Result{Arrival: Arrival{Model: "m"}}
		errc <- tgt.Do(context.Background(), res, func() time.Duration { return time.Since(start) })
	}()
	time.Sleep(100 * time.Millisecond)
	tgt.(aborter).Abort()
	select {
	case err := <-errc:
		if !errors.Is(err, errAborted) {
			t.Errorf("aborted request: %v, want errAborted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request still running 5 s after Abort")
	}
}

// The deadline header carries the time left at the send, and the body is
// the template's; https:// targets keep net/http.
func TestSSEClientRequest(t *testing.T) {
	got := make(chan *http.Request, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(strings.NewReader(string(b)))
		got <- req
		c.Write([]byte(sseHead + chunk(ev("a")+"data: [DONE]\n\n") + "0\r\n\r\n"))
	}()
	tgt, err := NewTarget(TargetConfig{URL: "http://" + ln.Addr().String() + "/", Protocol: "openai-chat", Models: []string{"m"}, InputTokens: 3, OutputTokens: 2,
		Headers: map[string]string{"X-Extra": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	res := &Result{Arrival: Arrival{Model: "m"}, Deadline: time.Hour}
	start := time.Now()
	if err := tgt.Do(context.Background(), res, func() time.Duration { return time.Since(start) }); err != nil {
		t.Fatal(err)
	}
	req := <-got
	b, _ := io.ReadAll(req.Body)
	if req.Method != "POST" || req.URL.Path != "/v1/chat/completions" || req.Header.Get("X-Extra") != "1" ||
		req.Header.Get("Content-Type") != "application/json" || string(b) != string(openAIBody("m", true, 3, 2, true)) {
		t.Errorf("request %s %s %v body %s", req.Method, req.URL, req.Header, b)
	}
	if left, err := strconv.ParseFloat(req.Header.Get(DeadlineHeader), 64); err != nil || left < 3.5e6 || left > 3.6e6 {
		t.Errorf("%s: %q, want ≈ 3,600,000 ms", DeadlineHeader, req.Header.Get(DeadlineHeader))
	}
	tls, err := NewTarget(TargetConfig{URL: "https://example.invalid", Protocol: "openai", Models: []string{"m"}})
	if err != nil || tls.(*httpTarget).sse != nil {
		t.Errorf("https target: %v, sseClient %v", err, tls.(*httpTarget).sse)
	}
}

// FuzzSSEClientAnswer: any answer is read without a panic, and an event
// stream sent in chunks of any size yields the events ReadSSE finds in the
// same bytes.
func FuzzSSEClientAnswer(f *testing.F) {
	f.Add([]byte(ev("a")+"data: [DONE]\n\n"), uint8(7), false)
	f.Add([]byte("data: a\r\ndata: b\r\n\r\n: c\n\ndata"), uint8(1), false)
	f.Add([]byte(sseHead+"5\r\nabc"), uint8(0), true)
	f.Fuzz(func(t *testing.T, body []byte, size uint8, raw bool) {
		read := func(answer string) ([]string, error) {
			c := &sseConn{}
			c.rd.r = strings.NewReader(answer)
			c.br = bufio.NewReaderSize(&c.rd, 64) // small, so lines and chunks cross refills
			var got []string
			_, _, _, err := c.readAnswer(sseHandler{onEvent: func(d []byte, _ time.Duration) error {
				got = append(got, string(d))
				return nil
			}})
			return got, err
		}
		if raw {
			_, _ = read(string(body))
			return
		}
		n := max(int(size), 1)
		var b strings.Builder
		b.WriteString(sseHead)
		for i := 0; i < len(body); i += n {
			b.WriteString(chunk(string(body[i:min(i+n, len(body))])))
		}
		b.WriteString("0\r\n\r\n")
		got, err := read(b.String())
		var want []string
		werr := ReadSSE(strings.NewReader(string(body)), func(d []byte) error { want = append(want, string(d)); return nil })
		if werr != nil {
			return // a line over maxSSELine
		}
		if err != nil {
			t.Fatalf("%q in chunks of %d: %v", body, n, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want) {
			t.Fatalf("%q in chunks of %d: events %q, ReadSSE finds %q", body, n, got, want)
		}
	})
}

// Bytes read late are stamped with the time they arrived (the kernel's
// receive timestamp on Linux), not with the time of the read.
func TestSSEClientKernelStamps(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("kernel receive timestamps are Linux-only; elsewhere reads are stamped")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sr := stampReader{r: c, raw: rxstamp.Enable(c)}
	if sr.raw == nil {
		t.Fatal("SO_TIMESTAMPNS refused on a loopback TCP socket")
	}
	start := time.Now()
	clock := func() time.Duration { return time.Since(start) }
	sr.setClock(clock)
	time.Sleep(10 * time.Millisecond)
	before := clock()
	if _, err := s.Write([]byte("data: x\n\n")); err != nil {
		t.Fatal(err)
	}
	written := clock()
	time.Sleep(100 * time.Millisecond) // a busy client
	buf := make([]byte, 64)
	n, err := sr.Read(buf)
	read := clock()
	if err != nil || string(buf[:n]) != "data: x\n\n" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if sr.at < before-time.Millisecond || sr.at > written+20*time.Millisecond {
		t.Errorf("stamped %v; written between %v and %v, read at %v", sr.at, before, written, read)
	}
	// Without the kernel's stamps, the read time.
	plain := stampReader{r: c}
	plain.setClock(clock)
	s.Write([]byte("y"))
	time.Sleep(50 * time.Millisecond)
	if _, err := plain.Read(buf); err != nil || plain.at < written+100*time.Millisecond {
		t.Errorf("plain read stamped %v (%v), want the read time", plain.at, err)
	}
}
