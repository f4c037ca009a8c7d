package loadgen

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// h1Async sends plain-HTTP and KServe requests straight from the pacer: the
// pacer writes the request on a free keep-alive connection (one syscall) and
// moves on, and each connection has its own goroutine that reads the answers
// and reports them. The send time is the write itself, so no goroutine
// hand-off or scheduling delay lies between the intended time and the
// request going out. Only the pacer calls trySend; connections, readers,
// the timeout sweeper and the dialler run beside it.
type h1Async struct {
	cli   *h1Client
	clock func() time.Duration
	done  func(res *Result, err error)
	max   int

	conns    []*aconn // pacer-owned; dead ones are dropped as the cursor passes
	sweeping bool     // the timeout sweeper runs

	freshMu  sync.Mutex
	fresh    []*aconn // dialled connections waiting to be adopted
	nFresh   atomic.Int32
	wantDial chan struct{}         // wakes the dialler (capacity 1)
	open     atomic.Int32          // connections open or being dialled (for the cap)
	dialErr  atomic.Pointer[error] // the last dial's error, until one succeeds

	retryMu    sync.Mutex
	retries    []*Result // sends to retry on another connection (stale keep-alive)
	nRetry     atomic.Int32
	retryReady chan struct{} // wakes a sleeping pacer (capacity 1)

	mu      sync.Mutex
	all     map[*aconn]struct{} // for the sweeper and abort
	aborted atomic.Bool
	stop    chan struct{}
	readers sync.WaitGroup
	helpers sync.WaitGroup
}

// Connection states. Only the pacer moves idle→busy; only the reader moves
// busy→idle; either side may find the connection dead.
const (
	connIdle int32 = iota
	connBusy
	connDead
)

type aconn struct {
	c     net.Conn
	br    *bufio.Reader
	buf   []byte
	state atomic.Int32
	// Set by the pacer before it marks the connection busy; read by the
	// reader after it sees busy.
	res      *Result
	tmpl     *reqTemplate
	sentAt   atomic.Int64 // run clock at send, for the timeout sweeper
	reused   bool         // has answered a request before (reader-owned)
	carried  bool         // has been given a request (pacer-owned)
	timedOut atomic.Bool
}

func newH1Async(cli *h1Client, maxConns int, clock func() time.Duration, done func(*Result, error)) *h1Async {
	return &h1Async{cli: cli, clock: clock, done: done, max: maxConns,
		wantDial: make(chan struct{}, 1), retryReady: make(chan struct{}, 1),
		all: map[*aconn]struct{}{}, stop: make(chan struct{})}
}

// start opens n connections (in parallel, before the run) and starts the
// dialler and the timeout sweeper.
func (h *h1Async) start(ctx context.Context, n int) {
	n = max(1, min(n, h.max))
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.dialOne(ctx)
		}()
	}
	wg.Wait()
	h.adopt()
	h.helpers.Add(1)
	go h.dialler(ctx)
}

// dialOne opens a connection, starts its reader and hands it to the pacer
// through fresh.
func (h *h1Async) dialOne(ctx context.Context) bool {
	if int(h.open.Add(1)) > h.max {
		h.open.Add(-1)
		return false
	}
	nc, err := h.cli.dialer.DialContext(ctx, "tcp", h.cli.addr)
	if err != nil {
		h.dialErr.Store(&err)
		h.open.Add(-1)
		return false
	}
	h.dialErr.Store(nil)
	c := &aconn{c: nc, br: bufio.NewReaderSize(nc, 4096), buf: make([]byte, 0, 1024)}
	h.mu.Lock()
	if h.aborted.Load() {
		h.mu.Unlock()
		nc.Close()
		h.open.Add(-1)
		return false
	}
	h.all[c] = struct{}{}
	h.readers.Add(1)
	h.mu.Unlock()
	go h.read(c)
	h.freshMu.Lock()
	h.fresh = append(h.fresh, c)
	h.nFresh.Add(1)
	h.freshMu.Unlock()
	return true
}

