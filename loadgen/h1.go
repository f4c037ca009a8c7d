package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// h1Client is a minimal HTTP/1.1 keep-alive client for the load generator's
// request/response protocols (plain HTTP, KServe v2). net/http's client
// costs two goroutines and several channel hand-offs per connection and
// request; here the worker goroutine writes the pre-rendered request with
// one syscall and reads the answer itself, which is what lets one process
// offer tens of thousands of requests per second on two cores. It does not
// follow redirects, speak TLS or HTTP/2; those targets use net/http.
type h1Client struct {
	addr    string
	timeout time.Duration
	dialer  net.Dialer

	slots chan struct{} // one per connection in use or being dialled
	conns keepAlive[*h1Conn]
}

type h1Conn struct {
	c   net.Conn
	br  *bufio.Reader
	buf []byte // request scratch
}

func (c *h1Conn) netConn() net.Conn { return c.c }

var (
	errConnReset  error = syscall.ECONNRESET
	errBrokenPipe error = syscall.EPIPE
)

func newH1Client(u *url.URL, timeout time.Duration) *h1Client {
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return &h1Client{addr: host, timeout: timeout, dialer: net.Dialer{Timeout: 5 * time.Second},
		slots: make(chan struct{}, DefaultMaxConnections)}
}

// setMaxConns sets the connection cap; call before the first request.
func (h *h1Client) setMaxConns(n int) {
	if n > 0 {
		h.slots = make(chan struct{}, n)
	}
}

// renderH1 renders a request for method and target URL u up to, not
// including, the blank line that ends the headers; per-request headers are
// appended after it.
func renderH1(method string, u *url.URL, hdr http.Header, body []byte) []byte {
	var b bytes.Buffer
	uri := u.RequestURI()
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, uri, u.Host)
	for k, vs := range hdr {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if hdr.Get("User-Agent") == "" {
		b.WriteString("User-Agent: gpuorch-loadgen\r\n")
	}
	if len(body) > 0 || (method != http.MethodGet && method != http.MethodHead) {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	return b.Bytes()
}

var errAborted = errors.New("request aborted at end of run")

// appendH1Request appends the whole request for res to dst: the rendered
// head, the deadline header with the time left when res has a deadline
// (0 when the send is already past it), the blank line and the body.
func appendH1Request(dst []byte, t *reqTemplate, res *Result) []byte {
	return append(appendHeadEnd(append(dst, t.h1...), res), t.body...)
}

// appendHeadEnd appends what ends a request's headers: the deadline header
// with the time left at res.Sent when res has a deadline, then the blank
// line.
func appendHeadEnd(b []byte, res *Result) []byte {
	if res.Deadline > 0 {
		b = append(b, DeadlineHeader...)
		b = append(b, ':', ' ')
		b = strconv.AppendFloat(b, deadlineLeftMs(res, res.Sent), 'f', 3, 64)
		b = append(b, '\r', '\n')
	}
	return append(b, '\r', '\n')
}

// deadlineLeftMs is what the deadline header carries for res sent at now:
// the milliseconds left until its deadline, 0 when the send is already past
// it (the server then sheds it at once).
func deadlineLeftMs(res *Result, now time.Duration) float64 {
	return max(float64(res.Deadline-now)/1e6, 0)
}

// requestDeadline is when a request sent now must have its answer: after
// the client's timeout, or at ctx's deadline if that is sooner.
func requestDeadline(ctx context.Context, timeout time.Duration) time.Time {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		return d
	}
	return deadline
}

// get returns a connection, waiting while all of them are busy: beyond the
// cap requests queue in the client (that wait shows as send lateness)
// rather than opening ever more connections into an overloaded server.
func (h *h1Client) get(ctx context.Context, deadline time.Time) (*h1Conn, bool, error) {
	select {
	case h.slots <- struct{}{}:
	default:
		t := time.NewTimer(time.Until(deadline))
		select {
		case h.slots <- struct{}{}:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return nil, false, ctx.Err()
		case <-t.C:
			return nil, false, context.DeadlineExceeded
		}
	}
	c, reused, err := h.getSlot(ctx)
	if err != nil {
		<-h.slots
	}
	return c, reused, err
}

func (h *h1Client) getSlot(ctx context.Context) (*h1Conn, bool, error) {
	if c, ok, err := h.conns.takeIdle(); ok || err != nil {
		return c, ok, err
	}
	nc, err := h.dialer.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, false, err
	}
	c := &h1Conn{c: nc, br: bufio.NewReaderSize(nc, 4096), buf: make([]byte, 0, 1024)}
	if err := h.conns.add(c); err != nil {
		return nil, false, err
	}
	return c, false, nil
}

func (h *h1Client) put(c *h1Conn, keep bool) {
	h.conns.put(c, keep)
	<-h.slots
}

// abort makes every request in flight fail at once and closes all
// connections (end of run).
func (h *h1Client) abort() { h.conns.abort() }

// h1Response is what the load generator needs from an answer.
type h1Response struct {
	status  int
	dropped bool // X-Dropped header present
}

