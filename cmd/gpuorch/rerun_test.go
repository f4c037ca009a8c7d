package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/loadgen/simserver"
	"github.com/gpuorch/gpuorch/loadgen/simserver/simtest"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
)

// realTaskEnv is a cliEnv whose tasks are real `gpuorch loadgen run`
// processes (this test binary through the shim) against a simulated model
// server running in the test.
func realTaskEnv(t *testing.T, duration string) *cliEnv {
	t.Helper()
	url := simtest.Start(t, simserver.Config{DNN: []simserver.DNNModel{{Name: "m", Copies: 1}}})

	e := newCLIEnv(t)
	e.fake = gpuorchBinary(t)
	e.env = []string{testBinaryEnv(t), "GPUORCH_INFLUX_URL="}
	spec := `[experiment]
name = "rerun"
[target]
url = "` + url + `"
protocol = "kserve"
models = ["m-0"]
timeout = "2s"
[[workload]]
arrival = "poisson"
rate = 20
[sweep]
"workload.rate" = [10, 20, 30]
[run]
duration = "` + duration + `"
interval = "500ms"
`
	if err := os.WriteFile(e.spec, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// waitFor polls cond every 20 ms until it holds, or fails the test.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runningTask0 starts `gpuorch run` on e's spec and returns once task 0 runs
// and has written its first interval.
func (e *cliEnv) runningTask0(t *testing.T) (*os.Process, string) {
	t.Helper()
	cmd := e.command(nil, "run", "--binary", e.fake, e.spec)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var id string
	waitFor(t, 30*time.Second, "task 0 to run and measure", func() bool {
		if list, _ := orchestrator.List(e.home); len(list) == 1 {
			id = list[0].ID
		}
		if id == "" {
			return false
		}
		st := e.state(id)
		return st.Tasks[0].State == orchestrator.TaskRunning && st.Tasks[0].PID > 0 &&
			strings.Contains(readFile(filepath.Join(e.home, id, "tasks", "0", "snapshots.jsonl")), `"interval":0`)
	})
	return cmd.Process, id
}

// exited reports whether process pid has ended: gone, or a zombie that
// nobody reaps (its parent, gpuorch, was killed; in a container PID 1 may
// not reap orphans).
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

func taskSummary(t *testing.T, e *cliEnv, id string, i int) loadgen.Summary {
	var s loadgen.Summary
	b, err := os.ReadFile(filepath.Join(e.home, id, "tasks", fmt.Sprint(i), "summary.json"))
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		t.Fatalf("summary of task %d: %v", i, err)
	}
	return s
}

// showRows is `gpuorch results show --json EXP`.
func showRows(t *testing.T, e *cliEnv, exp string) []results.Row {
	t.Helper()
	out, errOut, code := e.run(nil, "results", "show", "--json", exp)
	var rows []results.Row
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != 0 {
		t.Fatalf("results show: exit %d, %v: %s", code, err, errOut)
	}
	return rows
}

// TestResumeReviewsLatestAttempt: a task interrupted by Ctrl-C and run again
// by --resume is one task in show, compare and report, with the numbers of
// its completed rerun — not two rows, not the interrupted attempt's numbers.
func TestResumeReviewsLatestAttempt(t *testing.T) {
	e := realTaskEnv(t, "2s")
	proc, id := e.runningTask0(t)
	proc.Signal(syscall.SIGINT)
	waitFor(t, 20*time.Second, "the interrupted run to record it", func() bool {
		return e.state(id).State == orchestrator.ExpInterrupted
	})
	if s := taskSummary(t, e, id, 0); s.Status != loadgen.StatusInterrupted {
		t.Fatalf("task 0 after Ctrl-C: %s", s.Status)
	}
	if _, errOut, code := e.run(nil, "run", "--binary", e.fake, "--resume", id); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, errOut)
	}
	st := e.state(id)
	if st.State != orchestrator.ExpCompleted || st.Tasks[0].Attempts != 2 {
		t.Fatalf("after resume: %s, task 0 attempts %d", st.State, st.Tasks[0].Attempts)
	}
	rerun := taskSummary(t, e, id, 0)

	rows := showRows(t, e, id)
	if len(rows) != 3 {
		for _, r := range rows {
			t.Logf("row %s %s: offered %d", r.Task, r.Status, r.Offered)
		}
		t.Fatalf("results show: %d rows for 3 tasks", len(rows))
	}
	if r := rows[0]; r.Status != loadgen.StatusCompleted || r.Offered != rerun.Total.Offered || r.Completed != rerun.Total.Completed {
		t.Errorf("task 0 row: %s, offered %d, completed %d; want its rerun's completed, %d, %d",
			r.Status, r.Offered, r.Completed, rerun.Total.Offered, rerun.Total.Completed)
	}

	out, errOut, code := e.run(nil, "results", "compare", "--json", id, id)
	var cmp []results.CompareRow
	if err := json.Unmarshal([]byte(out), &cmp); err != nil || code != 0 {
		t.Fatalf("compare: exit %d, %v: %s", code, err, errOut)
	}
	tasks := map[string]bool{}
	for _, r := range cmp {
		tasks[r.Task] = true
		if r.Metric == "offered_rps" && r.Task == rows[0].Task && (r.Values[0].Value == nil || *r.Values[0].Value != rows[0].OfferedRate) {
			t.Errorf("compare uses another attempt of %s: %+v, want offered_rps %g", r.Task, r.Values[0], rows[0].OfferedRate)
		}
	}
	if len(tasks) != 3 {
		t.Errorf("compare matched %d tasks, want 3: %v", len(tasks), tasks)
	}

	report := filepath.Join(t.TempDir(), "r.html")
	if _, errOut, code := e.run(nil, "results", "report", "-o", report, id); code != 0 {
		t.Fatalf("report: exit %d: %s", code, errOut)
	}
	if html := readFile(report); !strings.Contains(html, ">3 tasks ·") || strings.Count(html, `<td class="l">interrupted</td>`) != 0 {
		t.Errorf("report header or table counts the interrupted attempt")
	}
}

