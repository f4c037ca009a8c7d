package simserver

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Request states; transitions out of stQueued are by CAS, so the drop
// timer, a client that gives up and the dispatcher cannot both win.
const (
	stQueued int32 = iota
	stRunning
	stDropped
	stCancelled
)

type dnnReq struct {
	arrival  time.Time
	deadline time.Time // zero: none
	start    time.Time // set when its batch starts
	state    atomic.Int32
	done     chan dnnResult // buffered 1
}

type dnnResult struct {
	dropped bool
	batch   int
	queue   time.Duration
	exec    time.Duration
}

// pool is a set of simulated GPUs. All DNN models share one pool when
// ServerConfig.Workers > 0; otherwise every model has its own pool of
// DNNModel.Instances executors. No goroutine runs while nothing is queued:
// work is started by arrivals and by batch-completion timers.
type pool struct {
	free  int
	ends  []time.Time // completion times of running batches
	ready modelHeap   // models with queued requests, oldest head first
	seed  uint64
	rng   *rand.Rand // created on first use, only for models with jitter
	mu    sync.Mutex
}

func newPool(workers int, seed uint64) *pool { return &pool{free: workers, seed: seed} }

// jittered applies the model's jitter to a nominal execution time (pool
// locked): × (1 + jitter × u), u uniform in [−1, 1), from the pool's seeded RNG.
func (p *pool) jittered(m *model, d time.Duration) time.Duration {
	j := m.sp.dnn.Jitter
	if j == 0 {
		return d
	}
	if p.rng == nil {
		p.rng = rand.New(rand.NewPCG(p.seed, 0x6a177e5))
	}
	return time.Duration(float64(d) * (1 + j*(2*p.rng.Float64()-1)))
}

// latency is the execution time of a batch of b: B1 × (1 + α(b−1)).
func (m *model) latency(b int) time.Duration {
	d := m.sp.dnn
	return time.Duration(float64(d.B1) * (1 + *d.BatchAlpha*float64(b-1)))
}

// earliestStart is when a batch could start at the soonest (pool locked).
func (p *pool) earliestStart(now time.Time) time.Time {
	if p.free > 0 || len(p.ends) == 0 {
		return now
	}
	min := p.ends[0]
	for _, e := range p.ends[1:] {
		if e.Before(min) {
			min = e
		}
	}
	if min.Before(now) {
		return now
	}
	return min
}

// infer runs one DNN request through the model's queue and returns its
// result, or ctx's error when the client gives up first.
func (s *Server) infer(ctx context.Context, m *model, deadline time.Time) (dnnResult, error) {
	now := time.Now()
	r := &dnnReq{arrival: now, deadline: deadline, done: make(chan dnnResult, 1)}
	drop := *m.sp.dnn.Drop && !deadline.IsZero()
	b1 := m.latency(1)
	p := m.pool

	p.mu.Lock()
	if drop && p.earliestStart(now).Add(b1).After(deadline) {
		p.mu.Unlock()
		return dnnResult{dropped: true}, nil
	}
	m.queue = append(m.queue, r)
	m.st.queued.Add(1)
	if m.heapIdx < 0 {
		heap.Push(&p.ready, m)
	}
	p.dispatch(now)
	p.mu.Unlock()

	if drop && r.state.Load() == stQueued {
		// Drop as soon as it is certain the request cannot finish in time:
		// when even a batch of one started now would end past the deadline.
		t := time.AfterFunc(deadline.Sub(now)-b1, func() {
			if r.state.CompareAndSwap(stQueued, stDropped) {
				m.st.queued.Add(-1)
				r.done <- dnnResult{dropped: true}
			}
		})
		defer t.Stop()
	}
	select {
	case res := <-r.done:
		return res, nil
	case <-ctx.Done():
	case <-s.closing:
	}
	if r.state.CompareAndSwap(stQueued, stCancelled) {
		m.st.queued.Add(-1)
	}
	if ctx.Err() != nil {
		return dnnResult{}, ctx.Err()
	}
	return dnnResult{}, errShuttingDown
}

