package loadgen

import (
	"container/heap"
	"context"
	"time"
)

// The event heap is hand-written rather than container/heap so that pushes
// and pops do not box events into interfaces (an allocation per arrival).

// Scheduler merges a workload's sources and timers into one time-ordered
// stream of events with a single min-heap: each open-loop source and each
// eligible closed-loop slot holds exactly one entry (its next arrival), so
// thousands of sources cost O(log n) per arrival and one timer for the
// sender. It has no clock of its own: the caller decides when "now" is,
// which is what lets the same code run for real (Run) and on a virtual
// clock (Plan). Not safe for concurrent use.
type Scheduler struct {
	w        *Workload
	h        evHeap
	seq      uint64 // tie-breaker: equal times come out in insertion order
	arrivals int64
	pending  int // arrival-producing entries in the heap
	inflight int // closed-loop requests issued and not completed
	ended    bool
	openSeq  int64 // open-loop arrivals so far, other shards' included (Workload.Shard)
}

type evKind uint8

const (
	evOpen evKind = iota
	evClosed
	evTimer
)

type event struct {
	at   time.Duration
	seq  uint64
	kind evKind
	idx  int32
}

type evHeap []event

func (e event) before(o event) bool {
	if e.at != o.at {
		return e.at < o.at
	}
	return e.seq < o.seq
}

