package loadgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/internal/clip"
)

// Progress is what a live display shows during a run.
type Progress struct {
	Elapsed, Total time.Duration // Total = 0 when the run has no fixed duration
	Offered        int64
	Completed      int64
	Failed         int64   // errors + timeouts + drops + cancellations
	Rate           float64 // completions/s over the last report period
	P99            time.Duration
}

// RunOptions are the parts of a run that are not in the Config.
type RunOptions struct {
	// Target overrides the target built from Config.Target (tests, custom
	// protocols).
	Target Target
	// OnSnapshot receives each interval's snapshot in order (from one
	// goroutine).
	OnSnapshot func(Snapshot)
	// OnResult receives every finished request with its raw timings and
	// chunks (per-request rows). It runs on the sender's goroutines and must
	// not keep res.
	OnResult func(res *Result)
	// OnProgress is called about once a second.
	OnProgress func(Progress)
	// Calibration gives known batch-1 latencies; models missing from it are
	// measured when SLO factors are used.
	Calibration map[string]time.Duration
	Logger      *slog.Logger

	// KeepHDR puts each snapshot's histograms, losslessly encoded, in
	// Snapshot.HDR, so that the snapshots of several generators (a
	// sharded run) merge exactly (MergeSnapshots).
	KeepHDR bool
	// Rendezvous, when set, is called once the target is ready and
	// calibrated, just before the connections are warmed and the schedule
	// starts: it returns the wall-clock time that offset 0 of the schedule
	// is (a sharded run's common start; the run waits for it, and a start
	// already past shows as lateness) and the calibration to use (nil:
	// this run's own). calib is what this run measured (nil when it did
	// not calibrate). Its error ends the run as failed.
	Rendezvous func(ctx context.Context, calib map[string]time.Duration) (start time.Time, use map[string]time.Duration, err error)
	// SkipCalibration leaves the batch-1 calibration to Rendezvous (a
	// shard other than the first uses the first's, so deadlines agree).
	SkipCalibration bool
}

// Defaults.
const (
	DefaultTimeout             = 30 * time.Second
	DefaultDrain               = 5 * time.Second
	DefaultMaxInFlight         = 20000
	DefaultMaxConnections      = 4096
	DefaultCalibrationRequests = 10
)

// Optional target capabilities.
type (
	preparer  interface{ Prepare(models []string) } // precompute per-model state
	connCap   interface{ SetMaxConns(n int) }       // cap on connections
	aborter   interface{ Abort() }                  // fail everything in flight now
	selfTimer interface{ SelfTimed() bool }         // enforces the request timeout itself
	// asyncSender lets the pacer send requests itself, without waiting for
	// the answer: no hand-off to a worker lies between the intended time
	// and the write. Answers come back through done, from other goroutines.
	asyncSender interface {
		startAsync(ctx context.Context, warm, maxConns int, clock func() time.Duration, done func(*Result, error)) bool
		trySend(res *Result) (bool, error)   // pacer only; false: no free connection; error: the target refuses connections
		takeRetries(out []*Result) []*Result // sends to repeat (stale keep-alive)
		retries() <-chan struct{}            // ready when takeRetries has some
		asyncWait()                          // after Abort: every answer reported
	}
)

// pendingPoll is how often the pacer retries requests that found no free
// connection.
const pendingPoll = 50 * time.Microsecond

type completion struct {
	a  Arrival
	at time.Duration
}

type runner struct {
	cfg    *Config
	w      *Workload
	opts   RunOptions
	target Target
	rec    *Recorder
	log    *slog.Logger

	start     time.Time
	timeout   time.Duration
	selfTimed bool
	b1        map[string]time.Duration
	sloFac    float64

	sched     *Scheduler      // owned by the pacer goroutine
	reqCtx    context.Context // cancelled when in-flight requests must stop
	reqCancel context.CancelFunc
	stopping  atomic.Bool // schedule over: workers that have not sent yet drop

	queue       chan Arrival // arrivals waiting for a worker
	idle        atomic.Int64 // workers waiting for an arrival
	workers     int64        // workers started (pacer only)
	maxWorkers  int64
	completions chan completion
	wg          sync.WaitGroup
	inflight    atomic.Int64
	maxInFlight int64
	upTo        atomic.Int64 // every arrival intended before this offset has been offered
	resPool     sync.Pool

	async   asyncSender // nil: workers send
	pending []*Result   // async arrivals waiting for a free connection (pacer only)
	retryC  <-chan struct{}
	pacer   string // priority the pacer thread got
	// When a flush last left requests waiting for a connection.
	lastFlush time.Duration
	lastRest  time.Duration
}

