package results

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/gpuorch/gpuorch/internal/limitio"
)

// Spool is an on-disk queue of line-protocol points that could not be
// written to InfluxDB yet. It is a directory of append-only segment files
// (seg-<seq>.lp), each append fsync'd before it returns, replayed oldest
// first. A segment is deleted only after every line in it was delivered, so
// a crash at any moment loses nothing that Append acknowledged; it can at
// worst deliver a segment twice, which InfluxDB absorbs because a point is
// identified by its series and timestamp.
//
// One process at a time may use a spool directory (an flock on its lock
// file), so `gpuorch results push` cannot race a running task.
type Spool struct {
	dir        string
	lock       *os.File
	maxSegment int64

	mu          sync.Mutex
	active      *os.File // segment being appended to; nil when none
	activeSeq   uint64
	activeBytes int64
	nextSeq     uint64
	pending     int64            // lines in all segments on disk
	segLines    map[uint64]int64 // lines per segment
	delivered   map[uint64]int   // bytes of a segment already delivered (this process)
}

// ErrSpoolBusy means another process holds the spool directory.
var ErrSpoolBusy = errors.New("spool is in use by another gpuorch process")

const defaultSegmentBytes = 8 << 20

// OpenSpool opens (creating if needed) the spool in dir and locks it.
func OpenSpool(dir string) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool %s: %w", dir, ErrSpoolBusy)
		}
		return nil, fmt.Errorf("spool %s: lock: %w", dir, err)
	}
	s := &Spool{dir: dir, lock: lf, maxSegment: defaultSegmentBytes,
		segLines: map[uint64]int64{}, delivered: map[uint64]int{}}
	seqs, err := s.segments()
	if err != nil {
		s.Close()
		return nil, err
	}
	for _, seq := range seqs {
		n, err := countLines(s.segPath(seq))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("spool: %w", err)
		}
		s.segLines[seq] = n
		s.pending += n
		s.nextSeq = seq + 1
	}
	return s, nil
}

// countLines counts the complete lines of a segment, streamed within
// limitio.Metrics' limits.
func countLines(path string) (int64, error) {
	f, err := limitio.Open(context.Background(), path, limitio.Metrics)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	buf := make([]byte, 256<<10)
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// Pending is the number of points waiting in the spool.
func (s *Spool) Pending() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

func (s *Spool) segPath(seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("seg-%016d.lp", seq))
}

func (s *Spool) segments() ([]uint64, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var seqs []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, "seg-") || !strings.HasSuffix(name, ".lp") {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, "seg-"), ".lp"), 10, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// Append adds n lines (complete, '\n'-terminated) and fsyncs them.
func (s *Spool) Append(lines []byte, n int) error {
	if len(lines) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		f, err := os.OpenFile(s.segPath(s.nextSeq), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.active, s.activeSeq, s.activeBytes = f, s.nextSeq, 0
		s.nextSeq++
		syncDir(s.dir)
	}
	if _, err := s.active.Write(lines); err != nil {
		return fmt.Errorf("spool: write %s: %w", s.active.Name(), err)
	}
	if err := s.active.Sync(); err != nil {
		return fmt.Errorf("spool: fsync %s: %w", s.active.Name(), err)
	}
	s.activeBytes += int64(len(lines))
	s.segLines[s.activeSeq] += int64(n)
	s.pending += int64(n)
	if s.activeBytes >= s.maxSegment {
		s.sealLocked()
	}
	return nil
}

func (s *Spool) sealLocked() {
	if s.active != nil {
		s.active.Close()
		s.active = nil
	}
}

