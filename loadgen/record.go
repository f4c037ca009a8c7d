package loadgen

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Outcome classifies how one request ended. Each request has exactly one.
type Outcome uint8

const (
	OutcomeOK        Outcome = iota // 2xx answer
	OutcomeError                    // transport error or non-2xx (other than a deadline drop)
	OutcomeTimeout                  // no answer within the request timeout
	OutcomeDropped                  // never sent (run ended, in-flight cap) or shed by the server (503 + X-Dropped)
	OutcomeCancelled                // sent, still in flight when the run ended
)

func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeError:
		return "error"
	case OutcomeTimeout:
		return "timeout"
	case OutcomeDropped:
		return "dropped"
	case OutcomeCancelled:
		return "cancelled"
	}
	return "unknown"
}

// Chunk is one streamed piece of an LLM answer: when it arrived (since the
// request was sent) and how many tokens it carried (1 when the server does
// not say).
type Chunk struct {
	At     time.Duration
	Tokens int
}

// Result is the record of one request. Times are offsets from the run's
// start on the monotonic clock.
type Result struct {
	Arrival  Arrival
	Sent     time.Duration // actual send (0 if never sent)
	Done     time.Duration // answer complete, error or give-up
	Deadline time.Duration // absolute SLO deadline (0 = none)
	Outcome  Outcome
	Status   int   // HTTP status, 0 if none
	Err      error // transport or protocol error, if any
	retried  bool  // sent again after a stale keep-alive connection

	// LLM streaming (OpenAI-compatible targets); zero otherwise.
	Streamed     bool
	Chunks       []Chunk // every content chunk, in order (raw data for per-request rows)
	InputTokens  int
	OutputTokens int
}

// TTFT returns the time from send to the first content chunk (0 if none).
func (r *Result) TTFT() time.Duration {
	if len(r.Chunks) == 0 {
		return 0
	}
	return r.Chunks[0].At
}

// E2EL returns the time from send to the end of the answer.
func (r *Result) E2EL() time.Duration { return r.Done - r.Sent }

// TPOT returns (E2EL − TTFT)/(output_tokens − 1), vLLM's time per output
// token excluding the first; 0 when fewer than two tokens came back.
func (r *Result) TPOT() time.Duration {
	if r.OutputTokens < 2 || len(r.Chunks) == 0 {
		return 0
	}
	return (r.E2EL() - r.TTFT()) / time.Duration(r.OutputTokens-1)
}

// ITLs appends the inter-token latencies of the request to dst: one sample
// per gap between consecutive content chunks (vLLM's definition; a chunk
// carrying several tokens still gives one sample).
func (r *Result) ITLs(dst []time.Duration) []time.Duration {
	for i := 1; i < len(r.Chunks); i++ {
		dst = append(dst, r.Chunks[i].At-r.Chunks[i-1].At)
	}
	return dst
}

// LLMSLO are the per-request LLM goodput thresholds (0 = not set).
type LLMSLO struct{ TTFT, TPOT, E2EL time.Duration }

// Histograms hold microseconds from 1 µs to one hour with 3 significant
// digits; larger values are clamped to the maximum.
const (
	histMaxUS = int64(time.Hour / time.Microsecond)
	histSig   = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMaxUS, histSig) }

func recordDur(h *hdrhistogram.Histogram, d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < 0 {
		us = 0
	}
	if us > histMaxUS {
		us = histMaxUS
	}
	_ = h.RecordValue(us)
}

// acc accumulates one snapshot's worth of counts and histograms.
type acc struct {
	offered, sent, completed, errors, timeouts, dropped, cancelled, sloMet int64
	inTok, outTok                                                          int64
	lat, svc, late                                                         *hdrhistogram.Histogram
	ttft, tpot, itl, e2el                                                  *hdrhistogram.Histogram
	factor                                                                 float64
	first                                                                  time.Duration // earliest intended time seen (steps)
	last                                                                   time.Duration
}

func (a *acc) finished() int64 {
	return a.completed + a.errors + a.timeouts + a.dropped + a.cancelled
}

func (a *acc) reset() {
	l, s, t := a.lat, a.svc, a.late
	tt, tp, it, e := a.ttft, a.tpot, a.itl, a.e2el
	*a = acc{lat: l, svc: s, late: t, ttft: tt, tpot: tp, itl: it, e2el: e}
	for _, h := range []*hdrhistogram.Histogram{l, s, t, tt, tp, it, e} {
		if h != nil {
			h.Reset()
		}
	}
}