func (r *runner) clock() time.Duration { return time.Since(r.start) }

// Run executes one load run: readiness probe, SLO calibration if needed,
// then the workload's schedule for cfg.Duration (or until the workload
// ends). It always returns a Summary when the run started; err is non-nil
// when it could not start (wrapping errkind.ErrUnavailable for an unreachable
// target) or when ctx was cancelled (the Summary then has status
// "interrupted" and holds what was measured so far).
func Run(ctx context.Context, cfg *Config, w *Workload, opts RunOptions) (*Summary, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	sum := &Summary{
		Experiment: cfg.Experiment, Task: cfg.Task, Workload: w.Name, Target: cfg.Target.URL,
		Protocol: cfg.Target.Protocol, Tags: cfg.Tags, Deviations: w.Deviations,
	}
	if sum.Protocol == "" {
		sum.Protocol = "http"
	}
	fail := func(err error) (*Summary, error) {
		sum.Status, sum.Error = StatusFailed, err.Error()
		sum.Started, sum.Ended = time.Now(), time.Now()
		return sum, err
	}
	if cfg.Duration.D() <= 0 && w.MaxRequests <= 0 && len(w.Open) > 0 && !finiteOpen(w) {
		return fail(errors.New("open-loop workload without duration or max_requests would never end; set a duration"))
	}
	if p := cfg.PacerPriority; p != "" && !slices.Contains(PacerPriorities, p) {
		return fail(fmt.Errorf("unknown pacer_priority %q (want one of %s)", p, strings.Join(PacerPriorities, ", ")))
	}
	tgt := opts.Target
	if tgt == nil {
		var err error
		if tgt, err = NewTarget(cfg.Target); err != nil {
			return fail(err)
		}
	}
	models := w.Models()
	if p, ok := tgt.(preparer); ok {
		p.Prepare(models)
	}
	// Connections (and workers: one per request in progress) are capped;
	// closed loops keep their whole concurrency at the server.
	conns := cfg.Target.MaxConnections
	if conns <= 0 {
		conns = DefaultMaxConnections
		total := 0
		for _, cl := range w.Closed {
			total += cl.Concurrency
		}
		conns = max(conns, total+64)
	}
	if c, ok := tgt.(connCap); ok {
		c.SetMaxConns(conns)
	}
	if err := tgt.Ready(ctx); err != nil {
		return fail(err)
	}
	r := &runner{cfg: cfg, w: w, opts: opts, target: tgt, log: log}
	if st, ok := tgt.(selfTimer); ok {
		r.selfTimed = st.SelfTimed()
	}
	r.timeout = cfg.Target.Timeout.D()
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	r.maxInFlight = int64(cfg.MaxInFlight)
	if r.maxInFlight <= 0 {
		r.maxInFlight = DefaultMaxInFlight
	}
	r.sloFac = cfg.SLO.Factor
	if needsCalibration(cfg, w) && !opts.SkipCalibration {
		b1, err := r.calibrate(ctx, models)
		if err != nil {
			if ctx.Err() != nil {
				sum.Status = StatusInterrupted
				sum.Started, sum.Ended = time.Now(), time.Now()
				return sum, ctx.Err()
			}
			return fail(err)
		}
		r.b1 = b1
		sum.Calibration = b1
	}
	var start time.Time
	if opts.Rendezvous != nil {
		t0, b1, err := opts.Rendezvous(ctx, r.b1)
		if err != nil {
			if ctx.Err() != nil {
				sum.Status = StatusInterrupted
				sum.Started, sum.Ended = time.Now(), time.Now()
				return sum, ctx.Err()
			}
			return fail(err)
		}
		if b1 != nil {
			r.b1, sum.Calibration = b1, b1
		}
		start = t0
	}
	// Warm up: connections (and idle workers) ready before the first
	// arrival, so the first second is not spent dialling and growing stacks.
	warm := 64
	for _, cl := range w.Closed {
		warm += cl.Concurrency
	}
	r.resPool.New = func() any { return new(Result) }
	r.completions = make(chan completion, 1024)
	r.reqCtx, r.reqCancel = context.WithCancel(context.Background())
	defer r.reqCancel()
	if as, ok := tgt.(asyncSender); ok && as.startAsync(ctx, min(warm+asyncWarm(cfg), conns), conns, r.clock, r.finish) {
		r.async, r.retryC = as, as.retries()
	} else {
		// Arrivals wait in a queue for a worker: a request waiting for a
		// free connection costs a queue slot, not a goroutine, so an
		// overloaded target cannot blow up memory. The queue holds the
		// in-flight cap.
		r.queue = make(chan Arrival, r.maxInFlight)
		r.maxWorkers = int64(conns)
		for i := 0; i < min(warm, conns, 1024); i++ {
			r.spawn()
		}
	}

	r.start = time.Now()
	if !start.IsZero() {
		// The common start on this clock's monotonic reading: time.Since
		// then never jumps with the wall clock. The pacer sleeps until the
		// first arrival, at or after it.
		r.start = r.start.Add(start.Sub(r.start))
	}
	r.rec = NewRecorder(r.start, cfg.Interval.D(), LLMSLO{TTFT: cfg.SLO.TTFT.D(), TPOT: cfg.SLO.TPOT.D(), E2EL: cfg.SLO.E2EL.D()}, opts.OnSnapshot)
	r.rec.SweptClass = w.SweptClass
	r.rec.KeepHDR = opts.KeepHDR
	sum.Started = r.start

	flushDone := make(chan struct{})
	flushStop := make(chan struct{})
	go r.background(flushStop, flushDone)

	// The pacer has a thread of its own, never unlocked: the thread exits
	// with the goroutine and takes its raised priority with it.
	type paced struct {
		end         time.Duration
		interrupted bool
	}
	pc := make(chan paced, 1)
	mode := cmp.Or(cfg.PacerPriority, PacerAuto)
	defer addPacerP()()
	go func() {
		runtime.LockOSThread()
		r.pacer = raisePacerPriority(mode)
		end, interrupted := r.pace(ctx)
		// Drain: let in-flight requests finish, then cancel the rest.
		drain := cfg.Drain.D()
		if drain <= 0 {
			drain = DefaultDrain
		}
		if cfg.Duration.D() <= 0 {
			drain = r.timeout // a finite workload waits for every answer
		}
		if drain > r.timeout+time.Second {
			drain = r.timeout + time.Second // no answer can take longer than that
		}
		if interrupted {
			drain = 0
		}
		r.waitInflight(drain)
		pc <- paced{end, interrupted}
	}()
	p := <-pc
	end, interrupted := p.end, p.interrupted
	sum.Pacer = r.pacer
	if r.pacer != PacerRealtime && mode != PacerNormal {
		log.Debug("pacer runs without real-time priority; expect a longer send-lateness tail on a busy machine", "pacer", r.pacer)
	}
	r.stopping.Store(true) // workers that still have not sent: dropped
	r.reqCancel()
	if a, ok := r.target.(aborter); ok {
		a.Abort()
	}
	if r.async != nil {
		for _, res := range r.pending { // never found a free connection
			res.Outcome, res.Done = OutcomeDropped, r.clock()
			r.settle(res)
		}
		r.pending = nil
		r.async.asyncWait()
		// A repeat queued as the drain ran out was never sent again.
		for _, res := range r.async.takeRetries(nil) {
			res.Outcome, res.Err, res.Done = OutcomeCancelled, errAborted, r.clock()
			r.settle(res)
		}
	} else {
		close(r.queue) // workers finish what is queued (dropped: the run is over) and exit
		r.wg.Wait()
	}
	close(flushStop)
	<-flushDone
	r.rec.Flush(end, true, end)

	sum.Ended = time.Now()
	sum.Total, sum.Classes, sum.Steps = r.rec.Totals(end)
	sum.ErrorKinds = r.rec.ErrorKinds()
	sum.Status = StatusCompleted
	if interrupted {
		sum.Status = StatusInterrupted
		return sum, ctx.Err()
	}
	if err := noneSucceeded(sum); err != nil {
		// Every request failed: the figures measure the failures, not the
		// server, so the run failed (a wrong protocol, path or model).
		sum.Status, sum.Error = StatusFailed, err.Error()
		return sum, err
	}
	return sum, nil
}