// Replay sends the spooled lines oldest first, at most batchLines lines per
// call of send, deleting each segment once all of it was sent. It stops at
// the first error and returns how many lines were delivered. Appends may
// continue while it runs; they are replayed too before it returns.
func (s *Spool) Replay(ctx context.Context, batchLines int, send func(ctx context.Context, lines []byte, n int) error) (int64, error) {
	var delivered int64
	for {
		s.mu.Lock()
		seqs, err := s.segments()
		s.mu.Unlock()
		if err != nil {
			return delivered, err
		}
		if len(seqs) == 0 {
			return delivered, nil
		}
		for _, seq := range seqs {
			n, err := s.replaySegment(ctx, seq, batchLines, send)
			delivered += n
			if err != nil {
				return delivered, err
			}
		}
	}
}

// replayBatchBytes bounds one replayed batch in memory, whatever the
// lines' length.
const replayBatchBytes = 4 << 20

// replaySegment streams one segment from where this process last got to,
// batchLines lines (at most replayBatchBytes) at a time, so replaying a
// large spool, or failing to while the server is down, holds one batch in
// memory, not the segment.
func (s *Spool) replaySegment(ctx context.Context, seq uint64, batchLines int, send func(context.Context, []byte, int) error) (int64, error) {
	path := s.segPath(seq)
	f, err := limitio.Open(ctx, path, limitio.Metrics)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	s.mu.Lock()
	off := int64(s.delivered[seq])
	s.mu.Unlock()
	// What the segment held when opened, from where this process got to
	// (lines appended since go in the next pass), within the limits.
	rest := io.NewSectionReader(f, off, max(f.Size()-off, 0))
	r := bufio.NewReaderSize(limitio.NewReader(ctx, rest, path, limitio.Metrics), 256<<10)
	var (
		sent  int64
		batch []byte
		n     int
		eof   bool
	)
	for !eof {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		batch, n = batch[:0], 0
		for n < batchLines && len(batch) < replayBatchBytes {
			line, err := r.ReadSlice('\n')
			if err == bufio.ErrBufferFull { // a line longer than the buffer
				batch = append(batch, line...)
				continue
			}
			if err != nil && err != io.EOF {
				return sent, err // a line over the limit, or cancelled
			}
			if err != nil {
				// At EOF, a line without its '\n' is either still being
				// appended (the active segment; the next pass gets it) or
				// torn by a crash (an append never acknowledged): not sent.
				batch = batch[:len(batch)-lastPartial(batch)]
				eof = true
				break
			}
			batch = append(batch, line...)
			n++
		}
		if n == 0 {
			break
		}
		if err := send(ctx, batch, n); err != nil {
			return sent, err
		}
		sent += int64(n)
		off += int64(len(batch))
		s.mu.Lock()
		s.delivered[seq] = int(off)
		s.pending -= int64(n)
		s.segLines[seq] -= int64(n)
		s.mu.Unlock()
	}
	// The active segment is replayed in place (a failed attempt must not
	// leave a new small file behind each time); it is sealed and removed
	// only when nothing was appended while it was being sent.
	s.mu.Lock()
	if s.active != nil && s.activeSeq == seq {
		if s.activeBytes > off {
			s.mu.Unlock()
			return sent, nil // more arrived: the next pass sends it
		}
		s.sealLocked()
	}
	s.mu.Unlock()
	if err := os.Remove(path); err != nil {
		return sent, fmt.Errorf("spool: %w", err)
	}
	syncDir(s.dir)
	s.mu.Lock()
	s.pending -= s.segLines[seq] // lines of a torn tail, if any
	delete(s.delivered, seq)
	delete(s.segLines, seq)
	s.mu.Unlock()
	return sent, nil
}

// lastPartial is the length of b's trailing bytes after its last '\n'.
func lastPartial(b []byte) int { return len(b) - len(completeLines(b)) }

// Close releases the spool; what is pending stays on disk.
func (s *Spool) Close() error {
	s.mu.Lock()
	s.sealLocked()
	s.mu.Unlock()
	if s.lock != nil {
		err := s.lock.Close() // releases the flock
		s.lock = nil
		return err
	}
	return nil
}

func completeLines(b []byte) []byte {
	i := bytes.LastIndexByte(b, '\n')
	return b[:i+1]
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