func newAcc() *acc { return &acc{lat: newHist(), svc: newHist(), late: newHist()} }

func (a *acc) record(r *Result, met bool, itl []time.Duration) {
	switch r.Outcome {
	case OutcomeOK:
		a.completed++
		recordDur(a.lat, r.Done-r.Arrival.At)
		recordDur(a.svc, r.Done-r.Sent)
		if met {
			a.sloMet++
		}
	case OutcomeError:
		a.errors++
	case OutcomeTimeout:
		a.timeouts++
	case OutcomeDropped:
		a.dropped++
	case OutcomeCancelled:
		a.cancelled++
	}
	if r.Sent > 0 {
		a.sent++
		recordDur(a.late, r.Sent-r.Arrival.At)
	}
	if r.Streamed && r.Outcome == OutcomeOK {
		if a.ttft == nil {
			a.ttft, a.tpot, a.itl, a.e2el = newHist(), newHist(), newHist(), newHist()
		}
		if len(r.Chunks) > 0 {
			recordDur(a.ttft, r.TTFT())
		}
		recordDur(a.e2el, r.E2EL())
		if tp := r.TPOT(); tp > 0 {
			recordDur(a.tpot, tp)
		}
		for _, g := range itl {
			recordDur(a.itl, g)
		}
		a.inTok += int64(r.InputTokens)
		a.outTok += int64(r.OutputTokens)
	}
}

func quantiles(h *hdrhistogram.Histogram) Quantiles {
	if h == nil || h.TotalCount() == 0 {
		return Quantiles{}
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	v := h.ValueAtPercentilesSlice([]float64{25, 50, 75, 90, 95, 99, 99.9})
	return Quantiles{
		Count: h.TotalCount(),
		Min:   us(h.Min()),
		Mean:  time.Duration(h.Mean() * float64(time.Microsecond)),
		P25:   us(v[0]), P50: us(v[1]), P75: us(v[2]), P90: us(v[3]), P95: us(v[4]), P99: us(v[5]), P999: us(v[6]),
		Max: us(h.Max()),
		Std: time.Duration(h.StdDev() * float64(time.Microsecond)),
	}
}

func (a *acc) snapshot(idx int, start, end time.Time, keepHDR bool) Snapshot {
	s := Snapshot{
		Interval: idx, Start: start, End: end, SLOFactor: a.factor,
		Offered: a.offered, Sent: a.sent, Completed: a.completed, Errors: a.errors,
		Timeouts: a.timeouts, Dropped: a.dropped, Cancelled: a.cancelled, SLOMet: a.sloMet,
		Latency: quantiles(a.lat), Service: quantiles(a.svc), Lateness: quantiles(a.late),
		TTFT: quantiles(a.ttft), TPOT: quantiles(a.tpot), ITL: quantiles(a.itl), E2EL: quantiles(a.e2el),
		InputTokens: a.inTok, OutputTokens: a.outTok,
	}
	if keepHDR {
		s.HDR = a.encodeHists()
	}
	if secs := end.Sub(start).Seconds(); secs > 0 {
		s.OfferedRate = float64(a.offered) / secs
		s.AchievedRate = float64(a.completed) / secs
		s.Goodput = float64(a.sloMet) / secs
	}
	return s
}

// Recorder collects results into per-interval snapshots (by intended send
// time), whole-run totals, and per-class and per-SLO-factor breakdowns. An
// interval's snapshot is emitted once the schedule has passed its end and
// every request intended in it has finished, so each request is counted in
// exactly one interval. Safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	wall     time.Time // wall-clock time of offset 0
	interval time.Duration
	emit     func(Snapshot)
	llm      LLMSLO

	total   *acc
	classes map[string]*acc
	steps   map[float64]*acc
	ivals   []*acc // open intervals, ivals[0] is interval base
	base    int
	spare   []*acc
	itlBuf  []time.Duration
	kinds   map[string]int64

	// SweptClass, when set, restricts SLO steps and the interval factor to
	// that class's arrivals (Workload.SweptClass). Set before the run.
	SweptClass string
	// KeepHDR puts every snapshot's histograms, encoded, in Snapshot.HDR
	// (RunOptions.KeepHDR). Set before the run.
	KeepHDR bool
}