// noneSucceeded is the error of a run in which requests were sent and none
// completed, naming the most common failure.
func noneSucceeded(sum *Summary) error {
	t := sum.Total
	if t.Completed > 0 || t.Errors+t.Timeouts == 0 {
		return nil // a hanging target's requests are cancelled at the end, not failed
	}
	kind, n := "", int64(0)
	for k, c := range sum.ErrorKinds {
		if c > n || (c == n && k < kind) {
			kind, n = k, c
		}
	}
	msg := fmt.Sprintf("no request succeeded: %d sent, %d errors, %d timeouts", t.Sent, t.Errors, t.Timeouts)
	if kind != "" {
		msg += fmt.Sprintf(" (most often %s: %d)", kind, n)
	}
	if strings.HasPrefix(kind, "HTTP 404") || strings.HasPrefix(kind, "HTTP 405") {
		msg += "; check --protocol, the URL's path and the model name"
	}
	return errors.New(msg)
}

// asyncWarm is how many extra connections to open before an asynchronous
// run: enough for 25 ms of the offered rate (64 to 512), so that a server
// that stalls for a moment does not leave the first second's arrivals
// waiting for connections to be dialled. More are dialled on demand.
func asyncWarm(cfg *Config) int {
	return int(min(max(cfg.Workload.Rate*0.025, 64), 512))
}