// dialler opens more connections when the pacer finds none free: a few at
// a time, so that a burst does not queue behind one dial after another.
func (h *h1Async) dialler(ctx context.Context) {
	defer h.helpers.Done()
	for {
		select {
		case <-h.stop:
			return
		case <-h.wantDial:
		}
		n := max(8, int(h.open.Load())/8)
		var wg sync.WaitGroup
		var ok atomic.Int32
		for i := 0; i < n && !h.aborted.Load(); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if h.dialOne(ctx) {
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		if ok.Load() == 0 && h.dialErr.Load() != nil {
			// The target refuses connections: requests fail with the dial
			// error meanwhile (trySend); retry the dial now and then, not
			// in a tight loop.
			select {
			case <-h.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// sweeper times out requests that have waited longer than the client's
// timeout: their read deadline moves to the past and the reader reports a
// timeout. Checking a few times a second costs less than a timer per
// request; the resolution is a hundredth of the timeout (1–100 ms).
func (h *h1Async) sweeper() {
	defer h.helpers.Done()
	tick := min(max(h.cli.timeout/100, time.Millisecond), 100*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	past := time.Unix(1, 0)
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		limit := int64(h.clock() - h.cli.timeout)
		h.mu.Lock()
		for c := range h.all {
			if c.state.Load() == connBusy && c.sentAt.Load() <= limit && !c.timedOut.Load() {
				c.timedOut.Store(true)
				_ = c.c.SetReadDeadline(past)
			}
		}
		h.mu.Unlock()
	}
}

// adopt takes the freshly dialled connections into the pacer's list.
func (h *h1Async) adopt() bool {
	if h.nFresh.Load() == 0 {
		return false
	}
	h.freshMu.Lock()
	h.conns = append(h.conns, h.fresh...)
	clear(h.fresh)
	h.fresh = h.fresh[:0]
	h.nFresh.Store(0)
	h.freshMu.Unlock()
	return true
}

// takeRetries moves requests to resend into out (pacer only).
func (h *h1Async) takeRetries(out []*Result) []*Result {
	if h.nRetry.Load() == 0 {
		return out
	}
	h.retryMu.Lock()
	out = append(out, h.retries...)
	h.retries = h.retries[:0]
	h.nRetry.Store(0)
	h.retryMu.Unlock()
	return out
}

// trySend writes the request for res on a free connection, setting
// res.Sent to the moment of the write, and reports whether one was free.
// When none is, it asks the dialler for more (up to the cap) and the
// caller keeps the request until a connection frees up, unless no
// connection is open or being dialled and the last dial failed: then it
// returns that error, and the request fails with it (as a client that
// dials per request would).
func (h *h1Async) trySend(res *Result, t *reqTemplate) (bool, error) {
	if h.aborted.Load() {
		return false, nil
	}
	if !h.sweeping {
		// Started with the first send: the run's clock starts after the
		// connections are warm.
		h.sweeping = true
		h.helpers.Add(1)
		go h.sweeper()
	}
	now := h.clock()
	c := h.claim(res, t, now)
	if c == nil && h.adopt() {
		c = h.claim(res, t, now)
	}
	if c == nil && res.retried && int(h.open.Load()) >= h.max {
		// A repeat goes on a new connection: close an idle one to make room.
		h.closeOneIdle()
	}
	if c == nil {
		if e := h.dialErr.Load(); e != nil && h.open.Load() == 0 {
			return false, *e
		}
		if int(h.open.Load()) < h.max {
			select {
			case h.wantDial <- struct{}{}:
			default:
			}
		}
		return false, nil
	}
	if !res.retried {
		res.Sent = now // a repeat keeps its first send time
	}
	b := appendH1Request(c.buf[:0], t, res)
	c.buf = b[:0]
	// A failed write also breaks the connection's read side; the reader
	// reports the failure, so it is not handled twice here.
	_, _ = c.c.Write(b)
	return true, nil
}

// claim finds a free connection and makes it carry res, or returns nil
// when all are busy. res and the template are set before the state moves
// to busy, which is what the reader waits to see before reading them.
func (h *h1Async) claim(res *Result, t *reqTemplate, now time.Duration) *aconn {
	// Lowest index first: the same few connections carry the load while the
	// rest stay idle in reserve. Spreading requests over every connection
	// (round robin) makes the server touch hundreds of goroutines and
	// buffers instead of a handful, which costs it CPU that a server sharing
	// the machine does not have.
	for i := 0; i < len(h.conns); {
		c := h.conns[i]
		st := c.state.Load()
		if st == connIdle && res.retried && c.carried {
			st = connBusy // a repeat wants a connection that has carried nothing
		}
		switch st {
		case connIdle:
			c.res, c.tmpl = res, t
			c.timedOut.Store(false)
			c.sentAt.Store(int64(now)) // before busy: the sweeper reads it then
			if c.state.CompareAndSwap(connIdle, connBusy) {
				c.carried = true
				return c
			}
			c.res, c.tmpl = nil, nil // it died just now
		case connBusy:
			i++
			continue
		}
		// Dead: drop it from the list (swap with the last).
		last := len(h.conns) - 1
		h.conns[i] = h.conns[last]
		h.conns[last] = nil
		h.conns = h.conns[:last]
	}
	return nil
}

// closeOneIdle closes an idle connection that has carried requests, so a
// repeat can have a new one within the connection cap (pacer only).
func (h *h1Async) closeOneIdle() {
	for _, c := range h.conns {
		if c.carried && c.state.CompareAndSwap(connIdle, connDead) {
			c.c.Close() // its reader sees the error and cleans up
			return
		}
	}
}

// read is a connection's reader: it waits for each answer, parses it and
// reports the request; it exits when the connection fails or closes.
func (h *h1Async) read(c *aconn) {
	defer h.readers.Done()
	defer func() {
		h.mu.Lock()
		delete(h.all, c)
		h.mu.Unlock()
		c.c.Close()
		h.open.Add(-1)
	}()
	for {
		_, err := c.br.Peek(1) // parked in the netpoller until bytes or an error
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !h.aborted.Load() &&
			(c.state.Load() == connIdle || h.clock()-time.Duration(c.sentAt.Load()) < h.cli.timeout) {
			// The sweeper caught the connection just as its request
			// finished and the next one started: nothing is overdue.
			_ = c.c.SetReadDeadline(time.Time{})
			c.timedOut.Store(false)
			continue
		}
		if err != nil {
			if c.state.CompareAndSwap(connIdle, connDead) {
				return // an idle connection closed (by the server, or at the end)
			}
			c.state.Store(connDead)
			h.fail(c, err, false)
			return
		}
		if c.state.Load() != connBusy {
			c.state.Store(connDead) // bytes nobody asked for: the stream is broken
			return
		}
		res, t := c.res, c.tmpl
		resp, keep, gotAny, err := readH1Response(c.br, t.method == "HEAD")
		if err != nil {
			c.state.Store(connDead)
			h.fail(c, err, gotAny)
			return
		}
		res.Done = h.clock()
		h1Outcome(res, resp, nil)
		c.res, c.tmpl, c.reused = nil, nil, true
		h.done(res, nil)
		if !keep || h.aborted.Load() {
			c.state.Store(connDead)
			return
		}
		c.state.Store(connIdle)
	}
}

// fail reports the request in flight on a connection that broke. A reused
// connection that the server closed before any answer byte was a stale
// keep-alive: the request is sent again once, on another connection.
func (h *h1Async) fail(c *aconn, err error, gotAny bool) {
	res := c.res
	c.res, c.tmpl = nil, nil
	if res == nil {
		return
	}
	if c.reused && !gotAny && !res.retried && !h.aborted.Load() && isStaleConnErr(err) {
		res.retried = true
		h.retryMu.Lock()
		h.retries = append(h.retries, res)
		h.nRetry.Add(1)
		h.retryMu.Unlock()
		select {
		case h.retryReady <- struct{}{}:
		default:
		}
		return
	}
	switch {
	case h.aborted.Load():
		err = errAborted
	case c.timedOut.Load() && errors.Is(err, os.ErrDeadlineExceeded):
		err = context.DeadlineExceeded
	}
	res.Done = h.clock()
	h1Outcome(res, h1Response{}, err)
	h.done(res, err)
}

// abort fails every request in flight at once and closes every connection;
// wait then returns when all readers have reported.
func (h *h1Async) abort() {
	h.mu.Lock()
	if !h.aborted.Swap(true) {
		close(h.stop)
	}
	past := time.Unix(1, 0)
	for c := range h.all {
		_ = c.c.SetReadDeadline(past)
	}
	h.mu.Unlock()
}

func (h *h1Async) wait() {
	h.readers.Wait()
	h.helpers.Wait()
}
