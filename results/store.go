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

// LocalStore reads the local line-protocol store: every metrics.lp and
// prediction.lp file under its directories (an experiment directory holds
// tasks/<i>/metrics.lp, and tasks/<i>/prediction.lp for a benchmark). A
// prediction.lp holds only serving_prediction points, so other queries skip
// it; a serving_prediction query reads a task's metrics.lp only when the
// task has no prediction.lp (the benchmark copies its prediction into the
// task sink, so metrics.lp may repeat it). It implements Source.
type LocalStore struct {
	Dirs []string
	// OnMalformed, when set, is called for each line that cannot be parsed,
	// and the line is skipped: a task killed mid-write leaves one torn line,
	// which must not hide everything else. When nil, the first malformed line
	// fails the query with a *LineError naming file and line.
	OnMalformed func(*LineError)
}

// NewLocalStore returns a LocalStore over the given experiment directories.
func NewLocalStore(dirs ...string) *LocalStore { return &LocalStore{Dirs: dirs} }

// Files lists every metrics and prediction file under the store's
// directories, in natural order (tasks/2 before tasks/10).
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
		var found []string
		err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && (d.Name() == layout.MetricsFile || d.Name() == layout.PredictionFile) {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list metrics under %s: %w", dir, err)
		}
		sort.Slice(found, func(i, j int) bool { return NaturalLess(found[i], found[j]) })
		files = append(files, found...)
	}
	return files, nil
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
		err := readFile(ctx, f, &q, func(p Point) { pts = append(pts, p) }, s.OnMalformed)
		if err != nil {
			return nil, err
		}
	}
	return pts, nil
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
	return readLines(f, path, q, fn, onMalformed)
}

// readLines calls fn for every point of r that matches q. Lines of other
// measurements are skipped unparsed, and lines whose tags do not match
// before their fields are parsed (the expensive part).
func readLines(r io.Reader, name string, q *Query, fn func(Point), onMalformed func(*LineError)) error {
	var prefix []byte
	if q.Measurement != "" {
		prefix = appendElem(nil, q.Measurement, ", ")
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	for n := 1; ; n++ {
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
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && wantMeasurement(line, prefix) {
			body := trimEOL(line)
			p, i, perr := parseHead(body)
			if perr == nil && q.matchHead(p) {
				perr = parseBody(body, i, &p)
				if perr == nil && q.matchTime(p) {
					fn(p)
				}
			}
			if perr != nil {
				le := &LineError{File: name, Line: n, Err: perr}
				if onMalformed == nil {
					return le
				}
				onMalformed(le)
			}
		}
		if err != nil { // io.EOF
			return nil
		}
	}
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