func finiteOpen(w *Workload) bool {
	for _, o := range w.Open {
		if o.Stop <= 0 && o.Max <= 0 {
			if _, ok := o.Proc.(*Offsets); !ok {
				return false
			}
		}
	}
	return true
}

func needsCalibration(cfg *Config, w *Workload) bool {
	if cfg.SLO.Factor > 0 || w.Calibrate {
		return true
	}
	for _, o := range w.Open {
		if o.SLOFactor > 0 {
			return true
		}
	}
	for _, c := range w.Closed {
		if c.SLOFactor > 0 {
			return true
		}
	}
	return false
}

// background flushes finished intervals and reports progress.
func (r *runner) background(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	lastProg := time.Now()
	var lastDone int64
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		r.rec.Flush(time.Duration(r.upTo.Load()), false, 0)
		if r.opts.OnProgress != nil && time.Since(lastProg) >= time.Second {
			off, comp, failed, p99 := r.rec.Progress()
			el := time.Since(lastProg)
			lastProg = time.Now()
			r.opts.OnProgress(Progress{
				Elapsed: r.clock(), Total: r.cfg.Duration.D(), Offered: off, Completed: comp, Failed: failed,
				Rate: float64(comp-lastDone) / el.Seconds(), P99: p99,
			})
			lastDone = comp
		}
	}
}

// pace is the single sender loop: it waits until each arrival's intended
// time (start + offset, never a relative gap) and hands the arrival to a
// worker. It returns the offset at which the schedule ended.
func (r *runner) pace(ctx context.Context) (end time.Duration, interrupted bool) {
	s := NewScheduler(r.w)
	r.sched = s
	dur := r.cfg.Duration.D()
	// No arrival after MaxDuration is ever due, even in a run without a
	// duration; and a pacer that falls so far behind that sending what is
	// still due would outlast the run by more than paceOverrun stops there
	// (an arrival rate beyond what any sender keeps up with).
	horizon := dur
	if horizon <= 0 || horizon > MaxDuration {
		horizon = MaxDuration
	}
	stopBy := horizon + paceOverrun(horizon)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	closed := len(r.w.Closed) > 0
	for {
		// Fold in closed-loop completions that have arrived.
		for drained := false; !drained; {
			select {
			case c := <-r.completions:
				s.Complete(c.a, c.at)
			default:
				drained = true
			}
		}
		if ctx.Err() != nil {
			return r.clock(), true
		}
		r.flushPending()
		if s.Ended() {
			if dur > 0 {
				return min(dur, r.clock()), false
			}
			return r.clock(), false
		}
		at, ok := s.Next()
		if ok && at < horizon && r.clock() >= stopBy {
			r.log.Warn("the pacer fell too far behind the schedule: the run stops without sending the rest", "behind", r.clock()-at, "stopped_at", r.clock())
			return min(r.clock(), horizon), false
		}
		if !ok || at >= horizon {
			if len(r.pending) > 0 && (dur <= 0 || r.clock() < dur) {
				r.nap(pendingPoll) // requests still wait for a connection
				continue
			}
			// Nothing due within the run. Only a closed-loop completion can
			// still bring an arrival; without one, the run lasts its duration.
			if s.Outstanding() == 0 {
				if dur <= 0 {
					return r.clock(), false
				}
				if r.sleepUntil(ctx, dur, timer, false) {
					if ctx.Err() != nil {
						return r.clock(), true
					}
					continue // a send to repeat woke the pacer
				}
				return dur, false
			}
			now := r.clock()
			r.upTo.Store(int64(now)) // later arrivals come after a completion, so after now
			wait := time.Hour
			if dur > 0 {
				if wait = dur - now; wait <= 0 {
					return dur, false
				}
			}
			timer.Reset(wait)
			select {
			case c := <-r.completions:
				timer.Stop()
				s.Complete(c.a, c.at)
			case <-timer.C:
			case <-r.retryC:
				timer.Stop()
			case <-ctx.Done():
				return r.clock(), true
			}
			continue
		}
		r.upTo.Store(int64(at))
		if now := r.clock(); at > now {
			wake := at
			if len(r.pending) > 0 {
				wake = min(at, now+pendingPoll)
			}
			if r.sleepUntil(ctx, wake, timer, closed) || wake < at {
				continue // interrupted, a completion came in, or time to retry: re-evaluate
			}
		} else if r.pacer == PacerRealtime && now-r.lastRest > 2*time.Millisecond {
			// Behind schedule for a while: a real-time thread that never
			// sleeps would starve everything else on its core, the server
			// under test included. A short rest costs little lateness
			// compared with what the overload already causes.
			r.nap(20 * time.Microsecond)
		}
		a, isArrival := s.Pop()
		if !isArrival {
			continue
		}
		r.dispatch(a)
	}
}