// dispatch starts batches while GPUs are free and work is queued (pool locked).
func (p *pool) dispatch(now time.Time) {
	for p.free > 0 && p.ready.Len() > 0 {
		m := heap.Pop(&p.ready).(*model)
		batch := m.formBatch(now)
		if m.qhead < len(m.queue) {
			heap.Push(&p.ready, m)
		}
		if len(batch) == 0 {
			continue
		}
		p.free--
		lat := p.jittered(m, m.latency(len(batch)))
		end := now.Add(lat)
		p.ends = append(p.ends, end)
		for _, r := range batch {
			r.start = now
		}
		time.AfterFunc(lat, func() { p.complete(m, batch, end, lat) })
	}
}

func (p *pool) complete(m *model, batch []*dnnReq, end time.Time, lat time.Duration) {
	m.st.batches.Add(1)
	m.st.batched.Add(int64(len(batch)))
	for _, r := range batch {
		r.done <- dnnResult{batch: len(batch), queue: r.start.Sub(r.arrival), exec: lat}
	}
	p.mu.Lock()
	p.free++
	for i, e := range p.ends {
		if e.Equal(end) {
			p.ends[i] = p.ends[len(p.ends)-1]
			p.ends = p.ends[:len(p.ends)-1]
			break
		}
	}
	p.dispatch(time.Now())
	p.mu.Unlock()
}

// formBatch claims the next batch from the queue head (pool locked): up to
// MaxBatch live requests, dropping those that cannot meet their deadline
// even alone, and shrinking the batch until every member can meet its own.
func (m *model) formBatch(now time.Time) []*dnnReq {
	d := m.sp.dnn
	drop := *d.Drop
	b1end := now.Add(m.latency(1))
	var cand [64]int
	idx := cand[:0]
	i := m.qhead
	for ; i < len(m.queue) && len(idx) < d.MaxBatch; i++ {
		r := m.queue[i]
		if r.state.Load() != stQueued {
			continue
		}
		if drop && !r.deadline.IsZero() && b1end.After(r.deadline) {
			if r.state.CompareAndSwap(stQueued, stDropped) {
				m.st.queued.Add(-1)
				r.done <- dnnResult{dropped: true}
			}
			continue
		}
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		m.clearQueue(i)
		return nil
	}
	b := len(idx)
	if drop {
		for ; b > 1; b-- {
			end := now.Add(m.latency(b))
			ok := true
			for _, j := range idx[:b] {
				if dl := m.queue[j].deadline; !dl.IsZero() && end.After(dl) {
					ok = false
					break
				}
			}
			if ok {
				break
			}
		}
	}
	batch := make([]*dnnReq, 0, b)
	for _, j := range idx[:b] {
		r := m.queue[j]
		if r.state.CompareAndSwap(stQueued, stRunning) {
			m.st.queued.Add(-1)
			batch = append(batch, r)
		}
	}
	m.clearQueue(idx[b-1] + 1)
	return batch
}

// clearQueue drops entries before upto (all claimed or dead).
func (m *model) clearQueue(upto int) {
	for j := m.qhead; j < upto; j++ {
		m.queue[j] = nil
	}
	m.qhead = upto
	if m.qhead == len(m.queue) {
		m.queue = m.queue[:0]
		m.qhead = 0
	} else if m.qhead > 1024 && m.qhead*2 > len(m.queue) {
		n := copy(m.queue, m.queue[m.qhead:])
		clear(m.queue[n:])
		m.queue = m.queue[:n]
		m.qhead = 0
	}
}

// modelHeap orders models by the arrival of their oldest queued request.
type modelHeap []*model

func (h modelHeap) Len() int { return len(h) }
func (h modelHeap) Less(i, j int) bool {
	return h[i].queue[h[i].qhead].arrival.Before(h[j].queue[h[j].qhead].arrival)
}
func (h modelHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *modelHeap) Push(x any) {
	m := x.(*model)
	m.heapIdx = len(*h)
	*h = append(*h, m)
}
func (h *modelHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	m.heapIdx = -1
	return m
}
