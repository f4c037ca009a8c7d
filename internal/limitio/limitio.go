// Package limitio reads gpuorch's input files within limits: a size and a
// line length for each kind of file (Limits), so that no input — /dev/zero,
// a 10 GB file where a config was meant, a line that never ends — makes
// gpuorch grow its memory without bound or read for ever.
//
// A path must name a regular file: a directory, a device (/dev/zero,
// /dev/tty), a named pipe or a socket is refused before anything is read,
// with one exception, the null device (/dev/null), which reads as an empty
// file (GPUORCH_CONFIG=/dev/null is the usual way to say "no config").
// Readers check their context at every read, so Ctrl-C or SIGTERM ends
// even the longest read at once. Every error names the file and, for a
// limit, the limit; all are bad input (errkind.ErrInvalid, exit 2), except
// the operating system's own (a missing file stays fs.ErrNotExist).
//
// ReadFile reads a whole document; Open and NewReader give an io.Reader
// for streaming parsers (CSV, line protocol, JSON lines); ReadAll reads
// standard input. The limits of each kind of file are listed in
// docs/cli.md ("Limits").
package limitio

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
	"sync"
	"syscall"

	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
)

// Limits bound one kind of input file.
type Limits struct {
	// What such a file is, for messages: "config file", "dataset".
	What string
	// Size is the most bytes the file may hold; 0 means no limit (a log
	// that grows while it is read).
	Size int64
	// Line is the longest line allowed, in bytes, without its newline.
	Line int
}

// As is l for a file that messages call what ("spec", "key file"): the
// same limits, a more precise name.
func (l Limits) As(what string) Limits {
	l.What = what
	return l
}

// The kinds of input file and their limits. Each is far above what a real
// file of its kind needs, and low enough that a file at the limit still
// fits in memory.
var (
	// Config: files people write — experiment, training and benchmark
	// specs (from a file or stdin), step payloads, workflow and model
	// files, pools files, sim-server configs, the InfluxDB config file, the
	// credentials file, PGP key files, and Slurm's slurm.conf and pools
	// include file.
	Config = Limits{What: "config file", Size: 16 << 20, Line: 1 << 20}
	// Small: a token file, a slice limits file, one answer on stdin.
	Small = Limits{What: "small file", Size: 64 << 10, Line: 32 << 10}
	// Record: what gpuorch writes and reads back as a whole — plan.json,
	// state.json, task manifests, summary.json, bench.json, workflow state.
	Record = Limits{What: "experiment record", Size: 256 << 20, Line: 16 << 20}
	// Dataset: prompt files (bench datasets, target.prompt_files); the
	// ShareGPT file vLLM's benchmark uses is 642 MB.
	Dataset = Limits{What: "dataset", Size: 1 << 30, Line: 16 << 20}
	// Trace: one day of the Azure Functions trace (a row is at most 4
	// hashes and 1440 counts).
	Trace = Limits{What: "Azure trace file", Size: 1 << 30, Line: 64 << 10}
	// Metrics: line protocol and JSON lines gpuorch appends to and reads
	// back — metrics.lp, prediction.lp, InfluxDB spool segments,
	// snapshots.jsonl, requests.jsonl. They are streamed, never held whole.
	Metrics = Limits{What: "metrics file", Size: 4 << 30, Line: 1 << 20}
	// Log: a training log, which grows while it is followed: only its lines
	// are bounded.
	Log = Limits{What: "training log", Size: 0, Line: 1 << 20}
)

// Error is an input file that is not a regular file, or over a limit.
// It is bad input: errors.Is(err, errkind.ErrInvalid) holds.
type Error struct {
	Path  string // the file, or "<stdin>"
	What  string // the kind of file (Limits.What)
	Line  int    // the over-long line (1-based); 0 otherwise
	Limit int64  // the limit exceeded (bytes); 0 for a file that is not regular
	Mode  fs.FileMode
}

func (e *Error) Error() string {
	p := clip.String(e.Path)
	switch {
	case e.Limit == 0:
		return fmt.Sprintf("%s: not a regular file but %s; want %s", p, describe(e.Mode), article(e.What))
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: line longer than %s, the limit for %s", p, e.Line, Bytes(e.Limit), article(e.What))
	}
	return fmt.Sprintf("%s: more than %s, the limit for %s", p, Bytes(e.Limit), article(e.What))
}

