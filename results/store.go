package results

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
)

// LineError is a line of a metrics file that could not be parsed.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// LocalStore reads the local line-protocol store: the metrics.lp and
// prediction.lp files of its directories, where internal/layout puts them —
// tasks/<i>/ of an experiment directory, or the directory itself when it is
// one task's (`gpuorch loadgen run --out DIR`), and the shards/<s>/ of such
// a task directory when the task was sharded. Nothing else is searched, so
// a directory that is neither costs two directory reads, never a walk. A
// prediction.lp holds only serving_prediction points, so other queries skip
// it; a serving_prediction query reads a task's metrics.lp only when the
// task has no prediction.lp (the benchmark copies its prediction into the
// task sink, so metrics.lp may repeat it). It implements Source.
//
// Every line of a file is checked the first time the store reads it,
// whatever the query: lines of the queried measurement are parsed, the
// others checked for line-protocol syntax (without duplicate-key or range
// checks, which their own query's parse makes). A file with lines but not
// one valid line is an error of kind errkind.ErrInvalid.
type LocalStore struct {
	Dirs []string
	// OnMalformed, when set, is called once for each line that cannot be
	// parsed (however many queries read it), and the line is skipped: a
	// task killed mid-write leaves one torn line, which must not hide
	// everything else. When nil, the first malformed line fails the query
	// with a *LineError naming file and line.
	OnMalformed func(*LineError)

	mu     sync.Mutex
	checks map[string]*fileCheck
}

// NewLocalStore returns a LocalStore over the given experiment directories.
func NewLocalStore(dirs ...string) *LocalStore { return &LocalStore{Dirs: dirs} }

// Files lists the metrics and prediction files of the store's directories:
// DIR/metrics.lp and DIR/prediction.lp, then those of each DIR/tasks/<i>
// in natural order (tasks/2 before tasks/10).
func (s *LocalStore) Files() ([]string, error) {
	var files []string
	for _, dir := range s.Dirs {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("results directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("results directory %s: not a directory", dir)
		}
		found := taskFiles(dir)
		found = append(found, shardFiles(dir)...)
		tasks := layout.Experiment(dir).Tasks()
		ents, err := os.ReadDir(tasks)
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("list tasks of %s: %w", dir, err)
		}
		var idx []int
		for _, e := range ents {
			if i, ok := taskIndex(e.Name()); ok && e.IsDir() {
				idx = append(idx, i)
			}
		}
		sort.Ints(idx)
		for _, i := range idx {
			found = append(found, taskFiles(string(layout.Experiment(dir).Task(i)))...)
			found = append(found, shardFiles(string(layout.Experiment(dir).Task(i)))...)
		}
		files = append(files, found...)
	}
	return files, nil
}

// HasMetrics reports whether dir holds task metrics where the layout puts
// them: tasks/<i>/metrics.lp (or prediction.lp), or metrics.lp itself.
func HasMetrics(dir string) bool {
	files, err := NewLocalStore(dir).Files()
	return err == nil && len(files) > 0
}