func (h *evHeap) push(e event) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].before(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *evHeap) pop() event {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s[r].before(s[l]) {
			m = r
		}
		if !s[m].before(s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// NewScheduler primes the heap with every source's first arrival and every
// timer's first firing.
func NewScheduler(w *Workload) *Scheduler {
	s := &Scheduler{w: w}
	s.h = make(evHeap, 0, len(w.Open)+len(w.Timers)+16)
	for i, o := range w.Open {
		s.armOpen(int32(i), o.Start)
	}
	for i, c := range w.Closed {
		for k := 0; k < c.Concurrency; k++ {
			s.armClosed(int32(i), c.Start)
		}
	}
	for i, t := range w.Timers {
		s.push(t.At, evTimer, int32(i))
	}
	return s
}

// armClosed queues one request of closed loop idx unless its Max is used up.
func (s *Scheduler) armClosed(idx int32, at time.Duration) {
	c := s.w.Closed[idx]
	if c.Max > 0 && c.issued+c.queued >= c.Max {
		return
	}
	if c.Gate != nil {
		at = c.Gate(at)
	}
	c.queued++
	s.push(at, evClosed, idx)
}

func (s *Scheduler) push(at time.Duration, k evKind, idx int32) {
	if k != evTimer {
		s.pending++
	}
	s.seq++
	s.h.push(event{at: at, seq: s.seq, kind: k, idx: idx})
}

func (s *Scheduler) armOpen(i int32, prev time.Duration) {
	o := s.w.Open[i]
	if o.foreign || (o.Max > 0 && o.sent >= o.Max) {
		return
	}
	next, ok := o.Proc.Next(prev)
	if !ok || (o.Stop > 0 && next >= o.Stop) {
		return
	}
	s.push(next, evOpen, i)
}

// Next returns the time of the earliest pending event (an arrival or a
// timer), or ok=false when the run has ended or nothing is pending.
func (s *Scheduler) Next() (at time.Duration, ok bool) {
	s.skipForeign()
	if s.Ended() || len(s.h) == 0 {
		return 0, false
	}
	return s.h[0].at, true
}

// Pop processes the earliest event. If it is an arrival, it returns it with
// ok=true; a timer fires (its callback runs with its intended time) and Pop
// returns ok=false. Call it only when Next said an event is pending and its
// time has come.
func (s *Scheduler) Pop() (a Arrival, ok bool) {
	if s.ended || len(s.h) == 0 {
		return Arrival{}, false
	}
	e := s.h.pop()
	switch e.kind {
	case evTimer:
		t := s.w.Timers[e.idx]
		act := t.Fire(e.at)
		switch {
		case act == TimerEndRun:
			s.ended = true
		case act == TimerContinue && t.Period > 0:
			s.push(e.at+t.Period, evTimer, e.idx)
		}
		s.checkExhausted()
		return Arrival{}, false
	case evOpen:
		if !s.mine() {
			// Another shard's: Next skips these; a closed-loop completion
			// folded in between may have put it back on top.
			s.h.push(e)
			s.skipForeign()
			return Arrival{}, false
		}
		s.openSeq++
		s.pending--
		o := s.w.Open[e.idx]
		o.sent++
		a = Arrival{At: e.at, Model: o.Model, Class: o.Class, SLOFactor: o.SLOFactor}
		s.armOpen(e.idx, e.at)
	case evClosed:
		s.pending--
		c := s.w.Closed[e.idx]
		c.queued--
		c.issued++
		c.outstanding++
		s.inflight++
		m := ""
		if len(c.Models) > 0 {
			m = c.Models[c.next%len(c.Models)]
			c.next++
		}
		a = Arrival{At: e.at, Model: m, Class: c.Class, SLOFactor: c.SLOFactor, closed: e.idx + 1}
	}
	a.Seq = s.arrivals
	s.arrivals++
	if s.w.MaxRequests > 0 && s.arrivals >= s.w.MaxRequests {
		s.ended = true
	}
	return a, true
}

// mine reports whether the next open-loop arrival is this shard's.
func (s *Scheduler) mine() bool {
	return !s.w.filterOpen || s.openSeq%int64(s.w.shardK) == int64(s.w.shardI)
}

// skipForeign takes the open-loop arrivals of other shards off the top of
// the heap (arrival split, Workload.Shard), each exactly as Pop would have
// taken it — its source draws its next arrival, and it counts towards Seq
// and MaxRequests — so the shard's sender never wakes up for them. It stops
// at a timer: a timer that changes rates must fire before the arrivals
// after it are drawn, as it does unsharded.
func (s *Scheduler) skipForeign() {
	for s.w.filterOpen && !s.ended && len(s.h) > 0 && s.h[0].kind == evOpen && !s.mine() {
		e := s.h.pop()
		s.openSeq++
		s.pending--
		s.w.Open[e.idx].sent++
		s.armOpen(e.idx, e.at)
		s.arrivals++
		if s.w.MaxRequests > 0 && s.arrivals >= s.w.MaxRequests {
			s.ended = true
		}
	}
}

// Complete tells the scheduler that arrival a finished at time at (success
// or failure). For a closed-loop request this schedules the client's next
// request at at+Think; for open-loop requests it does nothing.
func (s *Scheduler) Complete(a Arrival, at time.Duration) {
	if a.closed == 0 {
		return
	}
	idx := a.closed - 1
	c := s.w.Closed[idx]
	c.outstanding--
	s.inflight--
	if !s.ended {
		s.armClosed(idx, at+c.Think)
	}
	s.checkExhausted()
}

func (s *Scheduler) checkExhausted() {
	if s.pending == 0 && s.inflight == 0 {
		s.ended = true
	}
}

// Ended reports whether the workload has nothing more to send: a timer ended
// the run, MaxRequests was reached, or every source is exhausted and no
// closed-loop request is outstanding.
func (s *Scheduler) Ended() bool { return s.ended || (s.pending == 0 && s.inflight == 0) }

// Arrivals returns how many arrivals have been emitted.
func (s *Scheduler) Arrivals() int64 { return s.arrivals }

// Outstanding returns the closed-loop requests issued and not completed.
func (s *Scheduler) Outstanding() int { return s.inflight }

// PlanStats summarises a virtual-clock run.
type PlanStats struct {
	Arrivals int64
	Last     time.Duration // intended time of the last arrival
}

// Plan runs the workload on a virtual clock, without sending anything: it
// calls emit for every arrival in time order until duration (0 = until the
// workload ends, and at most MaxDuration) or until emit returns false.
// Closed-loop requests complete service(a) after their intended time; a
// service time below 1 µs (or nil) counts as 1 µs, so that a closed loop
// without think time still advances the virtual clock. It checks ctx every
// few thousand events (well within CancelLatency) and returns its error.
func Plan(ctx context.Context, w *Workload, duration time.Duration, service func(Arrival) time.Duration, emit func(Arrival) bool) (PlanStats, error) {
	s := NewScheduler(w)
	var st PlanStats
	horizon := duration
	if horizon <= 0 || horizon > MaxDuration {
		horizon = MaxDuration
	}
	// Completions of closed-loop requests, ordered by time, are interleaved
	// with the scheduler's events.
	var done doneHeap
	for n := 0; ; n++ {
		if n&(planCheckEvery-1) == 0 && ctx.Err() != nil {
			return st, ctx.Err()
		}
		at, ok := s.Next()
		if len(done) > 0 && (!ok || done[0].at <= at) {
			d := heap.Pop(&done).(doneEv)
			s.Complete(d.a, d.at)
			continue
		}
		if !ok || at >= horizon {
			break
		}
		a, isArr := s.Pop()
		if !isArr {
			continue
		}
		st.Arrivals++
		st.Last = a.At
		if !emit(a) {
			break
		}
		if a.closed != 0 {
			d := time.Microsecond
			if service != nil {
				d = max(service(a), time.Microsecond)
			}
			heap.Push(&done, doneEv{at: a.At + d, a: a})
		}
	}
	return st, nil
}

// planCheckEvery is how many events Plan handles between looks at its
// context: a few hundred microseconds of work, a power of two.
const planCheckEvery = 4096

type doneEv struct {
	at time.Duration
	a  Arrival
}

type doneHeap []doneEv

func (h doneHeap) Len() int           { return len(h) }
func (h doneHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h doneHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *doneHeap) Push(x any)        { *h = append(*h, x.(doneEv)) }
func (h *doneHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
