package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/gpuorch/gpuorch/internal/rxstamp"
)

// sseClient is the HTTP/1.1 keep-alive client of the OpenAI protocols over
// plain HTTP. The worker goroutine that runs a request writes it, reads the
// answer and parses the event stream itself, from one 4 KiB buffer per
// connection: net/http costs two more goroutines and three more buffers
// per stream (≈ 80 KB per concurrent stream measured at 2,000 streams),
// and a reflective JSON decode per token. Each event is stamped with the
// time its last byte reached the socket (the kernel's receive timestamp,
// SO_TIMESTAMPNS; where there is none, the time of the read(2) that
// brought it), not with the time it was parsed: a client that reads late,
// busy with other streams, still stamps each event when it arrived, and
// parsing never shows up as latency. It does not speak TLS,
// HTTP/2 or follow redirects; https:// targets use net/http.
type sseClient struct {
	addr    string
	timeout time.Duration
	dialer  net.Dialer
	conns   keepAlive[*sseConn]
}

// sseConn is one connection and its reading state. Only the goroutine
// that holds it (taken from the idle list or dialled) touches it.
type sseConn struct {
	c    net.Conn
	rd   stampReader
	br   *bufio.Reader // over rd
	mid  []byte        // the request's per-request headers and blank line
	line []byte        // a line of the event stream split across pieces
	data []byte        // the current event's data
}

func (c *sseConn) netConn() net.Conn { return c.c }

// stampReader notes when the bytes of each read arrived, on the run's
// clock: the kernel's receive time of the last segment read (Linux,
// SO_TIMESTAMPNS), else the time the read returned.
type stampReader struct {
	r     io.Reader     // the connection
	raw   *rxstamp.Conn // the connection with kernel timestamps on (nil: none)
	clock func() time.Duration
	// wallZero is the wall-clock time (Unix ns) of the run clock's zero,
	// to put kernel timestamps on the run clock (set with clock).
	wallZero int64
	at       time.Duration
}

// setClock sets the run clock for the next request.
func (s *stampReader) setClock(clock func() time.Duration) {
	s.clock = clock
	if clock != nil {
		s.wallZero = time.Now().UnixNano() - int64(clock())
	}
}

func (s *stampReader) Read(p []byte) (int, error) {
	if s.raw == nil {
		n, err := s.r.Read(p)
		if n > 0 && s.clock != nil {
			s.at = s.clock()
		}
		return n, err
	}
	n, wall, err := s.raw.Read(p)
	if n > 0 && s.clock != nil {
		now := s.clock()
		s.at = now
		// A stamp from the future or from before the run is a clock step:
		// keep the read time.
		if k := time.Duration(wall - s.wallZero); wall != 0 && k > 0 && k <= now {
			s.at = k
		}
	}
	return n, err
}

// sseBufSize is each connection's read buffer, 1 KiB: four chunks of a
// typical stream (10 MB at 10,000 streams). Smaller reads also keep the
// kernel's timestamps finer when chunks queue up, each read being stamped
// with the arrival of its last segment. Longer lines, header or event, are
// assembled in sseConn.line.
const sseBufSize = 1024

func newSSEClient(u *url.URL, timeout time.Duration) *sseClient {
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return &sseClient{addr: host, timeout: timeout, dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}}
}

func (s *sseClient) get(ctx context.Context) (*sseConn, bool, error) {
	if c, ok, err := s.conns.takeIdle(); ok || err != nil {
		return c, ok, err
	}
	nc, err := s.dialer.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, false, err
	}
	c := &sseConn{c: nc}
	c.rd.r, c.rd.raw = nc, rxstamp.Enable(nc)
	c.br = bufio.NewReaderSize(&c.rd, sseBufSize)
	if err := s.conns.add(c); err != nil {
		return nil, false, err
	}
	return c, false, nil
}

func (s *sseClient) put(c *sseConn, keep bool) {
	c.rd.setClock(nil)
	s.conns.put(c, keep)
}

// abort fails every request in flight at once and closes every connection
// (end of run).
func (s *sseClient) abort() { s.conns.abort() }

// closeIdle closes the idle connections (after a readiness probe, say).
func (s *sseClient) closeIdle() { s.conns.closeIdle() }

// sseAnswer is what the caller learns of an answer besides its body.
type sseAnswer struct {
	status      int
	dropped     bool // X-Dropped header present
	eventStream bool // Content-Type: text/event-stream
}

