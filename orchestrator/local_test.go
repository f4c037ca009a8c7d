package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/loadgen"
)

// The test binary doubles as a fake `gpuorch loadgen run --manifest M`: with
// fakeTaskEnv set, TestMain runs fakeTask instead of the tests. The fake
// honours the manifest (its duration, or fakeSleepEnv), behaves as the
// manifest's workload.args[0] says ("ok", "fail", "unreachable", "hang"),
// answers SIGINT like loadgen (partial summary, exit 130), and records its
// environment and start/end times for the test to check.
const (
	fakeTaskEnv  = "GPUORCH_TEST_FAKE_TASK"
	fakeSleepEnv = "GPUORCH_TEST_FAKE_SLEEP"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeTaskEnv) == "1" {
		os.Exit(fakeTask(os.Args[1:]))
	}
	os.Exit(m.Run())
}

type fakeRecord struct {
	Args  []string          `json:"args"`
	Cwd   string            `json:"cwd"`
	Env   map[string]string `json:"env"`
	Start time.Time         `json:"start"`
	End   time.Time         `json:"end"`
}

func fakeTask(args []string) int {
	if len(args) != 4 || args[0] != "loadgen" || args[1] != "run" || args[2] != "--manifest" {
		fmt.Fprintf(os.Stderr, "fake task: unexpected arguments %q\n", args)
		return 2
	}
	manifest := args[3]
	var cfg loadgen.Config
	b, err := os.ReadFile(manifest)
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake task:", err)
		return 1
	}
	dir := filepath.Dir(manifest)
	rec := fakeRecord{Args: args, Env: map[string]string{}, Start: time.Now()}
	rec.Cwd, _ = os.Getwd()
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SLURM") || strings.HasPrefix(k, "GPUORCH_") {
			rec.Env[k] = v
		}
	}
	mode := "ok"
	if len(cfg.Workload.Args) > 0 {
		mode = cfg.Workload.Args[0]
	}
	fmt.Printf("fake task %s (%s) starting\n", cfg.Task, mode)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	if mode == "hang" {
		signal.Ignore(os.Interrupt)
	}
	// Tell the test that SIGINT is handled from now on.
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
		return 1
	}
	sleep := cfg.Duration.D()
	if s := os.Getenv(fakeSleepEnv); s != "" {
		sleep, _ = time.ParseDuration(s)
	}
	status, code := loadgen.StatusCompleted, TaskExitCompleted
	switch mode {
	case "fail":
		status, code = loadgen.StatusFailed, TaskExitFailed
		sleep = 0
	case "unreachable":
		fmt.Fprintln(os.Stderr, "target unreachable")
		return TaskExitUnreachable
	}
	select {
	case <-time.After(sleep):
	case <-sig:
		status, code = loadgen.StatusInterrupted, TaskExitInterrupted
	}
	rec.End = time.Now()
	sum := loadgen.Summary{Experiment: cfg.Experiment, Task: cfg.Task, Workload: cfg.Workload.Name, Status: status, Started: rec.Start, Ended: rec.End}
	if err := atomicfile.WriteJSON(filepath.Join(dir, "summary.json"), &sum, 0o644); err != nil {
		return 1
	}
	if err := atomicfile.WriteJSON(filepath.Join(dir, "fake.json"), &rec, 0o644); err != nil {
		return 1
	}
	fmt.Printf("fake task %s ended: %s\n", cfg.Task, status)
	return code
}

