package orchestrator

import (
	"strings"
	"testing"
	"time"
)

// TestProgressEvents: a line as each task starts and as it ends, with the
// count of ended tasks and, for a failure, why.
func TestProgressEvents(t *testing.T) {
	exp := newTestExperiment(t, testSpec(t, []string{"ok", "ok"}, "1s", 1, ""))
	var b strings.Builder
	AttachProgress(&b, exp)
	start := time.Now()
	end := start.Add(1500 * time.Millisecond)
	for i, final := range []TaskState{TaskCompleted, TaskFailed} {
		if err := exp.UpdateTask(i, func(ts *TaskStatus) { ts.State, ts.Start = TaskRunning, &start }); err != nil {
			t.Fatal(err)
		}
		if err := exp.UpdateTask(i, func(ts *TaskStatus) {
			ts.State, ts.End = final, &end
			if final == TaskFailed {
				ts.Error = "exit code 7"
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{"running", "completed", "in 1.5s  (1/2 done)", "running", "failed", ": exit code 7  (2/2 done)"}
	if len(lines) != 4 {
		t.Fatalf("want 4 lines, got %d:\n%s", len(lines), b.String())
	}
	for i, w := range []struct{ line, a, b string }{
		{lines[0], want[0], "(0/2 done)"}, {lines[1], want[1], want[2]},
		{lines[2], want[3], "(1/2 done)"}, {lines[3], want[4], want[5]},
	} {
		if !strings.Contains(w.line, w.a) || !strings.Contains(w.line, w.b) {
			t.Errorf("line %d = %q, want %q … %q", i, w.line, w.a, w.b)
		}
	}
}