// NewRecorder returns a recorder whose interval snapshots (interval ≤ 0
// means 1 s) go to emit (may be nil). wall is the wall-clock time of the
// run's offset 0.
func NewRecorder(wall time.Time, interval time.Duration, llm LLMSLO, emit func(Snapshot)) *Recorder {
	if interval <= 0 {
		interval = time.Second
	}
	r := &Recorder{
		wall: wall, interval: interval, emit: emit, llm: llm,
		total: newAcc(), classes: map[string]*acc{}, steps: map[float64]*acc{}, kinds: map[string]int64{},
	}
	// Intervals are recycled once emitted; these spares cover the ones open
	// at a time (the current one, the next, one still draining), so the
	// pacer, which opens intervals, never allocates half a megabyte of
	// histograms (and pays the GC assist for it) in the middle of a run.
	for range 3 {
		r.spare = append(r.spare, newAcc())
	}
	return r
}

func (r *Recorder) ival(at time.Duration) *acc {
	k := int(at / r.interval)
	if at < 0 {
		k = 0
	}
	if k < r.base {
		// Interval already emitted; cannot happen for arrivals offered in
		// time order. Count into the oldest open one rather than lose it.
		k = r.base
	}
	for k-r.base >= len(r.ivals) {
		var a *acc
		if n := len(r.spare); n > 0 {
			a, r.spare = r.spare[n-1], r.spare[:n-1]
		} else {
			a = newAcc()
		}
		r.ivals = append(r.ivals, a)
	}
	return r.ivals[k-r.base]
}

func (r *Recorder) groups(a Arrival) (cls, step *acc) {
	if a.Class != "" {
		if cls = r.classes[a.Class]; cls == nil {
			cls = newAcc()
			cls.first = a.At
			r.classes[a.Class] = cls
		}
	}
	if a.SLOFactor > 0 && (r.SweptClass == "" || a.Class == r.SweptClass) {
		if step = r.steps[a.SLOFactor]; step == nil {
			step = newAcc()
			step.factor, step.first = a.SLOFactor, a.At
			r.steps[a.SLOFactor] = step
		}
		step.last = a.At
	}
	return cls, step
}

// Offered counts an arrival when the scheduler emits it.
func (r *Recorder) Offered(a Arrival) {
	r.mu.Lock()
	iv := r.ival(a.At)
	iv.offered++
	if a.SLOFactor > 0 && (r.SweptClass == "" || a.Class == r.SweptClass) {
		iv.factor = a.SLOFactor // the factor in force: the latest arrival's
	}
	r.total.offered++
	cls, step := r.groups(a)
	if cls != nil {
		cls.offered++
	}
	if step != nil {
		step.offered++
	}
	r.mu.Unlock()
}

// Record counts a finished request (Offered must have been called for it).
func (r *Recorder) Record(res *Result) {
	met := res.Outcome == OutcomeOK && (res.Deadline == 0 || res.Done <= res.Deadline)
	if met && res.Streamed {
		if r.llm.TTFT > 0 && (len(res.Chunks) == 0 || res.TTFT() > r.llm.TTFT) {
			met = false
		}
		if r.llm.TPOT > 0 && res.TPOT() > r.llm.TPOT {
			met = false
		}
		if r.llm.E2EL > 0 && res.E2EL() > r.llm.E2EL {
			met = false
		}
	}
	r.mu.Lock()
	var itl []time.Duration
	if res.Streamed {
		r.itlBuf = res.ITLs(r.itlBuf[:0])
		itl = r.itlBuf
	}
	if res.Outcome != OutcomeOK {
		k := errorKind(res)
		if _, ok := r.kinds[k]; !ok && len(r.kinds) >= 32 {
			k = "other"
		}
		r.kinds[k]++
	}
	r.ival(res.Arrival.At).record(res, met, itl)
	r.total.record(res, met, itl)
	cls, step := r.groups(res.Arrival)
	if cls != nil {
		cls.record(res, met, itl)
	}
	if step != nil {
		step.record(res, met, itl)
	}
	r.mu.Unlock()
}

