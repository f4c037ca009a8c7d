package results

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
)

// InfluxSink writes points to InfluxDB in batches, never losing one:
//
//   - Write encodes points into the current batch and hands full batches to
//     a bounded queue; it never waits for the network, only for room in the
//     queue, and at most EnqueueWait (1 s): then the batch goes to the
//     on-disk spool instead, so memory stays bounded and nothing is dropped.
//   - Concurrency sender goroutines write batches with the client's
//     blocking writer,
//     which reports every HTTP error (the async writer silently drops 400
//     partial writes).
//   - A batch that fails for a transient reason (server down, timeout, 429,
//     5xx) goes to the spool, and so do later batches while the sink backs
//     off; the spool is replayed, oldest first, with backoff until it is
//     empty. Every point carries its timestamp, so the order in which
//     spooled and direct batches arrive does not matter.
//   - A 400 (unparsable point, partial write, type conflict) is never
//     retried: the batch is kept in <spool>/rejected-*.lp and the server's
//     message is returned by Flush and Close and logged.
//   - 401/403/404 (token, permission, database) are configuration problems:
//     the batch is spooled, automatic replay pauses, and the error is
//     returned; `gpuorch results push` delivers the spool once it is fixed.
//
// Points without a timestamp get one at Write, so a replay overwrites
// rather than duplicates.
type InfluxSink struct {
	cfg    InfluxConfig
	client influxdb2.Client
	w      api.WriteAPIBlocking
	spool  *Spool

	mu     sync.Mutex // guards buf, bufN, closed
	buf    []byte
	bufN   int
	closed bool

	qmu      sync.RWMutex // held for reading while sending on queue; Close takes it to close queue
	qclosed  bool
	queue    chan sinkBatch
	inflight atomic.Int64 // batches enqueued and not yet written or spooled
	senders  sync.WaitGroup
	stopTick chan struct{}
	tickDone chan struct{}

	replayMu  sync.Mutex // one replay at a time
	stateMu   sync.Mutex // guards backoff, nextRetry, paused
	backoff   time.Duration
	nextRetry time.Time // zero: replay at once
	paused    bool      // auth or database problem: no automatic replay
	failing   bool      // a transient failure was logged; cleared (and logged) on recovery

	errMu sync.Mutex
	errs  []error

	written, spooled, rejected atomic.Int64
}

type sinkBatch struct {
	data []byte
	n    int
}

// SinkStats counts points by fate.
type SinkStats struct {
	Written  int64 `json:"written"`  // acknowledged by InfluxDB (first try or replay)
	Spooled  int64 `json:"spooled"`  // went through the spool
	Rejected int64 `json:"rejected"` // refused with a 4xx other than auth/database
	Pending  int64 `json:"pending"`  // in the spool now
}

// NewInfluxClient makes a client for cfg with the client library's own
// logging off (gpuorch reports errors itself, without the token).
func NewInfluxClient(cfg InfluxConfig) influxdb2.Client {
	cfg = cfg.withDefaults()
	opts := influxdb2.DefaultOptions().
		SetLogLevel(0).
		SetPrecision(time.Nanosecond).
		SetBatchSize(uint(cfg.BatchSize)).
		SetHTTPRequestTimeout(uint((cfg.Timeout + time.Second - 1) / time.Second))
	return influxdb2.NewClientWithOptions(cfg.URL, cfg.Token.Reveal(), opts)
}

// NewInfluxSink starts a sink writing to cfg with its spool in spoolDir.
// Points already in the spool (from a previous run) are replayed first.
func NewInfluxSink(cfg InfluxConfig, spoolDir string) (*InfluxSink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	sp, err := OpenSpool(spoolDir)
	if err != nil {
		return nil, err
	}
	c := NewInfluxClient(cfg)
	s := &InfluxSink{
		cfg: cfg, client: c, w: c.WriteAPIBlocking(cfg.Org, cfg.Bucket), spool: sp,
		queue:    make(chan sinkBatch, cfg.QueueBatches),
		stopTick: make(chan struct{}),
		tickDone: make(chan struct{}),
	}
	for i := 0; i < cfg.Concurrency; i++ {
		s.senders.Add(1)
		go s.sender()
	}
	go s.ticker()
	return s, nil
}

// Write adds points to the current batch. It does not wait for InfluxDB
// (at most EnqueueWait for room in the queue, then the batch is spooled);
// it returns an error only for points that cannot be encoded or a spool
// that cannot be written.
func (s *InfluxSink) Write(ctx context.Context, pts ...Point) error {
	var full []sinkBatch
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("influxdb sink: write after close")
	}
	now := time.Now()
	var encErr error
	for _, p := range pts {
		if p.Time.IsZero() {
			p.Time = now
		}
		b, err := AppendLine(s.buf, p)
		if err != nil {
			encErr = errors.Join(encErr, err)
			continue
		}
		s.buf, s.bufN = b, s.bufN+1
		if s.bufN >= s.cfg.BatchSize {
			full = append(full, s.takeLocked())
		}
	}
	s.mu.Unlock()
	for _, b := range full {
		if err := s.enqueue(b); err != nil {
			return err
		}
	}
	return encErr
}