// taskFiles lists the metrics and prediction file of task directory dir
// that exist, whatever they are: reading one that is not a regular file
// (a link to /dev/zero) fails with limitio's error naming it.
func taskFiles(dir string) []string {
	var out []string
	for _, name := range []string{layout.MetricsFile, layout.PredictionFile} {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// shardFiles lists the metrics files of a sharded task's shards (task
// directory dir's shards/<s>/, layout.Task.Shard), in shard order.
func shardFiles(dir string) []string {
	ents, err := os.ReadDir(filepath.Join(dir, layout.ShardsDir))
	if err != nil {
		return nil
	}
	var idx []int
	for _, e := range ents {
		if i, ok := taskIndex(e.Name()); ok && e.IsDir() {
			idx = append(idx, i)
		}
	}
	sort.Ints(idx)
	var out []string
	for _, i := range idx {
		out = append(out, taskFiles(string(layout.Task(dir).Shard(i)))...)
	}
	return out
}

// taskIndex reads a task directory's name: a decimal index as
// layout.RelTask writes it ("0", "17"; not "007" or "+1").
func taskIndex(name string) (int, bool) {
	i, err := strconv.Atoi(name)
	return i, err == nil && i >= 0 && strconv.Itoa(i) == name
}

// Query reads every metrics file and returns the points matching q, in file
// order (tasks in natural order, points in the order they were written).
func (s *LocalStore) Query(ctx context.Context, q Query) ([]Point, error) {
	files, err := s.Files()
	if err != nil {
		return nil, err
	}
	predDirs := map[string]bool{}
	for _, f := range files {
		if isPredictionFile(f) {
			predDirs[filepath.Dir(f)] = true
		}
	}
	var pts []Point
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		switch {
		case isPredictionFile(f) && q.Measurement != "" && q.Measurement != MeasServingPrediction:
			continue
		case !isPredictionFile(f) && q.Measurement == MeasServingPrediction && predDirs[filepath.Dir(f)]:
			continue
		}
		if err := s.readFile(ctx, f, &q, func(p Point) { pts = append(pts, p) }); err != nil {
			return nil, err
		}
	}
	return pts, nil
}

// readFile reads one file of the store for q, checking the lines no earlier
// query has checked.
func (s *LocalStore) readFile(ctx context.Context, path string, q *Query, fn func(Point)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checks == nil {
		s.checks = map[string]*fileCheck{}
	}
	fc := s.checks[path]
	if fc == nil {
		fc = &fileCheck{}
		s.checks[path] = fc
	}
	f, err := limitio.Open(ctx, path, limitio.Metrics)
	if err != nil {
		return fmt.Errorf("read metrics: %w", err)
	}
	defer f.Close()
	if err := readLines(f, path, q, fn, s.OnMalformed, fc); err != nil {
		return err
	}
	if fc.valid == 0 && fc.bad > 0 {
		return errkind.Invalidf("%s: no valid line (%d malformed): %w", path, fc.bad, fc.first)
	}
	return nil
}

// fileCheck is what a store has learnt of one file's lines over its
// queries: lines 1..lines were checked, valid of them hold a point, bad do
// not (the first is first; bit n of bits is set for a bad line n, so that
// each is reported once).
type fileCheck struct {
	lines, valid, bad int
	first             *LineError
	bits              []uint64
}

// mark records line n as bad.
func (c *fileCheck) mark(n int) {
	for len(c.bits) <= n/64 {
		c.bits = append(c.bits, 0)
	}
	c.bits[n/64] |= 1 << (n % 64)
}

// marked reports whether line n is known to be bad (and was reported).
func (c *fileCheck) marked(n int) bool {
	return n/64 < len(c.bits) && c.bits[n/64]&(1<<(n%64)) != 0
}

// ReadLineFile parses the line-protocol file at path, calling fn for each
// point. Blank lines and '#' comments are skipped. If measurement is set,
// lines of other measurements are skipped before parsing. A malformed line
// goes to onMalformed when it is set; otherwise it ends the read with a
// *LineError.
func ReadLineFile(path, measurement string, fn func(Point), onMalformed func(*LineError)) error {
	return readFile(context.Background(), path, &Query{Measurement: measurement}, fn, onMalformed)
}

// readFile streams a metrics file within limitio.Metrics' limits.
func readFile(ctx context.Context, path string, q *Query, fn func(Point), onMalformed func(*LineError)) error {
	f, err := limitio.Open(ctx, path, limitio.Metrics)
	if err != nil {
		return fmt.Errorf("read metrics: %w", err)
	}
	defer f.Close()
	return readLines(f, path, q, fn, onMalformed, nil)
}

// readLines calls fn for every point of r that matches q. Lines of other
// measurements are skipped unparsed, and lines whose tags do not match
// before their fields are parsed (the expensive part). With fc, the lines
// fc has not seen yet are checked all the same (cheaply, for syntax), and
// each malformed line is reported once over all the reads fc is given to.
func readLines(r io.Reader, name string, q *Query, fn func(Point), onMalformed func(*LineError), fc *fileCheck) error {
	var prefix []byte
	if q.Measurement != "" {
		prefix = appendElem(nil, q.Measurement, ", ")
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	n, last := 1, 0 // last: the last line read, complete or not
	// What this read learns, recorded in fc once it has read to the end.
	var (
		valid int
		bad   []int
		first *LineError
	)
	for ; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: collect it whole.
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			var le *limitio.Error
			if errors.As(err, &le) {
				return err // names the file and the line
			}
			return fmt.Errorf("read %s: %w", name, err)
		}
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			fresh := fc != nil && n > fc.lines // not checked by an earlier read
			body := trimEOL(line)
			var perr error
			if wantMeasurement(line, prefix) {
				p, i, herr := parseHead(body)
				switch {
				case herr != nil:
					perr = herr
				case q.matchHead(p):
					if perr = parseBody(body, i, &p); perr == nil && q.matchTime(p) {
						fn(p)
					}
				case fresh:
					perr = checkBody(body, i)
				}
			} else if fresh {
				perr = checkLine(body)
			}
			if perr != nil && (fc == nil || !fc.marked(n)) {
				le := &LineError{File: name, Line: n, Err: perr}
				if onMalformed == nil {
					return le // the read is void: nothing is recorded in fc
				}
				onMalformed(le)
				bad = append(bad, n)
				if fc != nil && !fresh {
					valid-- // it passed the syntax check, not the parse
				}
				if first == nil {
					first = le
				}
			} else if perr == nil && fresh {
				valid++
			}
		}
		if len(line) > 0 {
			last = n
		}
		if err != nil { // io.EOF
			break
		}
	}
	// A last line without its newline counts as checked: should its writer
	// complete it later, a later read of the same store parses it when its
	// query wants it, but does not check it again otherwise.
	if fc != nil {
		fc.lines = max(fc.lines, last)
		fc.valid += valid
		fc.bad += len(bad)
		for _, n := range bad {
			fc.mark(n)
		}
		if fc.first == nil {
			fc.first = first
		}
	}
	return nil
}

// wantMeasurement reports whether line may belong to the measurement whose
// escaped name is prefix (nil: any). Lines that do not start with it are
// skipped unparsed — also malformed ones, which belong to no measurement we
// can name.
func wantMeasurement(line, prefix []byte) bool {
	if prefix == nil {
		return true
	}
	return len(line) > len(prefix) && bytes.HasPrefix(line, prefix) && (line[len(prefix)] == ',' || line[len(prefix)] == ' ')
}

var _ Source = (*LocalStore)(nil)