// testSpec builds a spec with one workload whose args sweep over modes.
func testSpec(t *testing.T, modes []string, duration string, parallel int, extra string) *Spec {
	t.Helper()
	q := make([]string, len(modes))
	for i, m := range modes {
		q[i] = strconv.Quote(m)
	}
	src := fmt.Sprintf(`[experiment]
name = "local-test"
[target]
url = "http://127.0.0.1:1"
[[workload]]
arrival = "poisson"
rate = 10
[sweep]
"workload.args" = [%s]
[run]
duration = %q
parallel = %d
%s`, "["+strings.Join(q, "], [")+"]", duration, parallel, extra)
	s, err := ParseSpec("local-test.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestExperiment(t *testing.T, s *Spec) *Experiment {
	t.Helper()
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	exp, err := Create(t.TempDir(), s, p, "local")
	if err != nil {
		t.Fatal(err)
	}
	return exp
}

func fakeExecutor(t *testing.T, parallel int) Executor {
	t.Helper()
	t.Setenv(fakeTaskEnv, "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ex, err := NewExecutor("local", ExecutorOptions{Binary: exe, Parallel: parallel, Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func readFake(t *testing.T, exp *Experiment, i int) fakeRecord {
	t.Helper()
	var r fakeRecord
	if err := readJSON(filepath.Join(exp.TaskDir(i), "fake.json"), &r); err != nil {
		t.Fatalf("task %d: %v", i, err)
	}
	return r
}

func readSummary(t *testing.T, exp *Experiment, i int) loadgen.Summary {
	t.Helper()
	var s loadgen.Summary
	if err := readJSON(filepath.Join(exp.Dir, SummaryPath(i)), &s); err != nil {
		t.Fatalf("task %d: %v", i, err)
	}
	return s
}

func TestLocalRunsTasksWithSlurmEnvironment(t *testing.T) {
	s := testSpec(t, []string{"ok", "fail", "ok", "unreachable"}, "200ms", 2, "")
	exp := newTestExperiment(t, s)
	var seen []TaskStatus
	exp.OnTaskUpdate = func(ts TaskStatus) { seen = append(seen, ts) }
	ex := fakeExecutor(t, 0) // parallel from the spec
	if err := Execute(context.Background(), exp, ex, nil); err != nil {
		t.Fatal(err)
	}
	st := exp.Snapshot()
	if st.State != ExpFailed {
		t.Errorf("experiment state %s, want failed", st.State)
	}
	want := []struct {
		state TaskState
		code  int
	}{{TaskCompleted, 0}, {TaskFailed, 1}, {TaskCompleted, 0}, {TaskFailed, 3}}
	abs, _ := filepath.Abs(exp.Dir)
	for i, w := range want {
		ts := st.Tasks[i]
		if ts.State != w.state || ts.ExitCode == nil || *ts.ExitCode != w.code {
			t.Errorf("task %d: state %s exit %v, want %s exit %d (%s)", i, ts.State, ts.ExitCode, w.state, w.code, ts.Error)
		}
		if ts.Start == nil || ts.End == nil || ts.End.Before(*ts.Start) || ts.Attempts != 1 || ts.Log != LogPath(i) {
			t.Errorf("task %d: bad bookkeeping %+v", i, ts)
		}
		log, err := os.ReadFile(filepath.Join(exp.Dir, ts.Log))
		if err != nil || !strings.Contains(string(log), "fake task "+exp.Plan.Tasks[i].Name) {
			t.Errorf("task %d: log %q, %v", i, log, err)
		}
		if w.code == 3 {
			if !strings.Contains(string(log), "target unreachable") {
				t.Errorf("task 3: stderr not in log: %q", log)
			}
			continue
		}
		r := readFake(t, exp, i)
		env := map[string]string{
			"SLURM_ARRAY_TASK_ID":    strconv.Itoa(i),
			"SLURM_ARRAY_TASK_COUNT": "4",
			"SLURM_ARRAY_TASK_MIN":   "0",
			"SLURM_ARRAY_TASK_MAX":   "3",
			"SLURM_JOB_NAME":         exp.ID(),
			"SLURM_SUBMIT_DIR":       abs,
			"GPUORCH_EXPERIMENT_DIR": abs,
			"SLURM_ARRAY_JOB_ID":     strconv.Itoa(os.Getpid()),
		}
		for k, v := range env {
			if r.Env[k] != v {
				t.Errorf("task %d: %s=%q, want %q", i, k, r.Env[k], v)
			}
		}
		if r.Env["SLURM_JOB_ID"] == "" || r.Cwd != abs || r.Args[3] != ManifestPath(i) {
			t.Errorf("task %d: job id %q cwd %q args %q", i, r.Env["SLURM_JOB_ID"], r.Cwd, r.Args)
		}
		if got := readSummary(t, exp, i); got.Experiment != exp.ID() || got.Task != exp.Plan.Tasks[i].Name {
			t.Errorf("task %d: summary names %s/%s", i, got.Experiment, got.Task)
		}
	}
	// Progress reports: each task is seen running, then ended.
	for i := range want {
		var states []TaskState
		for _, ts := range seen {
			if ts.Index == i {
				states = append(states, ts.State)
			}
		}
		if len(states) != 2 || states[0] != TaskRunning || states[1] != want[i].state {
			t.Errorf("task %d updates %v", i, states)
		}
	}
	// state.json on disk says the same as memory.
	again, err := Open(filepath.Dir(exp.Dir), exp.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Snapshot(); got.State != ExpFailed || got.Tasks[3].State != TaskFailed || len(got.Submissions) != 1 {
		t.Errorf("reloaded state %+v", got)
	}
}

func TestLocalParallelism(t *testing.T) {
	for _, par := range []int{1, 3} {
		t.Run(fmt.Sprint("parallel=", par), func(t *testing.T) {
			modes := []string{"ok", "ok", "ok", "ok", "ok", "ok"}
			exp := newTestExperiment(t, testSpec(t, modes, "150ms", 1, ""))
			if err := Execute(context.Background(), exp, fakeExecutor(t, par), nil); err != nil {
				t.Fatal(err)
			}
			if st := exp.Snapshot(); st.State != ExpCompleted {
				t.Fatalf("state %s", st.State)
			}
			// Maximum overlap of the tasks' [start, end) intervals.
			type ev struct {
				at time.Time
				d  int
			}
			var evs []ev
			for i := range modes {
				r := readFake(t, exp, i)
				evs = append(evs, ev{r.Start, +1}, ev{r.End, -1})
			}
			slices.SortFunc(evs, func(a, b ev) int {
				if c := a.at.Compare(b.at); c != 0 {
					return c
				}
				return a.d - b.d
			})
			cur, peak := 0, 0
			for _, e := range evs {
				cur += e.d
				peak = max(peak, cur)
			}
			if peak != par {
				t.Errorf("peak concurrency %d, want %d", peak, par)
			}
		})
	}
}

func TestLocalInterruptAndResume(t *testing.T) {
	exp := newTestExperiment(t, testSpec(t, []string{"ok", "ok", "ok", "ok"}, "20s", 2, ""))
	ex := fakeExecutor(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	running := make(chan struct{}, 4)
	exp.OnTaskUpdate = func(ts TaskStatus) {
		if ts.State == TaskRunning {
			running <- struct{}{}
		}
	}
	done := make(chan error, 1)
	go func() { done <- Execute(ctx, exp, ex, nil) }()
	for range 2 {
		select {
		case <-running:
		case <-time.After(10 * time.Second):
			t.Fatal("tasks did not start")
		}
	}
	waitFiles(t, filepath.Join(exp.TaskDir(0), "ready"), filepath.Join(exp.TaskDir(1), "ready"))
	started := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(started); d > 5*time.Second {
		t.Errorf("interrupt took %s", d)
	}
	st := exp.Snapshot()
	if st.State != ExpInterrupted {
		t.Errorf("experiment %s, want interrupted", st.State)
	}
	for i, want := range []TaskState{TaskInterrupted, TaskInterrupted, TaskPending, TaskPending} {
		if st.Tasks[i].State != want {
			t.Errorf("task %d: %s, want %s", i, st.Tasks[i].State, want)
		}
	}
	for i := range 2 {
		if s := readSummary(t, exp, i); s.Status != loadgen.StatusInterrupted {
			t.Errorf("task %d partial summary status %q", i, s.Status)
		}
		if c := st.Tasks[i].ExitCode; c == nil || *c != TaskExitInterrupted {
			t.Errorf("task %d exit %v", i, c)
		}
	}
	if _, err := os.Stat(filepath.Join(exp.Dir, SummaryPath(2))); !os.IsNotExist(err) {
		t.Errorf("task 2 ran: %v", err)
	}

	// Resume from disk, as `gpuorch run --resume` does: everything not
	// completed runs again, as one new submission.
	t.Setenv(fakeSleepEnv, "50ms")
	again, err := Open(filepath.Dir(exp.Dir), exp.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Snapshot(); !slices.Equal(got.Incomplete(), []int{0, 1, 2, 3}) {
		t.Fatalf("incomplete %v", got.Incomplete())
	}
	if err := Execute(context.Background(), again, ex, nil); err != nil {
		t.Fatal(err)
	}
	st = again.Snapshot()
	if st.State != ExpCompleted || len(st.Submissions) != 2 {
		t.Errorf("after resume: %s, %d submissions", st.State, len(st.Submissions))
	}
	for i, ts := range st.Tasks {
		wantAttempts := 1
		if i < 2 {
			wantAttempts = 2
		}
		if ts.State != TaskCompleted || ts.Attempts != wantAttempts {
			t.Errorf("task %d: %s after %d attempts", i, ts.State, ts.Attempts)
		}
		if s := readSummary(t, again, i); s.Status != loadgen.StatusCompleted {
			t.Errorf("task %d summary %q", i, s.Status)
		}
	}
	// A resume of a completed experiment runs nothing.
	if err := Execute(context.Background(), again, ex, nil); err != nil || len(again.Snapshot().Submissions) != 2 {
		t.Errorf("second resume: %v, %d submissions", err, len(again.Snapshot().Submissions))
	}
}

func TestLocalTimeoutKillsStuckTask(t *testing.T) {
	exp := newTestExperiment(t, testSpec(t, []string{"hang", "ok"}, "30s", 2, `task_timeout = "300ms"`))
	t0 := time.Now()
	if err := Execute(context.Background(), exp, fakeExecutor(t, 0), nil); err != nil {
		t.Fatal(err)
	}
	// The hanging task ignores SIGINT: it is killed after the 1 s grace.
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	st := exp.Snapshot()
	if st.Tasks[0].State != TaskTimeout || st.Tasks[1].State != TaskTimeout {
		t.Errorf("states %s %s, want timeout", st.Tasks[0].State, st.Tasks[1].State)
	}
	if st.State != ExpFailed {
		t.Errorf("experiment %s", st.State)
	}
}

func TestLocalCancelPending(t *testing.T) {
	exp := newTestExperiment(t, testSpec(t, []string{"ok", "ok", "ok"}, "100ms", 1, ""))
	ex := fakeExecutor(t, 1)
	if err := ex.Cancel(context.Background(), exp, []int{1}); err != nil {
		t.Fatal(err)
	}
	if err := Execute(context.Background(), exp, ex, []int{0, 2}); err != nil {
		t.Fatal(err)
	}
	st := exp.Snapshot()
	if st.Tasks[1].State != TaskCancelled || st.Tasks[0].State != TaskCompleted || st.Tasks[2].State != TaskCompleted {
		t.Errorf("states %v", []TaskState{st.Tasks[0].State, st.Tasks[1].State, st.Tasks[2].State})
	}
	if st.State != ExpCancelled {
		t.Errorf("experiment %s, want cancelled (a task was cancelled, none failed)", st.State)
	}
	r := readFake(t, exp, 2)
	if r.Env["SLURM_ARRAY_TASK_COUNT"] != "2" || r.Env["SLURM_ARRAY_TASK_MIN"] != "0" || r.Env["SLURM_ARRAY_TASK_MAX"] != "2" {
		t.Errorf("array env for a partial submission: %v", r.Env)
	}
}

func TestLocalRefreshMarksOrphans(t *testing.T) {
	exp := newTestExperiment(t, testSpec(t, []string{"ok"}, "1s", 1, ""))
	host, _ := os.Hostname()
	// A task that claims to run in a process that no longer exists.
	cmdDone := startAndReap(t)
	if err := exp.UpdateTask(0, func(ts *TaskStatus) { ts.State, ts.PID, ts.Node = TaskRunning, cmdDone, host }); err != nil {
		t.Fatal(err)
	}
	_ = exp.SetState(ExpRunning, "")
	if err := fakeExecutor(t, 1).Refresh(context.Background(), exp); err != nil {
		t.Fatal(err)
	}
	st := exp.Snapshot()
	if st.Tasks[0].State != TaskInterrupted || st.State != ExpInterrupted {
		t.Errorf("after refresh: task %s, experiment %s", st.Tasks[0].State, st.State)
	}
}

// TestLocalRefreshReadsSummary: a task whose process and gpuorch are gone
// ended as its own summary.json says, when this attempt wrote one (a killed
// gpuorch does not stop the task, which finishes on its own); without one,
// or with only an earlier attempt's, it is interrupted and runs again.
func TestLocalRefreshReadsSummary(t *testing.T) {
	host, _ := os.Hostname()
	start := time.Now().UTC().Add(-time.Minute)
	for _, tc := range []struct {
		name    string
		summary *loadgen.Summary
		want    TaskState
		msg     string
	}{
		{"completed", &loadgen.Summary{Status: loadgen.StatusCompleted, Ended: start.Add(30 * time.Second)}, TaskCompleted, ""},
		{"failed", &loadgen.Summary{Status: loadgen.StatusFailed, Error: "no successful request", Ended: start.Add(time.Second)}, TaskFailed, "no successful request (its gpuorch process went away; state from its summary.json)"},
		{"interrupted", &loadgen.Summary{Status: loadgen.StatusInterrupted, Ended: start.Add(time.Second)}, TaskInterrupted, "interrupted (its gpuorch process went away; state from its summary.json)"},
		{"an earlier attempt's", &loadgen.Summary{Status: loadgen.StatusCompleted, Ended: start.Add(-time.Second)}, TaskInterrupted, "its gpuorch process went away while it ran"},
		{"none", nil, TaskInterrupted, "its gpuorch process went away while it ran"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := newTestExperiment(t, testSpec(t, []string{"ok"}, "1s", 1, ""))
			if tc.summary != nil {
				b, _ := json.Marshal(tc.summary)
				if err := os.WriteFile(filepath.Join(exp.Dir, SummaryPath(0)), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			pid, runner := startAndReap(t), zombie(t)
			if err := exp.UpdateTask(0, func(ts *TaskStatus) {
				ts.State, ts.PID, ts.Runner, ts.Node, ts.Start = TaskRunning, pid, runner, host, &start
			}); err != nil {
				t.Fatal(err)
			}
			_ = exp.SetState(ExpRunning, "")
			if err := fakeExecutor(t, 1).Refresh(context.Background(), exp); err != nil {
				t.Fatal(err)
			}
			ts := exp.Snapshot().Tasks[0]
			if ts.State != tc.want || ts.Error != tc.msg || ts.End == nil {
				t.Errorf("after refresh: %s %q (end %v), want %s %q", ts.State, ts.Error, ts.End, tc.want, tc.msg)
			}
			if tc.summary != nil && ts.End != nil && tc.msg != "its gpuorch process went away while it ran" && !ts.End.Equal(tc.summary.Ended) {
				t.Errorf("end %v, want the summary's %v", ts.End, tc.summary.Ended)
			}
		})
	}
}

// zombie returns the pid of a child that has exited but is not reaped: a
// process that kill(pid, 0) still finds.
func zombie(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child did not become a zombie")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if syscall.Kill(p.Pid, 0) != nil {
		t.Fatal("kill(pid, 0) does not find the zombie")
	}
	if alive(p.Pid) {
		t.Error("alive: a zombie counts as running")
	}
	return p.Pid
}

// startAndReap returns the pid of a process that has exited and been reaped.
func startAndReap(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	return p.Pid
}

// waitFiles waits until every path exists.
func waitFiles(t *testing.T, paths ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range paths {
		for {
			if _, err := os.Stat(p); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not appear", p)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestLocalCancelRunning(t *testing.T) {
	exp := newTestExperiment(t, testSpec(t, []string{"ok", "ok"}, "20s", 2, ""))
	ex := fakeExecutor(t, 0)
	done := make(chan error, 1)
	go func() { done <- Execute(context.Background(), exp, ex, nil) }()
	waitFiles(t, filepath.Join(exp.TaskDir(0), "ready"), filepath.Join(exp.TaskDir(1), "ready"))
	if err := ex.Cancel(context.Background(), exp, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelled tasks kept running")
	}
	st := exp.Snapshot()
	for i, ts := range st.Tasks {
		if ts.State != TaskCancelled {
			t.Errorf("task %d: %s, want cancelled", i, ts.State)
		}
		// Cancelled tasks still write their partial results.
		if s := readSummary(t, exp, i); s.Status != loadgen.StatusInterrupted {
			t.Errorf("task %d summary %q", i, s.Status)
		}
	}
	if st.State != ExpCancelled {
		t.Errorf("experiment %s, want cancelled", st.State)
	}
}

// TestLocalCancelFromAnotherProcess: `gpuorch cancel` in another process
// (here: another Experiment and executor on the same directory, sharing no
// memory with the run) cancels the running task and the pending ones; the run
// interrupts the first, starts none of the others, and does not overwrite the
// cancellation.
func TestLocalCancelFromAnotherProcess(t *testing.T) {
	exp := newTestExperiment(t, testSpec(t, []string{"ok", "ok", "ok"}, "20s", 1, ""))
	ex := fakeExecutor(t, 1)
	done := make(chan error, 1)
	go func() { done <- Execute(context.Background(), exp, ex, nil) }()
	waitFiles(t, filepath.Join(exp.TaskDir(0), "ready"))

	other, err := Open(filepath.Dir(exp.Dir), exp.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := fakeExecutor(t, 1).Cancel(context.Background(), other, nil); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the run went on after the cancel")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("the running task took %s to stop", d)
	}
	st, err := readState(exp.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, ts := range st.Tasks {
		if ts.State != TaskCancelled {
			t.Errorf("task %d: %s (%s), want cancelled", i, ts.State, ts.Error)
		}
		if i > 0 {
			if _, err := os.Stat(filepath.Join(exp.TaskDir(i), "ready")); !os.IsNotExist(err) {
				t.Errorf("cancelled task %d started", i)
			}
		}
	}
	if c := st.Tasks[0].ExitCode; c == nil || *c != TaskExitInterrupted {
		t.Errorf("task 0 exit %v, want 130 (interrupted, partial results)", c)
	}
	if s := readSummary(t, exp, 0); s.Status != loadgen.StatusInterrupted {
		t.Errorf("task 0 summary %q", s.Status)
	}
	if st.State != ExpCancelled || exp.Snapshot().State != ExpCancelled {
		t.Errorf("experiment %s on disk, %s in the run; want cancelled", st.State, exp.Snapshot().State)
	}
}

// TestUpdateAcrossProcesses: two Experiments on one directory (as a run and
// a status refresh in two processes) updating concurrently lose nothing:
// Update is a read-modify-write under the file lock.
func TestUpdateAcrossProcesses(t *testing.T) {
	a := newTestExperiment(t, testSpec(t, []string{"ok", "ok"}, "1s", 1, ""))
	b, err := Open(filepath.Dir(a.Dir), a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	errs := make(chan error, 2)
	for k, e := range []*Experiment{a, b} {
		go func() {
			for range n {
				if err := e.UpdateTask(k, func(ts *TaskStatus) { ts.Attempts++ }); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st, err := readState(a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tasks[0].Attempts != n || st.Tasks[1].Attempts != n {
		t.Errorf("attempts %d and %d, want %d each (an update was lost)", st.Tasks[0].Attempts, st.Tasks[1].Attempts, n)
	}
}

// TestResumeSkipsLiveTasks: a resume runs what did not complete, but not
// tasks the executor still has (pending or running with a job id).
func TestResumeSkipsLiveTasks(t *testing.T) {
	st := State{Tasks: []TaskStatus{
		{Index: 0, State: TaskCompleted, JobID: "7_0"},
		{Index: 1, State: TaskFailed, JobID: "7_1"},
		{Index: 2, State: TaskRunning, JobID: "7_2"},
		{Index: 3, State: TaskPending, JobID: "7_3"},
		{Index: 4, State: TaskPending},
		{Index: 5, State: TaskCancelled, JobID: "7_5"},
		{Index: 6, State: TaskInterrupted},
	}}
	if got := ResumeIndices(&st); !slices.Equal(got, []int{1, 4, 5, 6}) {
		t.Errorf("ResumeIndices = %v, want [1 4 5 6]", got)
	}
}

// unavailableExecutor refuses every submission the way the Slurm executor
// does when slurmctld cannot be reached; it tests Execute's bookkeeping.
type unavailableExecutor struct{ calls int }

func (u *unavailableExecutor) Name() string { return "unavailable" }
func (u *unavailableExecutor) Submit(ctx context.Context, exp *Experiment, indices []int) error {
	u.calls++
	return fmt.Errorf("%w: cannot reach the batch system", errkind.ErrUnavailable)
}
func (u *unavailableExecutor) Refresh(ctx context.Context, exp *Experiment) error { return nil }
func (u *unavailableExecutor) Cancel(ctx context.Context, exp *Experiment, indices []int) error {
	return nil
}

func TestExecuteSubmitFailureIsResumable(t *testing.T) {
	exp := newTestExperiment(t, testSpec(t, []string{"ok", "ok"}, "50ms", 1, ""))
	err := Execute(context.Background(), exp, &unavailableExecutor{}, nil)
	if !errors.Is(err, errkind.ErrUnavailable) {
		t.Fatalf("err %v", err)
	}
	st := exp.Snapshot()
	if st.State != ExpNotSubmitted || !strings.Contains(st.Error, "cannot reach") || st.Executor != "unavailable" || len(st.Submissions) != 1 {
		t.Fatalf("state %+v", st)
	}
	// Later, from disk, with a working executor.
	again, err := Open(filepath.Dir(exp.Dir), exp.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := Execute(context.Background(), again, fakeExecutor(t, 0), nil); err != nil {
		t.Fatal(err)
	}
	if st := again.Snapshot(); st.State != ExpCompleted || len(st.Submissions) != 2 || st.Executor != "local" {
		t.Errorf("after resume: %s, %d submissions, executor %s", st.State, len(st.Submissions), st.Executor)
	}
}