// paceOverrun is how far past its duration a run may still be sending
// what was due before it: 10% of the duration, at least 5 s.
func paceOverrun(d time.Duration) time.Duration { return max(5*time.Second, d/10) }

// sleepUntil waits until offset at. Go's timers wake up to ~1 ms late, so
// the last 2 ms are slept with nanosleep(2), which is accurate to tens of
// microseconds. With watch it folds closed-loop completions into the
// scheduler and returns true so the caller re-evaluates; it also returns
// true when ctx is done.
func (r *runner) sleepUntil(ctx context.Context, at time.Duration, timer *time.Timer, watch bool) bool {
	for {
		left := at - r.clock()
		if left <= 0 {
			return false
		}
		if left > 2*time.Millisecond {
			timer.Reset(left - 1500*time.Microsecond)
			r.lastRest = at
			var comp <-chan completion
			if watch {
				comp = r.completions
			}
			select {
			case <-timer.C:
			case c := <-comp:
				timer.Stop()
				r.sched.Complete(c.a, c.at)
				return true
			case <-r.retryC: // a send to repeat: see to it now
				timer.Stop()
				return true
			case <-ctx.Done():
				timer.Stop()
				return true
			}
			continue
		}
		if watch && len(r.completions) > 0 {
			return true
		}
		if ctx.Err() != nil {
			return true
		}
		chunk := left
		if watch && chunk > 250*time.Microsecond {
			chunk = 250 * time.Microsecond
		}
		r.nap(chunk)
	}
}

// nap sleeps d with nanosleep(2) (accurate to tens of microseconds, where
// Go's timers may wake a millisecond late).
func (r *runner) nap(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil)
	r.lastRest = r.clock()
}

// send hands res to the asynchronous sender; false means no connection is
// free and res must wait. A request that cannot be sent because the target
// refuses connections is settled as an error.
func (r *runner) send(res *Result) bool {
	ok, err := r.async.trySend(res)
	if err != nil {
		res.Outcome, res.Err, res.Done = OutcomeError, err, r.clock()
		r.settle(res)
		return true
	}
	return ok
}

// flushPending sends, in order, the requests that found no free connection
// (and those to repeat after a stale keep-alive), as far as connections
// are free (pacer only).
func (r *runner) flushPending() {
	if r.async == nil {
		return
	}
	if len(r.pending) > 0 && r.clock()-r.lastFlush < pendingPoll {
		// Every connection was busy a moment ago. Trying again for each
		// arrival would scan them all each time, and a real-time pacer
		// spinning like that starves the server that is already behind.
		return
	}
	r.pending = r.async.takeRetries(r.pending)
	i := 0
	for i < len(r.pending) && r.send(r.pending[i]) {
		i++
	}
	if i > 0 {
		n := copy(r.pending, r.pending[i:])
		clear(r.pending[n:])
		r.pending = r.pending[:n]
	}
	if len(r.pending) > 0 {
		r.lastFlush = r.clock()
	}
}

