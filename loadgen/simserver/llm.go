package simserver

import (
	"context"
	"errors"
	"time"
)

var errShuttingDown = errors.New("server shutting down")

type llmWaiter struct {
	ch      chan struct{}
	granted bool // set under model.mu when a slot is handed over
	gone    bool // set under model.mu when the waiter gave up
}

// acquire takes one of the model's Concurrency slots, queueing FIFO when
// all are busy.
func (s *Server) acquire(ctx context.Context, m *model) error {
	m.mu.Lock()
	if int(m.active.Load()) < m.sp.llm.Concurrency {
		m.active.Add(1)
		m.mu.Unlock()
		return nil
	}
	w := &llmWaiter{ch: make(chan struct{})}
	m.waiters = append(m.waiters, w)
	m.st.queued.Add(1)
	m.mu.Unlock()
	var err error
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.closing:
		err = errShuttingDown
	}
	m.mu.Lock()
	granted := w.granted
	if !granted {
		w.gone = true
		m.st.queued.Add(-1)
	}
	m.mu.Unlock()
	if granted {
		s.release(m)
	}
	return err
}

// release hands the slot to the oldest waiter still waiting, or frees it.
func (s *Server) release(m *model) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.whead < len(m.waiters) {
		w := m.waiters[m.whead]
		m.waiters[m.whead] = nil
		m.whead++
		if w.gone {
			continue
		}
		w.granted = true
		m.st.queued.Add(-1)
		close(w.ch)
		m.compactWaiters()
		return
	}
	m.compactWaiters()
	m.active.Add(-1)
}

func (m *model) compactWaiters() {
	if m.whead == len(m.waiters) {
		m.waiters = m.waiters[:0]
		m.whead = 0
	} else if m.whead > 1024 && m.whead*2 > len(m.waiters) {
		n := copy(m.waiters, m.waiters[m.whead:])
		clear(m.waiters[n:])
		m.waiters = m.waiters[:n]
		m.whead = 0
	}
}

// generation paces one LLM request's tokens on an absolute timeline, so
// timer lateness does not accumulate: token 1 at admitted + TTFTBase +
// PrefillPerToken × prompt, token k at token k−1 + one decode step.
type generation struct {
	s     *Server
	m     *model
	timer *time.Timer
	next  time.Time
	k     int // tokens emitted
}

func (s *Server) startGeneration(m *model, admitted time.Time, promptTokens int) *generation {
	l := m.sp.llm
	g := &generation{s: s, m: m}
	g.next = admitted.Add(l.TTFTBase.D() + time.Duration(promptTokens)*l.PrefillPerToken.D())
	return g
}

// wait blocks until the next token is due, then advances the timeline.
func (g *generation) wait(ctx context.Context) error {
	if g.k > 0 {
		l := g.m.sp.llm
		step := l.TPOT.D()
		if l.BatchSlowdown > 0 {
			if others := g.m.active.Load() - 1; others > 0 {
				step = time.Duration(float64(step) * (1 + l.BatchSlowdown*float64(others)))
			}
		}
		g.next = g.next.Add(step)
	}
	g.k++
	d := time.Until(g.next)
	if d <= 0 {
		return ctx.Err()
	}
	if g.timer == nil {
		g.timer = time.NewTimer(d)
	} else {
		g.timer.Reset(d)
	}
	select {
	case <-g.timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-g.s.closing:
		return errShuttingDown
	}
}

func (g *generation) stop() {
	if g.timer != nil {
		g.timer.Stop()
	}
}