// do sends one request and reads the whole answer. When a connection is
// ready and the request is about to be written, it sets res.Sent and, when
// res has a deadline, adds the deadline header with the time left. A reused connection that turns out to
// be closed by the server before any answer byte is retried once on a new
// connection.
func (h *h1Client) do(ctx context.Context, req *reqTemplate, res *Result, clock func() time.Duration) (h1Response, error) {
	deadline := requestDeadline(ctx, h.timeout)
	for attempt := 0; ; attempt++ {
		c, reused, err := h.get(ctx, deadline)
		if err != nil {
			return h1Response{}, err
		}
		if attempt == 0 {
			res.Sent = clock()
		}
		_ = c.c.SetDeadline(deadline)
		b := appendH1Request(c.buf[:0], req, res)
		c.buf = b[:0]
		_, err = c.c.Write(b)
		var resp h1Response
		var keep, gotAny bool
		if err == nil {
			resp, keep, gotAny, err = readH1Response(c.br, req.method == http.MethodHead)
		}
		if err != nil {
			h.put(c, false)
			if reused && !gotAny && attempt == 0 && isStaleConnErr(err) {
				continue
			}
			return resp, h.conns.failed(err)
		}
		h.put(c, keep)
		return resp, nil
	}
}

func isStaleConnErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, errConnReset) || errors.Is(err, errBrokenPipe)
}

// readH1Response parses a status line, headers and body (Content-Length,
// chunked, or until close), discarding the body. keep says whether the
// connection may be reused; gotAny whether any byte of the answer arrived.
func readH1Response(br *bufio.Reader, head bool) (resp h1Response, keep, gotAny bool, err error) {
	for {
		line, err := readH1Line(br)
		if err != nil {
			return resp, false, len(line) > 0, err
		}
		gotAny = true
		code, hd, err := readH1Head(line, func() ([]byte, error) { return readH1Line(br) })
		resp.status = code
		if err != nil {
			return resp, false, true, err
		}
		resp.dropped, keep = hd.dropped, hd.keep
		if code >= 100 && code < 200 {
			continue // interim answer; the real one follows
		}
		switch {
		case head || code == 204 || code == 304:
		case hd.chunked:
			err = discardChunked(br)
		case hd.contentLength >= 0:
			_, err = br.Discard(int(hd.contentLength))
		default:
			_, err = io.Copy(io.Discard, br)
			keep = false
		}
		return resp, keep && err == nil, true, err
	}
}

func readH1Line(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return line, errors.New("header line too long")
	}
	if err != nil {
		return line, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := readH1Line(br)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("bad chunk size %.20q", line)
		}
		if n == 0 {
			for { // trailers up to the blank line
				l, err := readH1Line(br)
				if err != nil {
					return err
				}
				if len(l) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n)); err != nil {
			return err
		}
		if l, err := readH1Line(br); err != nil || len(l) != 0 {
			if err == nil {
				err = errors.New("missing CRLF after chunk")
			}
			return err
		}
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// h1Head is what the clients take from an answer's header lines.
type h1Head struct {
	contentLength int64 // -1: none given
	chunked       bool  // Transfer-Encoding: chunked
	keep          bool  // the connection may carry another request
	dropped       bool  // DroppedHeader present
	eventStream   bool  // Content-Type: text/event-stream
}

// readH1Head parses the status line "HTTP/1.x NNN reason" and the header
// lines that follow it (next returns each, "" at the blank line that ends
// them): the status code and what the headers say.
func readH1Head(status []byte, next func() ([]byte, error)) (code int, hd h1Head, err error) {
	if len(status) < 12 || !bytes.HasPrefix(status, []byte("HTTP/1.")) || status[8] != ' ' {
		return 0, hd, fmt.Errorf("malformed status line %.40q", status)
	}
	for _, d := range status[9:12] {
		if d < '0' || d > '9' {
			return 0, hd, fmt.Errorf("malformed status line %.40q", status)
		}
		code = code*10 + int(d-'0')
	}
	if code < 100 || (len(status) > 12 && status[12] != ' ') {
		return 0, hd, fmt.Errorf("malformed status line %.40q", status)
	}
	hd = h1Head{contentLength: -1, keep: status[7] != '0'} // HTTP/1.0 closes by default
	for {
		hl, err := next()
		if err != nil {
			return code, hd, err
		}
		if len(hl) == 0 {
			return code, hd, nil
		}
		i := bytes.IndexByte(hl, ':')
		if i <= 0 {
			continue
		}
		k, v := hl[:i], bytes.TrimSpace(hl[i+1:])
		switch {
		case asciiEqualFold(k, "content-length"):
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 {
				return code, hd, fmt.Errorf("bad Content-Length %q", v)
			}
			hd.contentLength = n
		case asciiEqualFold(k, "transfer-encoding"):
			hd.chunked = bytes.Contains(bytes.ToLower(v), []byte("chunked"))
		case asciiEqualFold(k, "connection"):
			lv := bytes.ToLower(v)
			if bytes.Contains(lv, []byte("close")) {
				hd.keep = false
			} else if bytes.Contains(lv, []byte("keep-alive")) {
				hd.keep = true
			}
		case asciiEqualFold(k, "content-type"):
			hd.eventStream = len(v) >= 17 && asciiEqualFold(v[:17], "text/event-stream")
		case asciiEqualFold(k, DroppedHeader):
			hd.dropped = true
		}
	}
}