// article puts "a" or "an" before what.
func article(what string) string {
	if what != "" && strings.ContainsRune("aeiouAEIOU", rune(what[0])) {
		return "an " + what
	}
	return "a " + what
}

// Is makes every Error bad input.
func (e *Error) Is(target error) bool { return target == errkind.ErrInvalid }

func describe(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "an irregular file"
}

// Bytes formats a limit: "16 MiB", "64 KiB", "1 GiB", "100 bytes".
func Bytes(n int64) string {
	for _, u := range []struct {
		shift int
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

var devNull = sync.OnceValue(func() fs.FileInfo {
	fi, _ := os.Stat(os.DevNull)
	return fi
})

// isNull reports whether fi is the null device.
func isNull(fi fs.FileInfo) bool {
	n := devNull()
	return n != nil && os.SameFile(fi, n)
}

// Check refuses path unless it is a regular file (or the null device)
// within lim's size; it opens nothing. It returns the file's size.
func Check(path string, lim Limits) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, clipPath(err)
	}
	return check(path, fi, lim)
}

func check(path string, fi fs.FileInfo, lim Limits) (int64, error) {
	if !fi.Mode().IsRegular() {
		if isNull(fi) {
			return 0, nil
		}
		return 0, &Error{Path: path, What: lim.What, Mode: fi.Mode()}
	}
	if lim.Size > 0 && fi.Size() > lim.Size {
		return 0, &Error{Path: path, What: lim.What, Limit: lim.Size}
	}
	return fi.Size(), nil
}

// clipPath shortens the path an *fs.PathError echoes (a file name can be
// as long as a user likes); the error keeps its identity (fs.ErrNotExist…).
func clipPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		pe.Path = clip.String(pe.Path)
	}
	return err
}

// File is an open input file whose reads are limited (see Reader).
type File struct {
	*Reader
	f    *os.File
	size int64
}

// Close closes the file.
func (f *File) Close() error {
	if f.f == nil {
		return nil
	}
	return f.f.Close()
}

// Size is the file's size when it was opened.
func (f *File) Size() int64 { return f.size }

// ReadAt reads at an offset, around the limits: for a bounded read, such
// as the last few kilobytes of a file that grows.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if f.f == nil { // the null device
		return 0, io.EOF
	}
	return f.f.ReadAt(p, off)
}

// Open opens path for a streaming read within lim, refusing anything but a
// regular file (the null device reads as empty) and a file already over
// the size limit.
func Open(ctx context.Context, path string, lim Limits) (*File, error) {
	if _, err := Check(path, lim); err != nil {
		return nil, err
	}
	// O_NONBLOCK: if path became a named pipe since Check, opening it must
	// not wait for a writer; the second check below refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, clipPath(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, clipPath(err)
	}
	size, err := check(path, fi, lim)
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() { // the null device
		f.Close()
		return &File{Reader: NewReader(ctx, bytes.NewReader(nil), path, lim)}, nil
	}
	return &File{Reader: NewReader(ctx, f, path, lim), f: f, size: size}, nil
}

// ReadFile reads a whole file within lim. A document (a config, a record)
// is small and never waits for a writer, so it takes no context; a large
// one should use ReadFileContext.
func ReadFile(path string, lim Limits) ([]byte, error) {
	return ReadFileContext(context.Background(), path, lim)
}