func (s *InfluxSink) takeLocked() sinkBatch {
	b := sinkBatch{data: s.buf, n: s.bufN}
	s.buf = make([]byte, 0, len(b.data)+len(b.data)/8)
	s.bufN = 0
	return b
}

func (s *InfluxSink) takePartial() sinkBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bufN == 0 {
		return sinkBatch{}
	}
	return s.takeLocked()
}

// enqueue hands a batch to the senders, waiting at most EnqueueWait for
// room; past that (server down or slower than the producer) the batch goes
// to the spool, so memory stays bounded and the caller is not held up.
func (s *InfluxSink) enqueue(b sinkBatch) error {
	if b.n == 0 {
		return nil
	}
	s.qmu.RLock()
	defer s.qmu.RUnlock()
	if s.qclosed {
		return s.spoolBatch(b)
	}
	s.inflight.Add(1)
	select {
	case s.queue <- b:
		return nil
	default:
	}
	t := time.NewTimer(s.cfg.EnqueueWait)
	defer t.Stop()
	select {
	case s.queue <- b:
		return nil
	case <-t.C:
	}
	s.inflight.Add(-1)
	return s.spoolBatch(b)
}

func (s *InfluxSink) spoolBatch(b sinkBatch) error {
	if err := s.spool.Append(b.data, b.n); err != nil {
		err = fmt.Errorf("influxdb sink: %w", err)
		s.addErr(err)
		return err
	}
	s.spooled.Add(int64(b.n))
	return nil
}

// Flush writes or spools everything written so far, and returns the
// InfluxDB errors (4xx) seen since the last Flush.
func (s *InfluxSink) Flush(ctx context.Context) error {
	if err := s.enqueue(s.takePartial()); err != nil {
		return err
	}
	for s.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return s.takeErrs()
}

// Close flushes, tries once more to empty the spool, and stops the sink.
// Points still spooled stay on disk for the next run or `results push`; a
// warning says so. It returns the 4xx errors not yet returned.
func (s *InfluxSink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stopTick)
	<-s.tickDone
	err := s.enqueue(s.takePartial())
	s.qmu.Lock()
	s.qclosed = true
	close(s.queue)
	s.qmu.Unlock()
	s.senders.Wait()
	s.replay(true)
	if n := s.spool.Pending(); n > 0 {
		slog.Warn("influxdb: points left in the spool; they are replayed by the next run or `gpuorch results push`",
			"points", n, "spool", s.spool.Dir(), "url", s.cfg.URL)
	}
	s.client.Close()
	return errors.Join(err, s.takeErrs(), s.spool.Close())
}

// Stats returns the counts so far.
func (s *InfluxSink) Stats() SinkStats {
	return SinkStats{Written: s.written.Load(), Spooled: s.spooled.Load(), Rejected: s.rejected.Load(), Pending: s.spool.Pending()}
}

func (s *InfluxSink) addErr(err error) {
	slog.Error("influxdb write", "err", err)
	s.errMu.Lock()
	if len(s.errs) < 20 {
		s.errs = append(s.errs, err)
	}
	s.errMu.Unlock()
}

func (s *InfluxSink) takeErrs() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	err := errors.Join(s.errs...)
	s.errs = nil
	return err
}

func (s *InfluxSink) ticker() {
	defer close(s.tickDone)
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopTick:
			return
		case <-t.C:
			if err := s.enqueue(s.takePartial()); err != nil {
				s.addErr(err)
			}
			s.replay(false)
		}
	}
}

func (s *InfluxSink) sender() {
	defer s.senders.Done()
	for b := range s.queue {
		s.handle(b)
		s.inflight.Add(-1)
		s.replay(false)
	}
}

func (s *InfluxSink) failed(kind failKind) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if kind == failConfig {
		s.paused = true
		return
	}
	s.backoff = min(max(2*s.backoff, 250*time.Millisecond), s.cfg.RetryMax)
	s.nextRetry = time.Now().Add(s.backoff)
}

