package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/orchestrator"
)

// TestRunCLISlurmWait: `run --executor slurm --wait` follows the array job
// to its end, prints the per-task table and exits 1 because a task failed,
// naming its exit code and the full path of its log; `status` says the same.
func TestRunCLISlurmWait(t *testing.T) {
	testgate.Slurm(t)
	t.Parallel()
	e := newCLIEnv(t)
	out, errOut, code := e.run([]string{"FAKE_EXIT_1=7"}, "run", "--executor", "slurm", "--wait", "--interval", "300ms", "--binary", e.fake, e.spec)
	id := strings.Fields(out + " x")[0]
	st := e.state(id)
	log1 := filepath.Join(e.home, id, "tasks", "1", "log")
	failure := "task 1 (t001-rate=2) failed: exit code 7 [exit code 7, log " + log1 + "]"
	if code != exitFailure || st.State != orchestrator.ExpFailed || !strings.Contains(out, failure) || !strings.Contains(out, "3/3 ended: 2 completed, 1 failed") {
		t.Fatalf("exit %d, state %s\nstdout:\n%s\nstderr:\n%s", code, st.State, out, errOut)
	}
	if !strings.Contains(errOut, "submitted as slurm job "+st.Submissions[0].JobID) {
		t.Errorf("stderr %q", errOut)
	}
	if !strings.Contains(readFile(log1), "fake task 1") {
		t.Errorf("log %s: %q", log1, readFile(log1))
	}
	out, _, code = e.run(nil, "status", id)
	if code != exitFailure || !strings.Contains(out, failure) || !strings.Contains(out, "retry the failed tasks with: gpuorch retry "+id) {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	// All complete: exit 0.
	if out, errOut, code := e.run(nil, "run", "--executor", "slurm", "--wait", "--json", "--interval", "300ms", "--binary", e.fake, e.spec); code != 0 || !strings.Contains(out, `"state": "completed"`) {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestRunCLISlurmResumeSkipsQueued: `run --resume` on a Slurm experiment
// whose tasks 1 and 2 still run resubmits only the failed task 0, instead of
// refusing the whole resume (or running 1 and 2 twice).
func TestRunCLISlurmResumeSkipsQueued(t *testing.T) {
	testgate.Slurm(t)
	t.Parallel()
	e := newCLIEnv(t)
	env := []string{"FAKE_EXIT_0=1", "FAKE_SLEEP_1=120", "FAKE_SLEEP_2=120"}
	out, errOut, code := e.run(env, "run", "--executor", "slurm", "--binary", e.fake, e.spec)
	id := strings.TrimSpace(out)
	if code != 0 {
		t.Fatalf("submit: exit %d %s", code, errOut)
	}
	defer e.run(nil, "cancel", id)
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, _, _ = e.run(nil, "status", id)
		st := e.state(id)
		if st.Tasks[0].State == orchestrator.TaskFailed && st.Tasks[1].State == orchestrator.TaskRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task 0 never failed while 1 ran: %+v", st.Tasks)
		}
		time.Sleep(500 * time.Millisecond)
	}
	first := e.state(id).Submissions[0].JobID
	_, errOut, code = e.run(nil, "run", "--binary", e.fake, "--resume", id)
	if code != 0 {
		t.Fatalf("resume: exit %d: %s", code, errOut)
	}
	st := e.state(id)
	if len(st.Submissions) != 2 || len(st.Submissions[1].Indices) != 1 || st.Submissions[1].Indices[0] != 0 || st.Submissions[1].JobID == "" {
		t.Fatalf("resume submitted %+v", st.Submissions)
	}
	for _, i := range []int{1, 2} {
		if ts := st.Tasks[i]; ts.JobID != first+"_"+strconv.Itoa(i) || ts.State.Terminal() {
			t.Errorf("task %d: %s in job %s, want still live in %s", i, ts.State, ts.JobID, first)
		}
	}
	if st.Tasks[0].Attempts != 2 || st.Tasks[0].State.Terminal() {
		t.Errorf("task 0 after resume: %+v", st.Tasks[0])
	}
}