// Flush emits the snapshots of every interval that ended before upTo (the
// point up to which the schedule has offered every arrival) and has no
// request still in flight. With final it emits every open interval, the
// last one cut at end (> 0). Snapshots go to emit outside the lock, so a
// slow sink never stalls the sender.
func (r *Recorder) Flush(upTo time.Duration, final bool, end time.Duration) {
	type done struct {
		a    *acc
		k    int
		iend time.Duration
		skip bool
	}
	var ds []done
	r.mu.Lock()
	if final && end > 0 && int((end-1)/r.interval) >= r.base {
		r.ival(end - 1) // emit empty trailing intervals too: the series has no holes
	}
	for len(r.ivals) > 0 {
		a := r.ivals[0]
		k := r.base
		iend := time.Duration(k+1) * r.interval
		if !final && (iend > upTo || a.finished() < a.offered) {
			break
		}
		skip := final && end > 0 && time.Duration(k)*r.interval >= end && a.offered == 0
		if end > 0 && iend > end {
			iend = end
		}
		ds = append(ds, done{a, k, iend, skip})
		r.ivals[0] = nil
		r.ivals = r.ivals[1:]
		r.base++
	}
	r.mu.Unlock()
	if len(ds) == 0 {
		return
	}
	// Percentiles take a millisecond or so per interval: computed outside
	// the lock, which the pacer takes for every arrival. A detached
	// interval gets no more records (ival never returns one below base).
	var out []Snapshot
	for _, d := range ds {
		if !d.skip && r.emit != nil {
			out = append(out, d.a.snapshot(d.k, r.wall.Add(time.Duration(d.k)*r.interval), r.wall.Add(d.iend), r.KeepHDR))
		}
		d.a.reset()
	}
	r.mu.Lock()
	for _, d := range ds {
		r.spare = append(r.spare, d.a)
	}
	r.mu.Unlock()
	for _, s := range out {
		r.emit(s)
	}
}

// Progress returns live totals for a progress display.
func (r *Recorder) Progress() (offered, completed, failed int64, p99 time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.total
	us := t.lat.ValueAtQuantile(99)
	return t.offered, t.completed, t.errors + t.timeouts + t.dropped + t.cancelled, time.Duration(us) * time.Microsecond
}

// Totals returns the whole-run snapshot over [0, end) and the per-class and
// per-SLO-factor breakdowns (classes by name, steps by first appearance).
func (r *Recorder) Totals(end time.Duration) (total Snapshot, classes, steps []Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, e := r.wall, r.wall.Add(end)
	total = r.total.snapshot(-1, s, e, r.KeepHDR)
	names := make([]string, 0, len(r.classes))
	for n := range r.classes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := r.classes[n].snapshot(-1, s, e, r.KeepHDR)
		c.Class = n
		classes = append(classes, c)
	}
	fs := make([]*acc, 0, len(r.steps))
	for _, a := range r.steps {
		fs = append(fs, a)
	}
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].first != fs[j].first {
			return fs[i].first < fs[j].first
		}
		return fs[i].factor < fs[j].factor
	})
	for _, a := range fs {
		// A step's rates are over the span in which its factor was in force.
		st := s.Add(a.first)
		en := s.Add(a.last)
		if !en.After(st) {
			en = e
		}
		snap := a.snapshot(-1, st, en, r.KeepHDR)
		steps = append(steps, snap)
	}
	return total, classes, steps
}

// ErrorKinds returns the failed requests counted by cause.
func (r *Recorder) ErrorKinds() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.kinds) == 0 {
		return nil
	}
	out := make(map[string]int64, len(r.kinds))
	for k, v := range r.kinds {
		out[k] = v
	}
	return out
}

// errorKind names the cause of a failed request with a short, bounded
// string (no addresses or request-specific text).
func errorKind(res *Result) string {
	switch res.Outcome {
	case OutcomeTimeout:
		return "timeout"
	case OutcomeCancelled:
		return "cancelled at end of run"
	case OutcomeDropped:
		if res.Status != 0 {
			return fmt.Sprintf("HTTP %d dropped by server", res.Status)
		}
		if errors.Is(res.Err, errInFlightCap) {
			return "in-flight cap"
		}
		return "not sent before end of run"
	}
	if res.Status != 0 && res.Status/100 != 2 {
		return fmt.Sprintf("HTTP %d", res.Status)
	}
	var errno syscall.Errno
	switch {
	case res.Err == nil:
		return "error"
	case errors.Is(res.Err, ErrNoReplica):
		return "no ready replica"
	case errors.As(res.Err, &errno):
		return errnoName(errno)
	case errors.Is(res.Err, io.ErrUnexpectedEOF), errors.Is(res.Err, io.EOF):
		return "connection closed early (EOF)"
	case res.Status/100 == 2:
		return "bad response body"
	}
	return "transport error"
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ECONNREFUSED:
		return "ECONNREFUSED"
	case syscall.ECONNRESET:
		return "ECONNRESET"
	case syscall.EPIPE:
		return "EPIPE"
	case syscall.EADDRNOTAVAIL:
		return "EADDRNOTAVAIL (out of local ports)"
	case syscall.EMFILE:
		return "EMFILE (too many open files)"
	}
	return "errno " + e.Error()
}
