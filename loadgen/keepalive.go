package loadgen

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// keepAliveConn is a connection keepAlive can hold.
type keepAliveConn interface {
	comparable
	netConn() net.Conn
}

// keepAlive is the connection bookkeeping the request/response clients
// (h1Client, sseClient) share: idle keep-alive connections, reused last in
// first out so that a small hot set carries the load; every open
// connection, so that abort can fail the requests in flight at once; and
// whether the run has ended. The clients dial; keepAlive only keeps.
type keepAlive[C keepAliveConn] struct {
	mu      sync.Mutex
	idle    []C
	all     map[C]struct{}
	aborted bool
}

// takeIdle returns an idle connection when there is one (ok), or
// errAborted once the run has ended.
func (k *keepAlive[C]) takeIdle() (c C, ok bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.aborted {
		return c, false, errAborted
	}
	if n := len(k.idle); n > 0 {
		c = k.idle[n-1]
		k.idle = k.idle[:n-1]
		return c, true, nil
	}
	return c, false, nil
}

// add registers a connection just dialled; once the run has ended it
// closes it instead and returns errAborted.
func (k *keepAlive[C]) add(c C) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.aborted {
		c.netConn().Close()
		return errAborted
	}
	if k.all == nil {
		k.all = map[C]struct{}{}
	}
	k.all[c] = struct{}{}
	return nil
}

// put gives back a connection after a request: kept for the next one, or
// closed when keep is false or the run has ended.
func (k *keepAlive[C]) put(c C, keep bool) {
	k.mu.Lock()
	if keep && !k.aborted {
		k.idle = append(k.idle, c)
		k.mu.Unlock()
		return
	}
	delete(k.all, c)
	k.mu.Unlock()
	c.netConn().Close()
}

// abort fails every request in flight at once (their connections' deadline
// passes) and closes the idle connections (end of run).
func (k *keepAlive[C]) abort() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.aborted = true
	past := time.Unix(1, 0)
	for c := range k.all {
		_ = c.netConn().SetDeadline(past)
	}
	for _, c := range k.idle {
		c.netConn().Close()
		delete(k.all, c)
	}
	k.idle = nil
}

// closeIdle closes the idle connections (after a readiness probe, say).
func (k *keepAlive[C]) closeIdle() {
	k.mu.Lock()
	idle := k.idle
	k.idle = nil
	for _, c := range idle {
		delete(k.all, c)
	}
	k.mu.Unlock()
	for _, c := range idle {
		c.netConn().Close()
	}
}

// failed is what a request whose write or read failed with err returns:
// a deadline passed because the run ended is errAborted, another one the
// request's timeout (context.DeadlineExceeded).
func (k *keepAlive[C]) failed(err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	k.mu.Lock()
	ab := k.aborted
	k.mu.Unlock()
	if ab {
		return errAborted
	}
	return context.DeadlineExceeded
}
