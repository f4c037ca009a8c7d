package trainlog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/results"
)

// DoneMarker is what metaseq logs when training finished.
const DoneMarker = "done training in"

// maxLine bounds one log line (limitio.Log): Parse refuses a longer line,
// Follow reports and skips it.
var maxLine = limitio.Log.Line

// ParseFile reads the log at path into c, as Parse, within limitio.Log's
// limits: a line longer than the limit is an error naming the file and
// the line, as is a path that is not a regular file (/dev/zero); both,
// and a file that cannot be opened, are bad input (errkind.ErrInvalid). It
// stops when ctx is done.
func ParseFile(ctx context.Context, path string, c *Collector) (errs []error, err error) {
	f, err := limitio.Open(ctx, path, limitio.Log)
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	defer f.Close()
	return Parse(f, c)
}

// Parse reads a whole log into c. Malformed stats lines are returned as
// errs (with line numbers) and skipped; err is for read failures.
func Parse(r io.Reader, c *Collector) (errs []error, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	n := 0
	for {
		line, rerr := readLine(br)
		if len(line) > 0 || rerr == nil {
			n++
			if e := c.addLine(line, n); e != nil {
				errs = append(errs, e)
			}
		}
		if rerr == io.EOF {
			return errs, nil
		}
		if rerr != nil {
			return errs, rerr
		}
	}
}

// readLine reads one line, dropping the part of overlong lines past maxLine.
func readLine(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		chunk, err := br.ReadSlice('\n')
		if b.Len() < maxLine {
			b.Write(chunk[:min(len(chunk), maxLine-b.Len())])
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return b.String(), err
	}
}

func (c *Collector) addLine(line string, n int) error {
	rec, ok, err := ParseLine(line)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.Line = n
		}
		return err
	}
	if ok {
		c.Add(rec)
	}
	return nil
}

// FollowOptions configure Follow.
type FollowOptions struct {
	// Sink receives the points as they are parsed (nil: only summarise).
	Sink results.Sink
	// Collector holds tags and accumulates records; nil makes a fresh one.
	Collector *Collector
	// Poll is how often a quiet log is checked for growth (default 250ms).
	Poll time.Duration
	// Done, when set, is asked at each quiet poll; once it returns true the
	// rest of the log is read and Follow returns (e.g. the job has ended).
	Done func() bool
	// StopAtDone makes Follow return after metaseq's "done training" line.
	StopAtDone bool
	// OnError sees malformed stats lines (default: ignored).
	OnError func(error)
}

// Result is what Follow saw.
type Result struct {
	Summary  Summary `json:"summary"`
	Points   int     `json:"points"`
	Finished bool    `json:"finished"` // the "done training" line was seen
}

// Follow tails the log at path, which may not exist yet, writing a point per
// stats line to the sink as it appears. It returns when ctx is cancelled
// (with ctx's error), when Done reports true, or at the "done training" line
// with StopAtDone. A log that shrinks (rotated or rewritten) is read again
// from the start. Points are flushed at every quiet poll, so a reader of the
// sink lags the log by at most one poll.
func Follow(ctx context.Context, path string, o FollowOptions) (Result, error) {
	if o.Collector == nil {
		o.Collector = &Collector{}
	}
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	var res Result
	finish := func(err error) (Result, error) {
		if o.Sink != nil {
			// Flush with a fresh context: cancellation is how a follow
			// normally ends, and what was parsed must still be stored.
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if ferr := o.Sink.Flush(fctx); ferr != nil && err == nil {
				err = fmt.Errorf("flush training points: %w", ferr)
			}
		}
		res.Summary = o.Collector.Summary()
		return res, err
	}
	wait := func() error {
		t := time.NewTimer(o.Poll)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}

	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var off int64
	var pending strings.Builder // a line without its newline yet
	over := false               // pending's line is longer than maxLine: skipped
	var batch []results.Point
	n := 0
	write := func() error {
		if o.Sink == nil || len(batch) == 0 {
			batch = batch[:0]
			return nil
		}
		err := o.Sink.Write(ctx, batch...)
		batch = batch[:0]
		if err == nil {
			err = o.Sink.Flush(ctx)
		}
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		if f == nil {
			var err error
			if _, err = limitio.Check(path, limitio.Log); err == nil {
				// O_NONBLOCK: a named pipe put there since the check
				// must not block the open.
				f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			}
			if errors.Is(err, fs.ErrNotExist) {
				if o.Done != nil && o.Done() {
					return finish(nil)
				}
				if err := wait(); err != nil {
					return finish(err)
				}
				continue
			}
			var le *limitio.Error
			if errors.As(err, &le) {
				return finish(err) // names the file
			}
			if err != nil {
				return finish(fmt.Errorf("follow %s: %w", path, err))
			}
			off = 0
		}
		k, rerr := f.ReadAt(buf, off)
		off += int64(k)
		data := buf[:k]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			end := i
			if i < 0 {
				end = len(data)
			}
			if pending.Len()+end > maxLine {
				over = true
			} else {
				pending.Write(data[:end])
			}
			if i < 0 {
				break
			}
			line := pending.String()
			pending.Reset()
			data = data[i+1:]
			n++
			if over {
				// The log belongs to a running job: report the line and
				// go on, rather than stop following.
				over = false
				if o.OnError != nil {
					o.OnError(&limitio.Error{Path: path, What: limitio.Log.What, Line: n, Limit: int64(maxLine)})
				}
				continue
			}
			rec, ok, perr := ParseLine(line)
			switch {
			case perr != nil:
				if o.OnError != nil {
					var pe *ParseError
					if errors.As(perr, &pe) {
						pe.Line = n
					}
					o.OnError(perr)
				}
			case ok:
				if p, inc := o.Collector.Add(rec); inc {
					batch = append(batch, p)
					res.Points++
				}
			case strings.Contains(line, DoneMarker):
				res.Finished = true
			}
		}
		if res.Finished && o.StopAtDone {
			if err := write(); err != nil {
				return finish(err)
			}
			return finish(nil)
		}
		if rerr != nil && rerr != io.EOF {
			return finish(fmt.Errorf("follow %s: %w", path, rerr))
		}
		if k == len(buf) {
			continue // more to read right away
		}
		// Quiet: store what we have, then check for the end.
		if err := write(); err != nil {
			if ctx.Err() != nil {
				return finish(ctx.Err())
			}
			return finish(fmt.Errorf("write training points: %w", err))
		}
		if st, err := f.Stat(); err == nil {
			cur, cerr := os.Stat(path)
			if st.Size() < off || (cerr == nil && !os.SameFile(st, cur)) {
				f.Close()
				f = nil // truncated or replaced: start over
				pending.Reset()
				over = false
				continue
			}
		}
		if o.Done != nil && o.Done() {
			// One more read: lines written just before the end.
			if k2, _ := f.ReadAt(buf[:1], off); k2 > 0 {
				continue
			}
			return finish(nil)
		}
		if err := wait(); err != nil {
			return finish(err)
		}
	}
}