// ReadFileContext is ReadFile that stops when ctx is done.
func ReadFileContext(ctx context.Context, path string, lim Limits) ([]byte, error) {
	f, err := Open(ctx, path, lim)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The size at open (within the limit), plus a byte to see EOF (or
	// growth) without a reallocation.
	return readAll(f.Reader, f.size+1)
}

func readAll(r io.Reader, hint int64) ([]byte, error) {
	b := make([]byte, 0, max(hint, 512))
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// ReadAll reads r (standard input, say) to its end within lim; name stands
// for it in errors ("<stdin>"). The reads run in a goroutine, so that a
// read that waits (a terminal, a pipe whose writer is silent) does not keep
// the caller once ctx is done: ReadAll then returns ctx's error at once,
// and the goroutine ends with the process.
func ReadAll(ctx context.Context, r io.Reader, name string, lim Limits) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := readAll(NewReader(ctx, r, name, lim), 0)
		done <- result{b, err}
	}()
	select {
	case res := <-done:
		return res.b, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// LineReader reads standard input a line at a time (answers to questions,
// a secret) within lim. A read that waits (a terminal) does not keep the
// caller once ctx is done: ReadLine then returns ctx's error.
type LineReader struct {
	ctx     context.Context
	br      *bufio.Reader
	pending chan lineResult // the read in flight, if any
}

type lineResult struct {
	s   string
	err error
}

// NewLineReader reads lines of r, which name stands for in errors.
func NewLineReader(ctx context.Context, r io.Reader, name string, lim Limits) *LineReader {
	return &LineReader{ctx: ctx, br: bufio.NewReader(NewReader(ctx, r, name, lim))}
}

// ReadLine returns the next line with its newline, as bufio's ReadString:
// the last line may come without one, with io.EOF.
func (l *LineReader) ReadLine() (string, error) {
	if l.pending == nil {
		ch := make(chan lineResult, 1)
		go func() {
			s, err := l.br.ReadString('\n')
			ch <- lineResult{s, err}
		}()
		l.pending = ch
	}
	select {
	case r := <-l.pending:
		l.pending = nil
		return r.s, r.err
	case <-l.ctx.Done():
		return "", l.ctx.Err()
	}
}

// chunk bounds one read, so that the context is checked at least every
// chunk bytes.
const chunk = 1 << 20

// Reader passes through another reader's bytes as long as they keep within
// the size limit and the line limit: the read that would cross one returns
// the bytes before it, and every later Read an *Error naming the file, the
// line and the limit. When its context is
// done, the next Read returns the context's error.
type Reader struct {
	ctx  context.Context
	r    io.Reader
	name string
	lim  Limits
	n    int64 // bytes passed
	line int   // number of the current line (1-based)
	col  int   // bytes of the current line so far
	err  error
}

// NewReader limits r, which name stands for in errors.
func NewReader(ctx context.Context, r io.Reader, name string, lim Limits) *Reader {
	return &Reader{ctx: ctx, r: r, name: name, lim: lim, line: 1}
}

func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		r.err = err
		return 0, err
	}
	if len(p) > chunk {
		p = p[:chunk]
	}
	n, err := r.r.Read(p)
	if n > 0 {
		ok, lerr := r.lines(p[:n])
		if r.lim.Size > 0 && r.n+int64(ok) > r.lim.Size {
			ok = int(r.lim.Size - r.n)
			lerr = &Error{Path: r.name, What: r.lim.What, Limit: r.lim.Size}
		}
		r.n += int64(ok)
		if lerr != nil {
			// The bytes before the limit go through; the error comes
			// with the next read.
			r.err = lerr
			return ok, nil
		}
	}
	if err != nil && err != io.EOF {
		err = clipPath(err)
		r.err = err
	}
	return n, err
}

// lines advances the line count over b. It returns how many bytes of b
// keep within the line limit, and the error when that is not all of them.
func (r *Reader) lines(b []byte) (int, *Error) {
	if r.lim.Line <= 0 {
		return len(b), nil
	}
	if r.col+len(b) <= r.lim.Line {
		// No line can cross the limit in b: count, don't walk, its lines.
		if n := bytes.Count(b, nl); n > 0 {
			r.line += n
			r.col = len(b) - bytes.LastIndexByte(b, '\n') - 1
		} else {
			r.col += len(b)
		}
		return len(b), nil
	}
	off := 0
	for {
		i := bytes.IndexByte(b[off:], '\n')
		end := len(b) - off // bytes of the current line in b
		if i >= 0 {
			end = i
		}
		if r.col+end > r.lim.Line {
			return off + r.lim.Line - r.col, &Error{Path: r.name, What: r.lim.What, Line: r.line, Limit: int64(r.lim.Line)}
		}
		if i < 0 {
			r.col += end
			return len(b), nil
		}
		r.line++
		r.col = 0
		off += i + 1
	}
}

var nl = []byte{'\n'}

// Line is the number of the line the next byte belongs to.
func (r *Reader) Line() int { return r.line }