// sseHandler receives an answer's body: each event's data with the time its
// last byte was read (event streams), or the whole body (anything else 2xx,
// up to 64 MiB). data is only valid during the call. An error from onEvent
// ends the reading; errSSEDone ends it as the normal end of the stream.
type sseHandler struct {
	onEvent func(data []byte, at time.Duration) error
	onBody  func(body []byte, at time.Duration) error
}

// do sends the request (head: rendered up to the per-request headers;
// body) and reads the answer. Once a connection is ready it sets res.Sent
// and adds the deadline header with the time left, when res has a
// deadline; the parts go out with one writev(2), uncopied. A reused
// connection that turns out to be closed by the server before any answer
// byte is tried once more on a new connection.
func (s *sseClient) do(ctx context.Context, head, body []byte, res *Result, clock func() time.Duration, h sseHandler) (sseAnswer, error) {
	deadline := requestDeadline(ctx, s.timeout)
	for attempt := 0; ; attempt++ {
		c, reused, err := s.get(ctx)
		if err != nil {
			return sseAnswer{}, err
		}
		c.rd.setClock(clock)
		_ = c.c.SetDeadline(deadline)
		if attempt == 0 {
			res.Sent = clock()
		}
		c.mid = appendHeadEnd(c.mid[:0], res)
		bufs := net.Buffers{head, c.mid, body}
		_, err = bufs.WriteTo(c.c)
		var ans sseAnswer
		var keep, gotAny bool
		if err == nil {
			ans, keep, gotAny, err = c.readAnswer(h)
		}
		if err != nil {
			s.put(c, false)
			if reused && !gotAny && attempt == 0 && isStaleConnErr(err) {
				continue
			}
			return ans, s.conns.failed(err)
		}
		s.put(c, keep)
		return ans, nil
	}
}

// readAnswer reads the status line, the headers and the body. keep says
// whether the connection may be reused, gotAny whether any byte came.
func (c *sseConn) readAnswer(h sseHandler) (ans sseAnswer, keep, gotAny bool, err error) {
	var b bodyReader
	for {
		line, err := c.headerLine()
		if err != nil {
			return ans, false, len(line) > 0, err
		}
		gotAny = true
		code, hd, err := readH1Head(line, c.headerLine)
		ans.status = code
		if err != nil {
			return ans, false, true, err
		}
		ans.dropped, ans.eventStream, keep = hd.dropped, hd.eventStream, hd.keep
		b = bodyReader{br: c.br, left: hd.contentLength, chunked: hd.chunked}
		if code >= 100 && code < 200 {
			continue // interim answer; the real one follows
		}
		break
	}
	if ans.status == 204 || ans.status == 304 {
		return ans, keep, true, nil
	}
	if b.chunked {
		b.left = -1
	} else if b.left < 0 {
		keep = false // the body ends when the server closes
	}
	switch {
	case ans.status/100 != 2:
		err = b.discard(1 << 20)
	case ans.eventStream && h.onEvent != nil:
		err = c.readEvents(&b, h.onEvent)
		if err == errSSEDone {
			err = nil
			if !keep {
				// The connection goes anyway: no need to wait for the
				// server to end a body it may hold open.
				return ans, false, true, nil
			}
		}
		if err == nil {
			err = b.discard(1 << 20) // the rest, up to the end of the body
		}
	default:
		var body []byte
		body, err = b.readAll(64 << 20)
		if err == nil && h.onBody != nil {
			err = h.onBody(body, c.rd.at)
		}
	}
	return ans, keep && err == nil, true, err
}

// maxHeaderLine bounds one line of an answer's head.
const maxHeaderLine = 64 << 10

