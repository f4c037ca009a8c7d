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
//     a bounded queue; it never waits for the network. When the queue is
//     full the batch goes to the on-disk spool instead, so memory stays
//     bounded and nothing is dropped.
//   - One sender goroutine writes batches with the client's blocking writer,
//     which reports every HTTP error (the async writer silently drops 400
//     partial writes).
//   - A batch that fails for a transient reason (server down, timeout, 429,
//     5xx) goes to the spool; once anything is spooled, later batches follow
//     it there so the order is kept, and the sender replays the spool with
//     backoff until it is empty.
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

	mu    sync.Mutex
	buf   []byte
	bufN  int
	close bool

	qclosed bool

	qmu   sync.RWMutex // held for reading while sending on queue; Close takes it to close queue
	queue chan sinkBatch
	done  chan struct{}

	errMu sync.Mutex
	errs  []error

	written, spooled, rejected atomic.Int64
}

type sinkBatch struct {
	data  []byte
	n     int
	flush chan struct{} // a flush marker when non-nil
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
		queue: make(chan sinkBatch, cfg.QueueBatches),
		done:  make(chan struct{}),
	}
	go s.run()
	return s, nil
}

// Write adds points to the current batch. It does not wait for InfluxDB; it
// returns an error only for points that cannot be encoded or a spool that
// cannot be written.
func (s *InfluxSink) Write(ctx context.Context, pts ...Point) error {
	var full []sinkBatch
	s.mu.Lock()
	if s.close {
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

// enqueue hands a batch to the sender, or to the spool when the queue is
// full, so the caller never waits on the network.
func (s *InfluxSink) enqueue(b sinkBatch) error {
	s.qmu.RLock()
	defer s.qmu.RUnlock()
	if s.queueClosed() {
		return s.spoolBatch(b)
	}
	select {
	case s.queue <- b:
		return nil
	default:
	}
	return s.spoolBatch(b)
}

func (s *InfluxSink) spoolBatch(b sinkBatch) error {
	if err := s.spool.Append(b.data, b.n); err != nil {
		return fmt.Errorf("influxdb sink: %w", err)
	}
	s.spooled.Add(int64(b.n))
	return nil
}

// queueClosed is called with qmu held.
func (s *InfluxSink) queueClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return s.qclosed
	}
}

// Flush writes or spools everything written so far, and returns the
// InfluxDB errors (4xx) seen since the last Flush.
func (s *InfluxSink) Flush(ctx context.Context) error {
	s.mu.Lock()
	if s.close {
		s.mu.Unlock()
		return s.takeErrs()
	}
	var pending sinkBatch
	if s.bufN > 0 {
		pending = s.takeLocked()
	}
	s.mu.Unlock()
	marker := sinkBatch{flush: make(chan struct{})}
	s.qmu.RLock()
	if s.queueClosed() {
		s.qmu.RUnlock()
		return errors.Join(s.spoolBatch(pending), s.takeErrs())
	}
	for _, b := range []sinkBatch{pending, marker} {
		if b.n == 0 && b.flush == nil {
			continue
		}
		select {
		case s.queue <- b:
		case <-ctx.Done():
			s.qmu.RUnlock()
			if b.n > 0 { // keep it rather than lose it
				if err := s.spoolBatch(b); err != nil {
					return err
				}
			}
			return ctx.Err()
		}
	}
	s.qmu.RUnlock()
	select {
	case <-marker.flush:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.takeErrs()
}

// Close flushes, tries once more to empty the spool, and stops the sender.
// Points still spooled stay on disk for the next run or `results push`; a
// warning says so. It returns the 4xx errors not yet returned.
func (s *InfluxSink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.Timeout+5*time.Second)
	defer cancel()
	err := s.Flush(ctx)
	s.mu.Lock()
	if s.close {
		s.mu.Unlock()
		return nil
	}
	s.close = true
	s.mu.Unlock()
	s.qmu.Lock()
	s.qclosed = true
	close(s.queue)
	s.qmu.Unlock()
	<-s.done
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

// run is the sender goroutine.
func (s *InfluxSink) run() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.FlushInterval)
	defer tick.Stop()
	var (
		backoff   time.Duration
		nextRetry time.Time // zero: replay at once
		paused    bool      // auth or database problem: no automatic replay
	)
	replay := func(final bool) {
		if s.spool.Pending() == 0 || paused || (!final && time.Now().Before(nextRetry)) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		_, err := s.spool.Replay(ctx, s.cfg.BatchSize, func(ctx context.Context, b []byte, n int) error {
			err := s.send(ctx, b, n)
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
		cancel()
		if err == nil {
			backoff, nextRetry = 0, time.Time{}
			return
		}
		var we *writeError
		if errors.As(err, &we) && we.kind == failConfig {
			paused = true
			s.addErr(err)
			return
		}
		backoff = min(max(2*backoff, 250*time.Millisecond), s.cfg.RetryMax)
		nextRetry = time.Now().Add(backoff)
	}
	handle := func(b sinkBatch) {
		if b.n == 0 {
			return
		}
		if s.spool.Pending() > 0 {
			if err := s.spool.Append(b.data, b.n); err != nil {
				s.addErr(err) // disk full: nothing else can keep the batch
				return
			}
			s.spooled.Add(int64(b.n))
			replay(false)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		err := s.send(ctx, b.data, b.n)
		cancel()
		if err == nil {
			s.written.Add(int64(b.n))
			return
		}
		var we *writeError
		if errors.As(err, &we) && we.kind == failRejected {
			s.addErr(err)
			return
		}
		if errors.As(err, &we) && we.kind == failConfig {
			paused = true
			s.addErr(err)
		} else {
			slog.Warn("influxdb unavailable; spooling points", "err", err, "spool", s.spool.Dir())
			backoff = min(max(2*backoff, 250*time.Millisecond), s.cfg.RetryMax)
			nextRetry = time.Now().Add(backoff)
		}
		if err := s.spool.Append(b.data, b.n); err != nil {
			s.addErr(err)
			return
		}
		s.spooled.Add(int64(b.n))
	}
	flushPartial := func() {
		s.mu.Lock()
		var b sinkBatch
		if s.bufN > 0 {
			b = s.takeLocked()
		}
		s.mu.Unlock()
		handle(b)
	}
	for {
		select {
		case b, ok := <-s.queue:
			if !ok {
				flushPartial()
				replay(true)
				return
			}
			if b.flush != nil {
				replay(false)
				close(b.flush)
				continue
			}
			handle(b)
		case <-tick.C:
			flushPartial()
			replay(false)
		}
	}
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
