package results

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
)

// writeTask writes a task's points the way a load run does: interval
// snapshots, then (if sum.Status is set) the summary.
func writeTask(t *testing.T, expDir string, idx int, sum loadgen.Summary, snaps []loadgen.Snapshot) string {
	t.Helper()
	path := filepath.Join(expDir, "tasks", fmt.Sprint(idx), layout.MetricsFile)
	lf, err := OpenLineFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, s := range snaps {
		if err := lf.Write(ctx, SnapshotPoints(sum, s)...); err != nil {
			t.Fatal(err)
		}
	}
	if sum.Status != "" {
		if err := lf.Write(ctx, SummaryPoints(sum)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := lf.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLineFileAppendsFlushesAndRepairsTornLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a", "b", layout.MetricsFile)
	lf, err := OpenLineFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := Point{Measurement: "m", Tags: map[string]string{"t": "1"}, Fields: map[string]any{"v": 1.0}, Time: t0}
	if err := lf.Write(ctx, p); err != nil {
		t.Fatal(err)
	}
	// Written through to the OS at once: a killed writer loses nothing.
	if b, _ := os.ReadFile(path); string(b) != "m,t=1 v=1 "+fmt.Sprint(t0.UnixNano())+"\n" {
		t.Errorf("after Write: %q", b)
	}
	if err := lf.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// A bad point is reported, the good ones still land.
	bad := Point{Measurement: "m", Fields: map[string]any{}}
	if err := lf.Write(ctx, bad, p); err == nil {
		t.Error("want error for a point without fields")
	}
	if err := lf.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lf.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := lf.Write(ctx, p); err == nil {
		t.Error("write after Close must fail")
	}
	// Simulate a writer killed mid-line, then reopen and append.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("m,t=1 v=")
	f.Close()
	lf, err = OpenLineFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := lf.Write(ctx, p); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	var got []Point
	var bad2 []*LineError
	if err := ReadLineFile(path, "", func(p Point) { got = append(got, p) }, func(e *LineError) { bad2 = append(bad2, e) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || len(bad2) != 1 || bad2[0].Line != 3 {
		t.Fatalf("got %d points and malformed %v; want 3 points and line 3 torn", len(got), bad2)
	}
}

func TestLineFileConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), layout.MetricsFile)
	lf, err := OpenLineFile(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func(g int) {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 500; i++ {
				lf.Write(context.Background(), Point{Measurement: "m", Tags: map[string]string{"g": fmt.Sprint(g)}, Fields: map[string]any{"i": int64(i)}, Time: t0.Add(time.Duration(i))})
			}
		}(g)
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	if err := lf.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := ReadLineFile(path, "", func(Point) { n++ }, nil); err != nil {
		t.Fatal(err)
	}
	if n != 2000 {
		t.Errorf("read %d points, want 2000", n)
	}
}

func TestLocalStoreReadsEveryTask(t *testing.T) {
	exp := t.TempDir()
	for i := 0; i < 12; i++ { // 12 > 10 checks natural ordering of tasks/2 vs tasks/10
		meta := loadgen.Summary{Experiment: "e1", Task: fmt.Sprintf("t%d", i), Workload: "poisson", Status: loadgen.StatusCompleted, Started: t0}
		snaps := []loadgen.Snapshot{
			{Interval: 0, Start: t0, End: t0.Add(time.Second), Offered: int64(i)},
			{Interval: 1, Start: t0.Add(time.Second), End: t0.Add(2 * time.Second), Offered: int64(i)},
		}
		meta.Total = loadgen.Snapshot{Interval: -1, Offered: int64(2 * i)}
		writeTask(t, exp, i, meta, snaps)
	}
	// Another file that is not a metrics file is ignored.
	os.WriteFile(filepath.Join(exp, "tasks", "0", "log.txt"), []byte("garbage\n"), 0o644)

	st := NewLocalStore(exp)
	files, err := st.Files()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 12 || !strings.HasSuffix(files[2], filepath.Join("tasks", "2", layout.MetricsFile)) || !strings.HasSuffix(files[11], filepath.Join("tasks", "11", layout.MetricsFile)) {
		t.Fatalf("files in wrong order or count: %v", files)
	}
	ctx := context.Background()
	all, err := st.Query(ctx, Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 12*3 {
		t.Errorf("all points: %d, want 36", len(all))
	}
	ivl, _ := st.Query(ctx, Query{Measurement: MeasServing})
	if len(ivl) != 24 || ivl[0].Tags["task"] != "t0" || ivl[23].Tags["task"] != "t11" {
		t.Errorf("serving points: %d, first %v last %v", len(ivl), ivl[0].Tags, ivl[len(ivl)-1].Tags)
	}
	one, _ := st.Query(ctx, Query{Measurement: MeasServing, Tags: map[string]string{"task": "t7"}, Start: t0.Add(time.Second)})
	if len(one) != 1 || one[0].Fields["offered"] != int64(7) || one[0].Fields["interval"] != int64(1) {
		t.Errorf("filtered query: %v", one)
	}
	none, _ := st.Query(ctx, Query{Experiments: []string{"other"}})
	if len(none) != 0 {
		t.Errorf("experiment filter let through %d points", len(none))
	}
	excl, _ := st.Query(ctx, Query{Measurement: MeasServing, Exclude: map[string][]string{"task": {"t1", "t5"}, "nokey": {"x"}}})
	if len(excl) != 20 {
		t.Errorf("Exclude: got %d points, want 20", len(excl))
	}
	for _, p := range excl {
		if p.Tags["task"] == "t1" || p.Tags["task"] == "t5" {
			t.Errorf("excluded task %s returned", p.Tags["task"])
		}
	}
	ended, _ := st.Query(ctx, Query{Measurement: MeasServing, End: t0.Add(time.Second)})
	if len(ended) != 12 {
		t.Errorf("End is exclusive: got %d points, want 12", len(ended))
	}
}

func TestLocalStoreMalformedLines(t *testing.T) {
	exp := t.TempDir()
	path := filepath.Join(exp, "tasks", "3", layout.MetricsFile)
	os.MkdirAll(filepath.Dir(path), 0o755)
	content := "# a comment\n\nserving,task=t3 offered=1i 1\nserving,task=t3 offered=oops 2\nserving,task=t3 offered=3i 3\nserving,task=t3 offe"
	os.WriteFile(path, []byte(content), 0o644)

	st := NewLocalStore(exp)
	_, err := st.Query(context.Background(), Query{})
	var le *LineError
	if !errors.As(err, &le) || le.Line != 4 || le.File != path || !strings.Contains(err.Error(), path+":4:") {
		t.Fatalf("strict query: err %v, want %s:4", err, path)
	}
	var warned []string
	st.OnMalformed = func(e *LineError) { warned = append(warned, fmt.Sprintf("%d", e.Line)) }
	pts, err := st.Query(context.Background(), Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 || strings.Join(warned, ",") != "4,6" {
		t.Errorf("lenient query: %d points, warned about lines %v; want 2 points, lines 4,6", len(pts), warned)
	}
	if _, err := NewLocalStore(filepath.Join(exp, "missing")).Query(context.Background(), Query{}); err == nil {
		t.Error("missing directory must be an error")
	}
}

func TestReadLongLine(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	p := Point{Measurement: "m", Fields: map[string]any{"s": long, "n": 1.0}, Time: t0}
	line, _ := AppendLine(nil, p)
	var got []Point
	if err := readLines(strings.NewReader(string(line)+string(line)), "mem", &Query{}, func(p Point) { got = append(got, p) }, nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Fields["s"] != long {
		t.Fatalf("long lines: got %d points", len(got))
	}
}

func TestNaturalLess(t *testing.T) {
	for _, c := range [][2]string{{"t2", "t10"}, {"a", "b"}, {"t1", "t1x"}, {"tasks/9/m", "tasks/10/m"}, {"t01", "t001"}, {"x9y", "x10a"}, {"", "a"}} {
		if !NaturalLess(c[0], c[1]) || NaturalLess(c[1], c[0]) {
			t.Errorf("want %q < %q", c[0], c[1])
		}
	}
}

// TestLocalStoreChecksEveryLine: a query checks the lines it skips too, so
// garbage is reported whatever the measurement asked for — once per line
// over all of a store's queries — and a file with no valid line is an
// error, not an empty answer.
func TestLocalStoreChecksEveryLine(t *testing.T) {
	exp := t.TempDir()
	meta := loadgen.Summary{Experiment: "e1", Task: "t0", Workload: "poisson", Status: loadgen.StatusCompleted, Started: t0}
	path := writeTask(t, exp, 0, meta, []loadgen.Snapshot{{Interval: 0, Start: t0, End: t0.Add(time.Second), Offered: 5}})
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("garbage\nserving_summary,task=t0 offered=oops 5\n\x7fELF\x02\x01\n")
	f.Close()
	n := strings.Count(readAll(t, path), "\n")

	var lines []int
	st := NewLocalStore(exp)
	st.OnMalformed = func(e *LineError) { lines = append(lines, e.Line) }
	res, err := Load(context.Background(), st, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tasks) != 1 || res.Tasks[0].Status != loadgen.StatusCompleted {
		t.Errorf("rows %+v", res.Tasks)
	}
	if fmt.Sprint(lines) != fmt.Sprint([]int{n - 2, n - 1, n}) {
		t.Errorf("reported lines %v, want %d, %d, %d once each", lines, n-2, n-1, n)
	}
	var m MalformedLines
	for _, l := range lines {
		m.Add(&LineError{File: path, Line: l, Err: errors.New("x")})
	}
	var buf strings.Builder
	m.WriteText(&buf)
	if want := fmt.Sprintf("warning: %s: 3 malformed lines skipped (lines %d, %d, %d); line %d: x\n", path, n-2, n-1, n, n-2); buf.String() != want {
		t.Errorf("warning %q\nwant    %q", buf.String(), want)
	}

	// Strict: the first garbage line fails even a query of another measurement.
	var le *LineError
	if _, err := NewLocalStore(exp).Query(context.Background(), Query{Measurement: MeasServingPrediction}); !errors.As(err, &le) || le.Line != n-2 {
		t.Errorf("strict prediction query: %v, want line %d", err, n-2)
	}

	// Nothing valid: an error of kind invalid, naming the file and its first line.
	if err := os.WriteFile(path, []byte("# a comment\nnot line protocol\n\nnor this\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st = NewLocalStore(exp)
	st.OnMalformed = func(*LineError) {}
	_, err = Load(context.Background(), st, "e1")
	if !errors.Is(err, errkind.ErrInvalid) || !strings.Contains(err.Error(), path+": no valid line (2 malformed): "+path+":2:") {
		t.Errorf("garbage file: %v", err)
	}
	// Empty, or comments only (a task that has not written yet): no error.
	os.WriteFile(path, []byte("# nothing yet\n"), 0o644)
	if _, err := Load(context.Background(), NewLocalStore(exp), "e1"); err != nil {
		t.Errorf("comment-only file: %v", err)
	}
}

// TestLocalStoreFollowsTheLayout: the store reads tasks/<i>/ and the
// directory's own metrics.lp, and the shards/<s>/ of either (a sharded
// task's shards), nothing deeper or elsewhere.
func TestLocalStoreFollowsTheLayout(t *testing.T) {
	dir := t.TempDir()
	meta := loadgen.Summary{Experiment: "e1", Task: "t", Workload: "poisson", Status: loadgen.StatusCompleted, Started: t0}
	for _, p := range []string{"tasks/3", "tasks/12", ".", "tasks/3/old", "tasks/x", "tasks/007", "other/tasks/0", "tasks/0/tasks/0",
		"tasks/3/shards/1", "tasks/3/shards/0", "shards/2", "tasks/3/shards/x", "tasks/3/shards/start", "tasks/3/shards/0/shards/0"} {
		m := meta
		m.Task = p
		lf, err := OpenLineFile(filepath.Join(dir, p, layout.MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		lf.Write(context.Background(), SummaryPoints(m)...)
		lf.Close()
	}
	files, err := NewLocalStore(dir).Files()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, layout.MetricsFile), filepath.Join(dir, "shards/2", layout.MetricsFile),
		filepath.Join(dir, "tasks/3", layout.MetricsFile), filepath.Join(dir, "tasks/3/shards/0", layout.MetricsFile),
		filepath.Join(dir, "tasks/3/shards/1", layout.MetricsFile), filepath.Join(dir, "tasks/12", layout.MetricsFile)}
	if fmt.Sprint(files) != fmt.Sprint(want) {
		t.Errorf("files %v\nwant  %v", files, want)
	}
	// tasks/ itself is neither an experiment nor a task directory.
	if !HasMetrics(dir) || !HasMetrics(filepath.Join(dir, "other")) || HasMetrics(filepath.Join(dir, "tasks")) || HasMetrics(t.TempDir()) {
		t.Error("HasMetrics")
	}
}

func readAll(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