func (r *runner) dispatch(a Arrival) {
	r.rec.Offered(a)
	if r.inflight.Load() >= r.maxInFlight {
		res := &Result{Arrival: a, Outcome: OutcomeDropped, Done: r.clock(), Err: errInFlightCap}
		r.rec.Record(res)
		r.complete(a, res.Done)
		return
	}
	r.inflight.Add(1)
	if r.async != nil {
		res := r.newResult(a)
		r.flushPending() // those waiting go first (at most every pendingPoll)
		if len(r.pending) > 0 || !r.send(res) {
			r.pending = append(r.pending, res) // in order, after those already waiting
		}
		return
	}
	r.queue <- a // never blocks: at most maxInFlight are queued or in progress
	if int64(len(r.queue)) > r.idle.Load() && r.workers < r.maxWorkers {
		r.spawn()
	}
}

// spawn starts one more worker (pacer goroutine only).
func (r *runner) spawn() {
	r.workers++
	r.idle.Add(1)
	r.wg.Add(1)
	go r.worker()
}

var errInFlightCap = errors.New("in-flight cap reached; request not sent")

func (r *runner) complete(a Arrival, at time.Duration) {
	if a.closed != 0 {
		select {
		case r.completions <- completion{a, at}:
		default:
			// The pacer folds completions in continuously; a full channel
			// only happens at the very end, when nobody reads it any more.
			go func() {
				select {
				case r.completions <- completion{a, at}:
				case <-r.reqCtx.Done():
				}
			}()
		}
	}
}

func (r *runner) worker() {
	defer r.wg.Done()
	for a := range r.queue {
		r.idle.Add(-1)
		r.do(a)
		r.idle.Add(1)
	}
}

func (r *runner) deadline(a Arrival) time.Duration {
	f := a.SLOFactor
	if f == 0 {
		f = r.sloFac
	}
	if f > 0 {
		if b1, ok := r.b1[a.Model]; ok {
			return a.At + time.Duration(f*float64(b1))
		}
	}
	if d := r.cfg.SLO.Deadline.D(); d > 0 {
		return a.At + d
	}
	if r.w.DefaultSLO > 0 {
		return a.At + r.w.DefaultSLO
	}
	return 0
}

func (r *runner) newResult(a Arrival) *Result {
	res := r.resPool.Get().(*Result)
	chunks := res.Chunks[:0]
	*res = Result{Arrival: a, Chunks: chunks, Deadline: r.deadline(a)}
	return res
}

// finish is how asynchronous sends report (from the answer readers).
func (r *runner) finish(res *Result, err error) {
	if err != nil {
		res.Outcome = r.failure(err, errors.Is(err, context.DeadlineExceeded))
	}
	r.settle(res)
}

// failure classifies a request that ended in a transport error: cancelled
// when the run was over (or the request aborted), a timeout, or an error.
func (r *runner) failure(err error, timedOut bool) Outcome {
	switch {
	case r.reqCtx.Err() != nil || errors.Is(err, errAborted):
		return OutcomeCancelled
	case timedOut:
		return OutcomeTimeout
	}
	return OutcomeError
}

func (r *runner) do(a Arrival) {
	res := r.newResult(a)
	if r.stopping.Load() {
		res.Outcome, res.Done = OutcomeDropped, r.clock()
	} else {
		ctx, cancel := r.reqCtx, context.CancelFunc(nil)
		if !r.selfTimed {
			ctx, cancel = context.WithTimeout(r.reqCtx, r.timeout)
		}
		res.Sent = r.clock()
		err := r.target.Do(ctx, res, r.clock)
		timedOut := ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded)
		if cancel != nil {
			cancel()
		}
		if err != nil {
			res.Outcome = r.failure(err, timedOut)
		}
		if res.Done == 0 {
			res.Done = r.clock()
		}
	}
	r.settle(res)
}

// settle records a finished request and recycles its Result.
func (r *runner) settle(res *Result) {
	a := res.Arrival
	r.rec.Record(res)
	if r.opts.OnResult != nil {
		r.opts.OnResult(res)
	}
	r.complete(a, res.Done)
	if len(res.Chunks) > 1024 {
		res.Chunks = nil // don't pin large buffers in the pool
	}
	res.Err = nil
	r.resPool.Put(res)
	r.inflight.Add(-1)
}

