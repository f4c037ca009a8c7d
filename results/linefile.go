package results

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// LineFile is the local store's Sink: it appends points in line protocol to
// one file (a task's metrics.lp). Each Write call hands its points to the
// operating system in one write(2), so a killed process loses nothing it
// has written; Flush also fsyncs, so that a machine crash loses nothing
// written before the last Flush. It is safe for concurrent use.
type LineFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
	w    *bufio.Writer
	buf  []byte
}

// OpenLineFile opens path for appending, creating it (and its directory) if
// needed. If a previous writer died in the middle of a line, a newline is
// added first so that the torn line stays the only malformed one.
func OpenLineFile(path string) (*LineFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open metrics file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open metrics file %s: %w", path, err)
	}
	lf := &LineFile{path: path, f: f, w: bufio.NewWriterSize(f, 64<<10)}
	if torn, err := endsMidLine(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open metrics file %s: %w", path, err)
	} else if torn {
		lf.w.WriteByte('\n')
	}
	return lf, nil
}

func endsMidLine(f *os.File) (bool, error) {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return false, err
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], st.Size()-1); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return last[0] != '\n', nil
}

// Path is the file's path.
func (l *LineFile) Path() string { return l.path }

// Write encodes pts and writes them to the file (without fsync). A point
// that cannot be encoded (no fields, a NaN) is skipped and reported; the
// others are still written.
func (l *LineFile) Write(ctx context.Context, pts ...Point) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("write %s: file is closed", l.path)
	}
	var errs []error
	for _, p := range pts {
		b, err := AppendLine(l.buf[:0], p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		l.buf = b
		if _, err := l.w.Write(b); err != nil {
			return fmt.Errorf("write %s: %w", l.path, err)
		}
	}
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("write %s: %d point(s) skipped: %w", l.path, len(errs), errors.Join(errs...))
	}
	return nil
}

// Flush writes buffered points to the file and fsyncs it.
func (l *LineFile) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked()
}

func (l *LineFile) flushLocked() error {
	if l.f == nil {
		return fmt.Errorf("flush %s: file is closed", l.path)
	}
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("flush %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", l.path, err)
	}
	return nil
}

// Close flushes and closes the file. Closing twice is not an error.
func (l *LineFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	ferr := l.flushLocked()
	cerr := l.f.Close()
	l.f = nil
	if ferr != nil {
		return ferr
	}
	if cerr != nil {
		return fmt.Errorf("close %s: %w", l.path, cerr)
	}
	return nil
}

var _ Sink = (*LineFile)(nil)