// headerLine reads one line of the answer's head without its line ending;
// lines longer than the buffer are assembled in c.line.
func (c *sseConn) headerLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		c.line = append(c.line[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = c.br.ReadSlice('\n')
			c.line = append(c.line, line...)
			if len(c.line) > maxHeaderLine {
				return nil, fmt.Errorf("answer header line longer than %d bytes", maxHeaderLine)
			}
		}
		line = c.line
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

// readEvents parses the body as a server-sent-events stream (LF or CRLF
// lines; data lines joined with "\n"; comments and other fields ignored)
// and calls fn at the end of each event. An event's time is that of the
// read that brought its terminating blank line: the buffer is only refilled
// once everything in it has been parsed, so that read is the latest one.
func (c *sseConn) readEvents(b *bodyReader, fn func(data []byte, at time.Duration) error) error {
	c.line, c.data = c.line[:0], c.data[:0]
	have := false
	// line handles one complete line of the stream.
	line := func(l []byte) error {
		if n := len(l); n > 0 && l[n-1] == '\r' {
			l = l[:n-1]
		}
		if len(l) == 0 {
			if !have {
				return nil
			}
			have = false
			err := fn(c.data, c.rd.at)
			c.data = c.data[:0]
			return err
		}
		if l[0] == ':' {
			return nil
		}
		field, value := l, []byte(nil)
		if i := bytes.IndexByte(l, ':'); i >= 0 {
			field, value = l[:i], l[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		if string(field) == "data" {
			if have {
				c.data = append(c.data, '\n')
			}
			c.data = append(c.data, value...)
			have = true
		}
		return nil
	}
	for {
		p, err := b.next()
		for len(p) > 0 {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				if len(c.line)+len(p) > maxSSELine {
					return fmt.Errorf("sse: line longer than %d bytes", maxSSELine)
				}
				c.line = append(c.line, p...)
				break
			}
			l := p[:i]
			if len(c.line) > 0 {
				c.line = append(c.line, l...)
				l = c.line
			}
			if ferr := line(l); ferr != nil {
				c.line = c.line[:0]
				return ferr
			}
			c.line = c.line[:0]
			p = p[i+1:]
		}
		if err == io.EOF {
			if len(c.line) > 0 {
				if ferr := line(c.line); ferr != nil {
					return ferr
				}
				c.line = c.line[:0]
			}
			if have {
				return fn(c.data, c.rd.at)
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// bodyReader hands out an answer's body in pieces that are slices of the
// connection's buffer: chunked, Content-Length (left ≥ 0) or until the
// server closes (left < 0, not chunked).
type bodyReader struct {
	br      *bufio.Reader
	chunked bool
	left    int64 // Content-Length bytes, or bytes of the current chunk
	inChunk bool  // chunked: inside a chunk's data (or its CRLF is due)
	done    bool
}

// next returns the next piece of the body, valid until the next call; at
// the end it returns io.EOF (possibly with a last piece).
func (b *bodyReader) next() ([]byte, error) {
	if b.done {
		return nil, io.EOF
	}
	if b.chunked {
		if b.inChunk && b.left == 0 {
			l, err := readH1Line(b.br)
			if err != nil {
				return nil, err
			}
			if len(l) != 0 {
				return nil, errors.New("missing CRLF after chunk")
			}
			b.inChunk = false
		}
		if !b.inChunk {
			l, err := readH1Line(b.br)
			if err != nil {
				return nil, err
			}
			if i := bytes.IndexByte(l, ';'); i >= 0 {
				l = l[:i]
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(l)), 16, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("bad chunk size %.20q", l)
			}
			if n == 0 {
				for { // trailers up to the blank line
					t, err := readH1Line(b.br)
					if err != nil {
						return nil, err
					}
					if len(t) == 0 {
						break
					}
				}
				b.done = true
				return nil, io.EOF
			}
			b.left, b.inChunk = n, true
		}
	} else if b.left == 0 {
		b.done = true
		return nil, io.EOF
	}
	if b.br.Buffered() == 0 {
		if _, err := b.br.Peek(1); err != nil {
			if err == io.EOF && !b.chunked && b.left < 0 {
				b.done = true // the server closed: that is the end
				return nil, io.EOF
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	n := b.br.Buffered()
	if b.left >= 0 && int64(n) > b.left {
		n = int(b.left)
	}
	p, _ := b.br.Peek(n)
	_, _ = b.br.Discard(n)
	if b.left >= 0 {
		b.left -= int64(n)
	}
	return p, nil
}

// discard reads the rest of the body, failing past limit bytes.
func (b *bodyReader) discard(limit int) error {
	for n := 0; ; {
		p, err := b.next()
		n += len(p)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n > limit {
			return fmt.Errorf("answer body over %d bytes", limit)
		}
	}
}

// readAll returns the rest of the body (at most limit bytes).
func (b *bodyReader) readAll(limit int) ([]byte, error) {
	var out []byte
	for {
		p, err := b.next()
		if len(out)+len(p) > limit {
			return nil, fmt.Errorf("answer body over %d bytes", limit)
		}
		out = append(out, p...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
