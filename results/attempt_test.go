package results

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
)

// attempt is one run of a task: its snapshots and, unless it was killed or
// is still running, its summary.
type attempt struct {
	start   time.Time
	seconds int
	status  string // "" writes no summary
}

// rerunTasks writes, through sinkFor, an experiment whose tasks each ran
// twice, as `gpuorch run --resume` (or retry) leaves them: both attempts'
// points on the same series, the later one after the earlier.
//   - t000-rate=100: interrupted after 5 s, then completed (20 s)
//   - t001-rate=300: failed after 5 s, then still running (3 intervals, no summary)
//   - t002-rate=500: killed after 4 intervals (no summary), then completed (10 s)
func rerunTasks(t *testing.T, start time.Time, sinkFor func(i int) Sink) {
	t.Helper()
	tasks := []struct {
		rate     float64
		attempts []attempt
	}{
		{100, []attempt{{start, 5, loadgen.StatusInterrupted}, {start.Add(time.Minute), 20, loadgen.StatusCompleted}}},
		{300, []attempt{{start.Add(2 * time.Minute), 5, loadgen.StatusFailed}, {start.Add(3 * time.Minute), 3, ""}}},
		{500, []attempt{{start.Add(4 * time.Minute), 4, ""}, {start.Add(5 * time.Minute), 10, loadgen.StatusCompleted}}},
	}
	ctx := context.Background()
	for i, task := range tasks {
		sink := sinkFor(i)
		for _, a := range task.attempts {
			meta, snaps := syntheticRun("rerun", i, task.rate, a.start, a.seconds)
			meta.Status = a.status
			if a.status == "" {
				for _, s := range snaps {
					if err := sink.Write(ctx, SnapshotPoints(meta, s)...); err != nil {
						t.Fatal(err)
					}
				}
				continue
			}
			if a.status == loadgen.StatusFailed {
				meta.Error = "target answered 500"
			}
			writeRun(t, sink, meta, snaps)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func rerunLocal(t *testing.T, start time.Time) string {
	dir := t.TempDir()
	rerunTasks(t, start, func(i int) Sink {
		lf, err := OpenLineFile(filepath.Join(dir, "tasks", fmt.Sprint(i), layout.MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		return lf
	})
	return dir
}

// checkLatestAttempts asserts that review sees one row per task, from each
// task's latest attempt only.
func checkLatestAttempts(t *testing.T, src Source) *Results {
	t.Helper()
	ctx := context.Background()
	res, err := Load(ctx, src, "rerun")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tasks) != 3 {
		for _, r := range res.Tasks {
			t.Logf("row %s %s offered %d", r.Task, r.Status, r.Offered)
		}
		t.Fatalf("%d task rows for 3 tasks", len(res.Tasks))
	}
	want := []struct {
		status    string
		offered   int64
		durationS float64
	}{
		{loadgen.StatusCompleted, 20 * 100, 20},
		{StatusIncomplete, 3 * 300, 3},
		{loadgen.StatusCompleted, 10 * 500, 10},
	}
	for i, w := range want {
		r := res.Tasks[i]
		if r.Status != w.status || r.Offered != w.offered || r.DurationS != w.durationS || r.Error != "" {
			t.Errorf("task %s: status %s, offered %d over %gs, error %q; want %s, %d over %gs (its latest attempt)",
				r.Task, r.Status, r.Offered, r.DurationS, r.Error, w.status, w.offered, w.durationS)
		}
	}
	// Steps only of the latest attempts: 5 each for t000 and t002.
	if len(res.Steps) != 10 {
		t.Errorf("%d step rows, want 10 (5 of each completed task's latest attempt)", len(res.Steps))
	}
	for _, s := range res.Steps {
		if s.Task == "t001-rate=300" {
			t.Errorf("a step row of t001's failed first attempt: %+v", s)
		}
	}

	// The report's charts read the same attempts.
	d, err := LoadReport(ctx, src, "rerun", "test")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Results.Tasks, res.Tasks) {
		t.Errorf("report rows differ from show's:\n%+v\n%+v", d.Results.Tasks, res.Tasks)
	}
	perTask := map[string]int{}
	for _, p := range d.Intervals {
		perTask[p.Tags[TagTask]]++
	}
	if perTask["t000-rate=100"] != 20 || perTask["t001-rate=300"] != 3 || perTask["t002-rate=500"] != 10 {
		t.Errorf("report interval points per task %v, want the latest attempts' 20, 3 and 10", perTask)
	}
	totals := map[string]int{}
	for _, p := range d.Summary {
		if p.Tags[TagBreakdown] == BreakdownTotal {
			totals[p.Tags[TagTask]]++
		}
	}
	if len(totals) != 2 || totals["t000-rate=100"] != 1 || totals["t002-rate=500"] != 1 {
		t.Errorf("report summary totals per task %v, want one each of t000 and t002", totals)
	}
	return res
}

func TestLoadUsesLatestAttemptLocal(t *testing.T) {
	checkLatestAttempts(t, NewLocalStore(rerunLocal(t, t0)))
}

// The same points in InfluxDB give the same rows: the attempts are told
// apart by what both sources keep, the points' times.
func TestLoadUsesLatestAttemptInfluxDB(t *testing.T) {
	cfg := testDatabase(t)
	start := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	dir := t.TempDir()
	rerunTasks(t, start, func(i int) Sink {
		taskDir := filepath.Join(dir, "tasks", fmt.Sprint(i))
		lf, err := OpenLineFile(filepath.Join(taskDir, layout.MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		inf, err := NewInfluxSink(cfg, filepath.Join(taskDir, layout.InfluxSpoolDir))
		if err != nil {
			t.Fatal(err)
		}
		return Tee(lf, inf)
	})
	inf := checkLatestAttempts(t, NewInfluxSource(cfg))
	local := checkLatestAttempts(t, NewLocalStore(dir))
	if !reflect.DeepEqual(inf, local) {
		t.Errorf("review models differ:\ninflux %+v\nlocal  %+v", inf, local)
	}
}