// waitInflight lets requests in flight (and, with asynchronous sends, those
// still waiting for a connection) finish for up to d (pacer goroutine).
func (r *runner) waitInflight(d time.Duration) {
	deadline := time.Now().Add(d)
	for r.inflight.Load() > 0 && time.Now().Before(deadline) {
		r.flushPending()
		if len(r.pending) > 0 {
			r.nap(pendingPoll)
		} else {
			time.Sleep(time.Millisecond)
		}
	}
}

// calibrate measures each model's batch-1 latency: CalibrationRequests
// sequential requests per model (after one warm-up), median service time.
// Models are measured a few at a time.
func (r *runner) calibrate(ctx context.Context, models []string) (map[string]time.Duration, error) {
	n := r.cfg.SLO.CalibrationRequests
	if n <= 0 {
		n = DefaultCalibrationRequests
	}
	out := map[string]time.Duration{}
	var todo []string
	for _, m := range models {
		if d, ok := r.opts.Calibration[m]; ok && d > 0 {
			out[m] = d
		} else {
			todo = append(todo, m)
		}
	}
	if len(todo) == 0 {
		return out, nil
	}
	r.log.Info("calibrating batch-1 latency", "models", len(todo), "requests_each", n)
	start := time.Now()
	clock := func() time.Duration { return time.Since(start) }
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, m := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func(m string) {
			defer wg.Done()
			defer func() { <-sem }()
			var samples []time.Duration
			var last Result // the last failure
			for i := 0; i <= n && ctx.Err() == nil; i++ {
				res := &Result{Arrival: Arrival{Model: m}}
				cctx, cancel := context.WithTimeout(ctx, r.timeout)
				res.Sent = clock()
				err := r.target.Do(cctx, res, clock)
				cancel()
				if err == nil && res.Outcome == OutcomeOK {
					if i > 0 {
						samples = append(samples, res.Done-res.Sent)
					}
				} else {
					last = *res
				}
			}
			if len(samples) == 0 && ctx.Err() == nil {
				// Say what the target answered, and what may be wrong.
				why := errorKind(&last)
				if ex, ok := r.target.(explainer); ok {
					why = ex.explain(ctx, m, r.timeout)
				}
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("calibrating model %s: no successful request out of %d: %s", clip.Quote(m), n+1, why)
				}
				mu.Unlock()
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if len(samples) == 0 {
				return
			}
			sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
			out[m] = samples[len(samples)/2]
		}(m)
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return out, firstErr
}

// pacerPs counts the runs in this process whose pacer holds a P of its own.
var pacerPs struct {
	sync.Mutex
	runs, base int
}

// addPacerP gives the Go runtime one P more for the run's pacer, until the
// returned func is called. The pacer keeps its P while it naps in
// nanosleep(2) between arrivals (Go's timers would wake it up to a
// millisecond late), and the runtime hands a P held in a system call to
// other goroutines only after 20 µs to 10 ms. With one P per CPU, the
// answer readers then wait for the pacer's naps: on one CPU a run topped
// out at 25,000 requests/s with the CPU 44% idle, where two Ps sent
// 40,000/s at p99 lateness 0.08 ms; on two CPUs, 50,000/s had p99 9–49 ms
// with two Ps and 0.08–0.35 ms in three of four runs with three
// (docs/benchmarks.md). A GOMAXPROCS set in the environment is left alone,
// and so is a process that runs at a real-time policy as a whole (chrt):
// there every thread is SCHED_FIFO, a spinning one is never preempted by
// another, and with more Ps than CPUs a run confined to one CPU spun for
// minutes instead of 15 s.
func addPacerP() (release func()) {
	if os.Getenv("GOMAXPROCS") != "" || threadRealtime() {
		return func() {}
	}
	pacerPs.Lock()
	defer pacerPs.Unlock()
	if pacerPs.runs == 0 {
		pacerPs.base = runtime.GOMAXPROCS(0)
	}
	pacerPs.runs++
	runtime.GOMAXPROCS(pacerPs.base + pacerPs.runs)
	return func() {
		pacerPs.Lock()
		defer pacerPs.Unlock()
		pacerPs.runs--
		runtime.GOMAXPROCS(pacerPs.base + pacerPs.runs)
	}
}
