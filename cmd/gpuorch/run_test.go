package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/orchestrator"
)

// TestMain: run with GPUORCH_TEST_MAIN_ARGS set (a JSON array of
// arguments), the test binary is the gpuorch binary, so that subprocess
// tests exercise the CLI's real exit codes and signal handling.
func TestMain(m *testing.M) {
	// The test binary is gpuorch when a test asks for it: with its
	// arguments in GPUORCH_TEST_MAIN_ARGS (from the shim or a test), or on
	// its command line when a gpuorch it started (an executor, a wrapper)
	// runs it again. The second variable makes those children gpuorch too,
	// instead of re-running the first one's arguments or the tests.
	const asGpuorch = "GPUORCH_TEST_AS_GPUORCH"
	if raw := os.Getenv("GPUORCH_TEST_MAIN_ARGS"); raw != "" {
		var args []string
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			panic(err)
		}
		os.Unsetenv("GPUORCH_TEST_MAIN_ARGS")
		os.Setenv(asGpuorch, "1")
		os.Args = append([]string{"gpuorch"}, args...)
		main()
		os.Exit(0)
	}
	if os.Getenv(asGpuorch) == "1" {
		os.Args[0] = "gpuorch"
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeTaskScript stands in for `gpuorch loadgen run --manifest M`: it exits
// with $FAKE_EXIT_<task index> (default 0), sleeps $FAKE_SLEEP_<task index>
// or else $FAKE_SLEEP seconds if set, and on SIGINT writes an interrupted
// summary and exits 130.
const fakeTaskScript = `#!/bin/sh
d=$(dirname "$4")
trap 'echo "{\"status\":\"interrupted\"}" > "$d/summary.json"; exit 130' INT
[ -n "$FAKE_IGNORE_INT" ] && trap '' INT
echo "fake task $SLURM_ARRAY_TASK_ID: $*"
eval code=\${FAKE_EXIT_$SLURM_ARRAY_TASK_ID:-0}
eval pause=\${FAKE_SLEEP_$SLURM_ARRAY_TASK_ID:-$FAKE_SLEEP}
if [ -n "$pause" ]; then
  sleep "$pause" & wait $!
fi
echo '{"status":"completed"}' > "$d/summary.json"
exit $code
`

const cliSpec = `[experiment]
name = "cli-test"
[target]
url = "http://127.0.0.1:9"
protocol = "kserve"
models = ["m"]
[[workload]]
arrival = "poisson"
rate = 10
[sweep]
"workload.rate" = [1, 2, 3]
[run]
duration = "1s"
`

type cliEnv struct {
	t    *testing.T
	home string
	spec string
	fake string
	env  []string
}

func newCLIEnv(t *testing.T) *cliEnv {
	dir := t.TempDir()
	e := &cliEnv{t: t, home: filepath.Join(dir, "runs"), spec: filepath.Join(dir, "spec.toml"), fake: filepath.Join(dir, "fake-gpuorch")}
	if err := os.WriteFile(e.spec, []byte(cliSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.fake, []byte(fakeTaskScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *cliEnv) command(extraEnv []string, args ...string) *exec.Cmd {
	b, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "GPUORCH_TEST_MAIN_ARGS="+string(b), "GPUORCH_HOME="+e.home)
	cmd.Env = append(cmd.Env, e.env...)
	cmd.Env = append(cmd.Env, extraEnv...)
	return cmd
}

func (e *cliEnv) run(extraEnv []string, args ...string) (stdout, stderr string, code int) {
	cmd := e.command(extraEnv, args...)
	var o, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &se
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return o.String(), se.String(), code
}

func (e *cliEnv) state(id string) orchestrator.State {
	e.t.Helper()
	exp, err := orchestrator.Open(e.home, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return exp.Snapshot()
}

func TestRunCLIDryRun(t *testing.T) {
	e := newCLIEnv(t)
	out, errOut, code := e.run(nil, "run", "--dry-run", e.spec)
	if code != 0 || !strings.Contains(out, "t002-rate=3") || !strings.Contains(out, "3 tasks") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = e.run(nil, "run", "--dry-run", "--json", "--set", "sweep.seed=[5, 6]", e.spec)
	var p orchestrator.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil || code != 0 {
		t.Fatalf("exit %d, %v: %s", code, err, out)
	}
	if len(p.Tasks) != 6 || p.Tasks[5].Config.Seed != 6 || p.Overrides[0] != "sweep.seed=[5, 6]" {
		t.Errorf("plan %+v", p)
	}
	if _, err := os.Stat(e.home); !os.IsNotExist(err) {
		t.Errorf("dry run created %s", e.home)
	}
}

func TestRunCLIBadInput(t *testing.T) {
	e := newCLIEnv(t)
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte(strings.Replace(cliSpec, "rate = 10", "rte = 10", 1)), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", bad}, bad + `:9: unknown key "workload.rte" (did you mean "rate"?)`},
		{[]string{"run", "--set", "target.url=ftp://x", e.spec}, `target.url "ftp://x": want an http:// or https:// URL`},
		{[]string{"run", "--executor", "k8s", e.spec}, `unknown executor "k8s"`},
		{[]string{"run"}, "want one SPEC.toml argument"},
		{[]string{"run", "--resume", "nope"}, `open experiment "nope"`},
	} {
		_, errOut, code := e.run(nil, c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", c.args, code, errOut, c.want)
		}
	}
	if _, err := os.Stat(e.home); !os.IsNotExist(err) {
		t.Errorf("bad input created %s", e.home)
	}
}

func TestRunCLIOutcomes(t *testing.T) {
	e := newCLIEnv(t)
	// All complete: exit 0, the id on stdout.
	out, errOut, code := e.run(nil, "run", "--binary", e.fake, e.spec)
	id := strings.TrimSpace(out)
	if code != 0 || !orchestrator.NameRE.MatchString(id) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if st := e.state(id); st.State != orchestrator.ExpCompleted {
		t.Errorf("state %s", st.State)
	}
	log, _ := os.ReadFile(filepath.Join(e.home, id, "tasks", "1", "log"))
	if !strings.Contains(string(log), "fake task 1: loadgen run --manifest tasks/1/manifest.json") {
		t.Errorf("task log %q", log)
	}

	// --json, one task failing: exit 1 and the JSON says which.
	out, errOut, code = e.run([]string{"FAKE_EXIT_1=1"}, "run", "--json", "--binary", e.fake, "--parallel", "3", e.spec)
	var res struct {
		ID    string                    `json:"id"`
		Dir   string                    `json:"dir"`
		State string                    `json:"state"`
		Tasks []orchestrator.TaskStatus `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if code != exitFailure || res.State != "failed" || res.Tasks[1].State != orchestrator.TaskFailed || *res.Tasks[1].ExitCode != 1 || res.Tasks[0].State != orchestrator.TaskCompleted {
		t.Errorf("exit %d, result %+v", code, res)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, "state.json")); err != nil {
		t.Errorf("dir in JSON: %v", err)
	}

	// Every task finds the target unreachable: exit 3.
	_, errOut, code = e.run([]string{"FAKE_EXIT_0=3", "FAKE_EXIT_1=3", "FAKE_EXIT_2=3"}, "run", "--binary", e.fake, e.spec)
	if code != exitUnavailable || !strings.Contains(errOut, "target unreachable") {
		t.Errorf("unreachable: exit %d, stderr %q", code, errOut)
	}
}

func TestRunCLIInterruptAndResume(t *testing.T) {
	e := newCLIEnv(t)
	cmd := e.command([]string{"FAKE_SLEEP=30"}, "run", "--binary", e.fake, e.spec)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the first task to run.
	deadline := time.Now().Add(20 * time.Second)
	var id string
	for time.Now().Before(deadline) {
		if list, _ := orchestrator.List(e.home); len(list) == 1 && list[0].Counts[orchestrator.TaskRunning] == 1 {
			id = list[0].ID
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if id == "" {
		cmd.Process.Kill()
		t.Fatalf("task never started: %s", errOut.String())
	}
	// The fake prints its first line once its trap is set.
	for !strings.Contains(readFile(filepath.Join(e.home, id, "tasks", "0", "log")), "fake task 0") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("task 0 never said it was ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("exit %v, want 130; stderr %s", err, errOut.String())
	}
	st := e.state(id)
	if st.State != orchestrator.ExpInterrupted || st.Tasks[0].State != orchestrator.TaskInterrupted || st.Tasks[1].State != orchestrator.TaskPending {
		t.Fatalf("after interrupt: %s %s %s", st.State, st.Tasks[0].State, st.Tasks[1].State)
	}
	if b, _ := os.ReadFile(filepath.Join(e.home, id, "tasks", "0", "summary.json")); !strings.Contains(string(b), "interrupted") {
		t.Errorf("partial summary %q", b)
	}
	if !strings.Contains(errOut.String(), "resume with: gpuorch run --resume "+id) {
		t.Errorf("no resume hint: %s", errOut.String())
	}

	// What a resume would run; --set does not apply to a saved plan.
	out2, _, code := e.run(nil, "run", "--dry-run", "--json", "--resume", id)
	var p orchestrator.Plan
	if err := json.Unmarshal([]byte(out2), &p); err != nil || code != 0 || len(p.Tasks) != 3 || p.Tasks[0].Index != 0 {
		t.Errorf("resume dry run: exit %d, %v, %d tasks", code, err, len(p.Tasks))
	}
	if _, errOut, code := e.run(nil, "run", "--set", "run.seed=1", "--resume", id); code != exitUsage || !strings.Contains(errOut, "saved plan") {
		t.Errorf("--set with --resume: exit %d, %q", code, errOut)
	}

	// Resume by name (its latest run): the rest runs and completes.
	_, stderr, code2 := e.run(nil, "run", "--binary", e.fake, "--resume", "cli-test")
	if code2 != 0 {
		t.Fatalf("resume: exit %d: %s", code2, stderr)
	}
	st = e.state(id)
	if st.State != orchestrator.ExpCompleted || st.Tasks[0].Attempts != 2 || st.Tasks[2].Attempts != 1 {
		t.Errorf("after resume: %s, attempts %d %d", st.State, st.Tasks[0].Attempts, st.Tasks[2].Attempts)
	}
}

// A task that ignores SIGINT would hold gpuorch for the 30 s grace period; a
// second Ctrl-C kills it at once.
func TestRunCLISecondInterruptKills(t *testing.T) {
	e := newCLIEnv(t)
	cmd := e.command([]string{"FAKE_SLEEP=60", "FAKE_IGNORE_INT=1"}, "run", "--binary", e.fake, e.spec)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var id string
	for id == "" || !strings.Contains(readFile(filepath.Join(e.home, id, "tasks", "0", "log")), "fake task 0") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("task never started: %s", errOut.String())
		}
		if list, _ := orchestrator.List(e.home); len(list) == 1 {
			id = list[0].ID
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("exit %v, want 130; stderr %s", err, errOut.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("second Ctrl-C took %s to end the run", d)
	}
	if !strings.Contains(errOut.String(), "Ctrl-C again to kill them") || !strings.Contains(errOut.String(), "killing the running tasks") {
		t.Errorf("stderr %q", errOut.String())
	}
	if st := e.state(id); st.State != orchestrator.ExpInterrupted || st.Tasks[0].State != orchestrator.TaskInterrupted {
		t.Errorf("state %s, task 0 %s", st.State, st.Tasks[0].State)
	}
}

func TestRunCLISpecFromStdin(t *testing.T) {
	e := newCLIEnv(t)
	cmd := e.command(nil, "run", "--dry-run", "-")
	cmd.Stdin = strings.NewReader(strings.Replace(cliSpec, "rate = 10", "rte = 10", 1))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(string(out), `<stdin>:9: unknown key "workload.rte"`) {
		t.Errorf("%v: %s", err, out)
	}
}

func TestExperimentsList(t *testing.T) {
	e := newCLIEnv(t)
	if _, _, code := e.run(nil, "run", "--binary", e.fake, e.spec); code != 0 {
		t.Fatal("run failed")
	}
	out, _, code := e.run(nil, "experiments", "list", "--json")
	var list []orchestrator.Summary
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 || len(list) != 1 || list[0].Counts[orchestrator.TaskCompleted] != 3 {
		t.Errorf("exit %d, %v, %s", code, err, out)
	}
	out, _, _ = e.run(nil, "experiments", "list")
	if !strings.Contains(out, "3/3 completed") {
		t.Errorf("table %q", out)
	}
}

// startRun starts `gpuorch run` in the background and waits until its
// first task runs and has set its SIGINT trap; it returns the experiment id.
func (e *cliEnv) startRun(t *testing.T, extraEnv []string, args ...string) (*exec.Cmd, *bytes.Buffer, string) {
	t.Helper()
	cmd := e.command(extraEnv, append([]string{"run", "--binary", e.fake}, args...)...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	deadline := time.Now().Add(20 * time.Second)
	var id string
	started := func() bool {
		if id == "" || !strings.Contains(readFile(filepath.Join(e.home, id, "tasks", "0", "log")), "fake task 0") {
			return false
		}
		st := e.state(id) // and the run has recorded it
		return st.Tasks[0].State == orchestrator.TaskRunning && st.Tasks[0].PID > 0
	}
	for !started() {
		if time.Now().After(deadline) {
			t.Fatalf("task 0 never started: %s", errOut.String())
		}
		if list, _ := orchestrator.List(e.home); len(list) == 1 {
			id = list[0].ID
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, &errOut, id
}

// TestRunCLICancelFromAnotherProcess: `gpuorch cancel` in another process
// stops a local run: the running task is interrupted (and keeps its partial
// results), the pending ones never start, the run exits 1 and the
// experiment is cancelled — also in what the run itself saved last.
func TestRunCLICancelFromAnotherProcess(t *testing.T) {
	e := newCLIEnv(t)
	cmd, errOut, id := e.startRun(t, []string{"FAKE_SLEEP=30"}, e.spec)
	_, cerr, code := e.run(nil, "cancel", id)
	if code != 0 || !strings.Contains(cerr, "3 task(s) cancelled") {
		t.Fatalf("cancel: exit %d, %q", code, cerr)
	}
	t0 := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("the run went on after the cancel: %s", errOut.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
		t.Errorf("run exit %v, want 1; stderr %s", err, errOut.String())
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("run took %s to stop", d)
	}
	st := e.state(id)
	for i, ts := range st.Tasks {
		if ts.State != orchestrator.TaskCancelled {
			t.Errorf("task %d: %s, want cancelled", i, ts.State)
		}
	}
	if st.State != orchestrator.ExpCancelled {
		t.Errorf("experiment %s, want cancelled", st.State)
	}
	if b := readFile(filepath.Join(e.home, id, "tasks", "0", "summary.json")); !strings.Contains(b, "interrupted") {
		t.Errorf("task 0 partial summary %q", b)
	}
	for _, i := range []string{"1", "2"} {
		if _, err := os.Stat(filepath.Join(e.home, id, "tasks", i, "log")); !os.IsNotExist(err) {
			t.Errorf("cancelled task %s started", i)
		}
	}
	out, _, code := e.run(nil, "status", id)
	if code != exitFailure || !strings.Contains(out, id+"  cancelled") || !strings.Contains(out, "resume with: gpuorch run --resume "+id) {
		t.Errorf("status: exit %d\n%s", code, out)
	}
}

// TestCancelOrphanedTask: when the gpuorch run that started a task is gone
// (killed) but the task still runs, cancel interrupts the task itself.
func TestCancelOrphanedTask(t *testing.T) {
	e := newCLIEnv(t)
	cmd, _, id := e.startRun(t, []string{"FAKE_SLEEP=30"}, e.spec)
	cmd.Process.Kill() // the task, in its own process group, runs on
	cmd.Wait()
	_, cerr, code := e.run(nil, "cancel", id)
	if code != 0 {
		t.Fatalf("cancel: exit %d, %q", code, cerr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(readFile(filepath.Join(e.home, id, "tasks", "0", "summary.json")), "interrupted") {
		if time.Now().After(deadline) {
			t.Fatal("the orphaned task was not interrupted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := e.state(id); st.State != orchestrator.ExpCancelled || st.Tasks[0].State != orchestrator.TaskCancelled {
		t.Errorf("state %s, task 0 %s", st.State, st.Tasks[0].State)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