// replay sends the spool when it is due. final ignores the backoff (Close).
func (s *InfluxSink) replay(final bool) {
	if s.spool.Pending() == 0 {
		return
	}
	s.stateMu.Lock()
	due := !s.paused && (final || !time.Now().Before(s.nextRetry))
	s.stateMu.Unlock()
	if !due || !s.replayMu.TryLock() {
		return
	}
	defer s.replayMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := s.spool.Replay(ctx, s.cfg.BatchSize, func(ctx context.Context, b []byte, n int) error {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
		err := s.send(wctx, b, n)
		var we *writeError
		if errors.As(err, &we) && we.kind == failRejected {
			s.addErr(err) // kept in a rejected-*.lp file; replay goes on
			return nil
		}
		if err == nil {
			s.written.Add(int64(n))
		}
		return err
	})
	if err == nil {
		s.stateMu.Lock()
		s.backoff, s.nextRetry = 0, time.Time{}
		if s.failing {
			s.failing = false
			slog.Info("influxdb reachable again; spool delivered", "url", s.cfg.URL)
		}
		s.stateMu.Unlock()
		return
	}
	var we *writeError
	if errors.As(err, &we) {
		if we.kind == failConfig {
			s.addErr(err)
		}
		s.failed(we.kind)
		return
	}
	s.failed(failTransient)
}

// handle writes one batch, or spools it.
func (s *InfluxSink) handle(b sinkBatch) {
	if b.n == 0 {
		return
	}
	// While the server is failing (backing off, or paused on an auth or
	// database error), do not wait for another timeout: spool at once.
	// Order between spooled and direct batches does not matter: every
	// point carries its timestamp.
	s.stateMu.Lock()
	open := s.paused || time.Now().Before(s.nextRetry)
	s.stateMu.Unlock()
	if open {
		s.spoolBatch(b)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	err := s.send(ctx, b.data, b.n)
	cancel()
	if err == nil {
		s.written.Add(int64(b.n))
		s.stateMu.Lock()
		if s.failing && s.spool.Pending() == 0 {
			s.failing = false
			slog.Info("influxdb reachable again", "url", s.cfg.URL)
		}
		s.stateMu.Unlock()
		return
	}
	var we *writeError
	if !errors.As(err, &we) {
		we = &writeError{kind: failTransient, msg: err.Error(), points: b.n, err: err}
	}
	switch we.kind {
	case failRejected:
		s.addErr(err)
		return
	case failConfig:
		s.addErr(err)
	default:
		s.stateMu.Lock()
		first := !s.failing
		s.failing = true
		s.stateMu.Unlock()
		if first { // once per outage, not once per batch
			slog.Warn("influxdb unavailable; spooling points until it is back", "err", err, "spool", s.spool.Dir())
		}
	}
	s.failed(we.kind)
	s.spoolBatch(b)
}

type failKind int

const (
	failTransient failKind = iota // retry later: network, timeout, 429, 5xx
	failRejected                  // the points themselves: 400 and other 4xx
	failConfig                    // 401, 403, 404: token, permission, database
)

type writeError struct {
	kind   failKind
	status int
	msg    string
	points int
	err    error
}

func (e *writeError) Error() string {
	switch e.kind {
	case failRejected:
		return fmt.Sprintf("influxdb rejected %d points (HTTP %d): %s", e.points, e.status, e.msg)
	case failConfig:
		return fmt.Sprintf("influxdb refused the write (HTTP %d): %s%s", e.status, e.msg, configHint(e.status))
	}
	if e.status != 0 {
		return fmt.Sprintf("influxdb write failed (HTTP %d): %s", e.status, e.msg)
	}
	return fmt.Sprintf("influxdb write failed: %s", e.msg)
}

func (e *writeError) Unwrap() error { return e.err }

func configHint(status int) string {
	switch status {
	case 401:
		return " — check the token (GPUORCH_INFLUX_TOKEN or token_file; user:password on InfluxDB 1.8)"
	case 403:
		return " — the token may not write to this bucket"
	case 404:
		return " — create the database (InfluxDB 1.8: CREATE DATABASE <db>) or fix the bucket"
	}
	return ""
}

// send writes one batch and classifies the failure. Rejected batches are
// saved next to the spool so they can be inspected.
func (s *InfluxSink) send(ctx context.Context, data []byte, n int) error {
	err := s.w.WriteRecord(ctx, string(data))
	if err == nil {
		return nil
	}
	we := classifyWriteError(err, n)
	if we.kind == failRejected {
		s.rejected.Add(int64(n))
		name := filepath.Join(s.spool.Dir(), fmt.Sprintf("rejected-%d.lp", time.Now().UnixNano()))
		if werr := os.WriteFile(name, data, 0o600); werr == nil {
			we.msg += " (batch kept in " + name + ")"
		}
	}
	return we
}

func classifyWriteError(err error, n int) *writeError {
	var he *ihttp.Error
	if errors.As(err, &he) {
		status := he.StatusCode
		msg := he.Message
		if msg == "" && he.Err != nil {
			msg = he.Err.Error()
		}
		if msg == "" {
			msg = he.Error()
		}
		we := &writeError{status: status, msg: msg, points: n, err: err}
		switch {
		case status == 401 || status == 403 || status == 404:
			we.kind = failConfig
		case status == 429 || status == 0 || status >= 500:
			we.kind = failTransient
		case status >= 400:
			we.kind = failRejected
		}
		return we
	}
	return &writeError{kind: failTransient, msg: err.Error(), points: n, err: err}
}