// TestKilledRunTaskThatFinishedIsNotRerun: gpuorch run is killed with
// SIGKILL while a task runs; the task, in its own process group, goes on
// and completes. Status and resume must record it completed from its
// summary, not interrupted, and resume must not run it again. A task that
// died with gpuorch (no summary of its own) is still run again.
func TestKilledRunTaskThatFinishedIsNotRerun(t *testing.T) {
	e := realTaskEnv(t, "2s")
	proc, id := e.runningTask0(t)
	task := e.state(id).Tasks[0]
	proc.Kill()
	waitFor(t, 20*time.Second, "the orphaned task 0 to finish", func() bool { return exited(task.PID) })
	if s := taskSummary(t, e, id, 0); s.Status != loadgen.StatusCompleted {
		t.Fatalf("task 0 ended %s", s.Status)
	}

	out, _, _ := e.run(nil, "status", "--json", id)
	var st orchestrator.State
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v: %s", err, out)
	}
	if t0 := st.Tasks[0]; t0.State != orchestrator.TaskCompleted || t0.Error != "" || t0.End == nil {
		t.Errorf("status after the task finished: task 0 %s (%q), end %v; want completed", t0.State, t0.Error, t0.End)
	}
	if _, errOut, code := e.run(nil, "run", "--binary", e.fake, "--resume", id); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, errOut)
	}
	st = e.state(id)
	if st.State != orchestrator.ExpCompleted || st.Tasks[0].Attempts != 1 || st.Tasks[1].Attempts != 1 {
		t.Errorf("after resume: %s, attempts %d, %d; want completed, task 0 not run again", st.State, st.Tasks[0].Attempts, st.Tasks[1].Attempts)
	}
	if rows := showRows(t, e, id); len(rows) != 3 || rows[0].Status != loadgen.StatusCompleted {
		t.Errorf("results show: %+v", rows)
	}

	// The same kill, but the task dies with it: it did not finish, so it
	// is interrupted and resume runs it again.
	e2 := realTaskEnv(t, "2s")
	proc, id = e2.runningTask0(t)
	task = e2.state(id).Tasks[0]
	proc.Kill()
	syscall.Kill(-task.PID, syscall.SIGKILL)
	waitFor(t, 10*time.Second, "task 0 to die", func() bool { return exited(task.PID) })
	if _, errOut, code := e2.run(nil, "run", "--binary", e2.fake, "--resume", id); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, errOut)
	}
	if st := e2.state(id); st.State != orchestrator.ExpCompleted || st.Tasks[0].Attempts != 2 {
		t.Errorf("after resume: %s, task 0 attempts %d; want completed, task 0 run again", st.State, st.Tasks[0].Attempts)
	}
}
