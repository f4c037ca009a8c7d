package orchestrator

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sbatch"
)

// TestSlurmJobShards: a sharded task is an array task of run.shards nodes
// whose one job step (srun) runs a shard per node, then the merge.
func TestSlurmJobShards(t *testing.T) {
	s := testSpec(t, []string{"ok", "ok"}, "10s", 1, "")
	s.Run.Shards = 4
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if p.Tasks[1].Config.Shards != 4 {
		t.Fatalf("task manifest has shards = %d", p.Tasks[1].Config.Shards)
	}
	job, err := SlurmJob(p, "exp-1", t.TempDir(), "/opt/gpuorch", []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	script, err := job.Render()
	if err != nil {
		t.Fatal(err)
	}
	manifest := `--manifest "${GPUORCH_EXPERIMENT_DIR}"/tasks/"${SLURM_ARRAY_TASK_ID}"/manifest.json`
	for _, want := range []string{
		"#SBATCH --nodes=4\n", "#SBATCH --ntasks-per-node=1\n",
		"\nsrun '--nodes=4' '--ntasks=4' '--ntasks-per-node=1' '--kill-on-bad-exit=0' --label /opt/gpuorch loadgen run " + manifest + " --shard slurm\n",
		"\nexec /opt/gpuorch loadgen run " + manifest + " --shard merge\n",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if strings.Count(script, "\nexec ") != 1 || strings.Index(script, "srun ") > strings.Index(script, "exec ") {
		t.Errorf("the merge must come last, after the job step:\n%s", script)
	}
}

// TestSlurmJobShardsCPUs: slurm.cpus_per_task reaches the job step too (a
// step no longer inherits it since Slurm 22.05).
func TestSlurmJobShardsCPUs(t *testing.T) {
	s := testSpec(t, []string{"ok"}, "10s", 1, "[slurm]\ncpus_per_task = 3\n")
	s.Run.Shards = 2
	script := renderTask0(t, s)
	for _, want := range []string{"#SBATCH --cpus-per-task=3\n", "\nsrun '--nodes=2' '--ntasks=2' '--ntasks-per-node=1' '--cpus-per-task=3' '--kill-on-bad-exit=0' --label "} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
}

func TestSlurmJobRender(t *testing.T) {
	s := testSpec(t, []string{"ok", "ok", "ok", "ok"}, "10s", 1, `[slurm]
partition = "debug"
qos = "high"
throttle = 2
mem = "200M"
gres = "shard:2"
comment = "it's \"mine\" # really"
extra_args = ["--gpu-bind=closest", "--exclusive"]
[slurm.env]
HF_HOME = "/data/hf cache"
`)
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "exp one")
	job, err := SlurmJob(p, "exp-1", dir, "/opt/gpuorch/bin/gpuorch", []int{0, 1, 3})
	if err != nil {
		t.Fatal(err)
	}
	script, err := job.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"#SBATCH --array=0-1,3%2\n",
		"#SBATCH --partition=debug\n",
		"#SBATCH --qos=high\n",
		"#SBATCH --gres=shard:2\n",
		"#SBATCH --time=00:02:20\n",
		`#SBATCH --output="` + dir + `/tasks/%a/log"` + "\n",
		`#SBATCH --comment="it's \"mine\" # really"` + "\n",
		"#SBATCH --gpu-bind=closest\n",
		"#SBATCH --exclusive\n",
		"export GPUORCH_EXPERIMENT_DIR='" + dir + "'\n",
		"export HF_HOME='/data/hf cache'\n",
		`exec /opt/gpuorch/bin/gpuorch loadgen run --manifest "${GPUORCH_EXPERIMENT_DIR}"/tasks/"${SLURM_ARRAY_TASK_ID}"/manifest.json`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	for _, bad := range []struct{ extra, want string }{
		{`extra_args = ["--array=1-2"]`, "set by gpuorch"},
		{`extra_args = ["-N2"]`, "long option"},
		{`time = "1 hour"`, "time:"},
		{"[slurm.env]\n\"A B\" = \"x\"", "environment variable name"},
	} {
		s := testSpec(t, []string{"ok"}, "1s", 1, "[slurm]\n"+bad.extra+"\n")
		p, err := s.Plan()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := SlurmJob(p, "e", t.TempDir(), "/bin/true", []int{0}); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: err = %v, want %q", bad.extra, err, bad.want)
		}
	}
	// A '%' in the experiment directory is literal in --output (escaped as
	// "%%"); a backslash, which Slurm's patterns cannot carry, is refused.
	job, err = SlurmJob(p, "e", "/tmp/100%x", "/bin/true", []int{0})
	if err != nil {
		t.Fatalf("experiment dir with %%: %v", err)
	}
	if script, err := job.Render(); err != nil || !strings.Contains(script, "#SBATCH --output=/tmp/100%%x/tasks/%a/log\n") {
		t.Errorf("experiment dir with %%: %v\n%s", err, script)
	}
	if _, err := SlurmJob(p, "e", `/tmp/a\b`, "/bin/true", []int{0}); err == nil || !strings.Contains(err.Error(), "backslash") {
		t.Errorf("experiment dir with a backslash: %v", err)
	}
	// gpuorch's own options, also abbreviated as sbatch accepts them.
	for _, a := range []string{"--output=/x", "--out=/x/%j", "--err=/e", "--chdir=/"} {
		s := testSpec(t, []string{"ok"}, "1s", 1, "[slurm]\nextra_args = ['"+a+"']\n")
		p, err := s.Plan()
		if err == nil {
			_, err = SlurmJob(p, "e", t.TempDir(), "/bin/true", []int{0})
		}
		if err == nil || !strings.Contains(err.Error(), "set by gpuorch") {
			t.Errorf("extra_args %s: %v", a, err)
		}
	}
}

// slurmTestExecutor is the Slurm executor running the test binary as the
// fake task (TestMain), with fast polling.
func slurmTestExecutor(t *testing.T) *Slurm {
	t.Helper()
	testgate.Slurm(t)
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ex, err := NewExecutor("slurm", ExecutorOptions{Binary: exe})
	if err != nil {
		t.Fatal(err)
	}
	sl := ex.(*Slurm)
	// sbatch exports its environment to the job: the task binary becomes
	// the fake task.
	sl.SetClient(&sbatch.Client{Env: []string{fakeTaskEnv + "=1"}})
	return sl
}

func newSlurmExperiment(t *testing.T, s *Spec) *Experiment {
	t.Helper()
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	exp, err := Create(t.TempDir(), s, p, "slurm")
	if err != nil {
		t.Fatal(err)
	}
	return exp
}

// waitSlurm refreshes until every task is terminal.
func waitSlurm(t *testing.T, ctx context.Context, ex Executor, exp *Experiment) State {
	t.Helper()
	for {
		if err := ex.Refresh(ctx, exp); err != nil {
			t.Fatalf("refresh: %v", err)
		}
		st := exp.Snapshot()
		done := true
		for _, ts := range st.Tasks {
			if !ts.State.Terminal() {
				done = false
			}
		}
		if done {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("tasks did not finish: %+v", st.Tasks)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// TestSlurmArrayRunAndRetry submits a 4-point sweep as one array job (two
// tasks fail), follows it to the end through squeue/sacct, then retries
// exactly the failed tasks as a new array.
func TestSlurmArrayRunAndRetry(t *testing.T) {
	ex := slurmTestExecutor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s := testSpec(t, []string{"ok", "fail", "ok", "unreachable"}, "100ms", 1, "[slurm]\nthrottle = 4\n")
	exp := newSlurmExperiment(t, s)
	if err := Execute(ctx, exp, ex, nil); err != nil {
		t.Fatal(err)
	}
	st := exp.Snapshot()
	if st.State != ExpSubmitted && st.State != ExpRunning {
		t.Fatalf("state after submit: %s", st.State)
	}
	sub := st.Submissions[0]
	if sub.JobID == "" || sub.Script == "" || len(st.Submissions) != 1 {
		t.Fatalf("submission not recorded: %+v", st.Submissions)
	}
	script, err := os.ReadFile(filepath.Join(exp.Dir, sub.Script))
	if err != nil || !strings.Contains(string(script), "#SBATCH --array=0-3%4\n") {
		t.Fatalf("saved script: %v\n%s", err, script)
	}
	st = waitSlurm(t, ctx, ex, exp)
	want := []struct {
		state TaskState
		code  int
	}{{TaskCompleted, 0}, {TaskFailed, 1}, {TaskCompleted, 0}, {TaskFailed, 3}}
	for i, w := range want {
		ts := st.Tasks[i]
		if ts.State != w.state || ts.ExitCode == nil || *ts.ExitCode != w.code {
			t.Errorf("task %d: %s exit %v (%s), want %s exit %d", i, ts.State, ts.ExitCode, ts.Error, w.state, w.code)
		}
		if ts.JobID != sub.JobID+"_"+string(rune('0'+i)) || ts.Node == "" || ts.Start == nil || ts.End == nil {
			t.Errorf("task %d: job %q node %q start %v end %v", i, ts.JobID, ts.Node, ts.Start, ts.End)
		}
		if i == 3 {
			continue // "unreachable" exits before recording
		}
		rec := readFake(t, exp, i)
		if rec.Env["SLURM_ARRAY_TASK_ID"] != string(rune('0'+i)) || rec.Env["SLURM_ARRAY_JOB_ID"] != sub.JobID {
			t.Errorf("task %d env: %v", i, rec.Env)
		}
		if log, err := os.ReadFile(filepath.Join(exp.Dir, LogPath(i))); err != nil || !strings.Contains(string(log), "fake task") {
			t.Errorf("task %d log: %v %q", i, err, log)
		}
	}
	if !strings.Contains(st.Tasks[1].Error, "exit code 1") || !strings.Contains(st.Tasks[1].Error, LogPath(1)) {
		t.Errorf("failed task's message %q lacks exit code or log path", st.Tasks[1].Error)
	}
	if st.State != ExpFailed {
		t.Errorf("experiment %s, want failed", st.State)
	}

	// Retry: only the failed tasks, as a new array over exactly 1 and 3.
	retry := RetryIndices(&st)
	if len(retry) != 2 || retry[0] != 1 || retry[1] != 3 {
		t.Fatalf("retry indices %v, want [1 3]", retry)
	}
	if err := Execute(ctx, exp, ex, retry); err != nil {
		t.Fatal(err)
	}
	st = exp.Snapshot()
	if len(st.Submissions) != 2 || st.Submissions[1].JobID == "" || st.Submissions[1].JobID == sub.JobID {
		t.Fatalf("retry submission: %+v", st.Submissions)
	}
	script, _ = os.ReadFile(filepath.Join(exp.Dir, st.Submissions[1].Script))
	if !strings.Contains(string(script), "#SBATCH --array=1,3%4\n") {
		t.Errorf("retry script:\n%s", script)
	}
	st = waitSlurm(t, ctx, ex, exp)
	if st.Tasks[0].JobID != sub.JobID+"_0" || st.Tasks[1].JobID != st.Submissions[1].JobID+"_1" || st.Tasks[1].Attempts != 2 {
		t.Errorf("after retry: %+v", st.Tasks)
	}
}

// TestSlurmUnavailableThenResume: slurmctld unreachable at submission leaves
// the experiment not-submitted with Slurm's message; a resume submits it.
func TestSlurmUnavailableThenResume(t *testing.T) {
	ex := slurmTestExecutor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exp := newSlurmExperiment(t, testSpec(t, []string{"ok", "ok"}, "100ms", 1, ""))
	real := ex.client
	ex.SetClient(&sbatch.Client{Env: []string{fakeTaskEnv + "=1", testgate.SlurmUnreachableConf(t)}, Attempts: 2, Backoff: 50 * time.Millisecond})
	err := Execute(ctx, exp, ex, nil)
	if !errors.Is(err, errkind.ErrUnavailable) || !strings.Contains(err.Error(), "Unable to contact slurm controller") {
		t.Fatalf("err = %v, want errkind.ErrUnavailable quoting Slurm", err)
	}
	st := exp.Snapshot()
	if st.State != ExpNotSubmitted || st.Submissions[0].JobID != "" || st.Submissions[0].Script == "" {
		t.Fatalf("state %s, submissions %+v", st.State, st.Submissions)
	}
	ex.SetClient(real)
	if err := Execute(ctx, exp, ex, nil); err != nil {
		t.Fatal(err)
	}
	st = waitSlurm(t, ctx, ex, exp)
	if st.State != ExpCompleted {
		t.Errorf("after resume: %s %+v", st.State, st.Tasks)
	}
}

// TestSlurmBadPartition shows Slurm's own message.
func TestSlurmBadPartition(t *testing.T) {
	ex := slurmTestExecutor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exp := newSlurmExperiment(t, testSpec(t, []string{"ok"}, "100ms", 1, "[slurm]\npartition = \"nosuch\"\n"))
	err := Execute(ctx, exp, ex, nil)
	if err == nil || !strings.Contains(err.Error(), "Invalid partition name specified") || errors.Is(err, errkind.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if st := exp.Snapshot(); st.State != ExpNotSubmitted || !strings.Contains(st.Error, "Invalid partition") {
		t.Errorf("state %s error %q", st.State, st.Error)
	}
}

// TestSlurmCancel cancels a running array; resume refuses nothing then.
func TestSlurmCancel(t *testing.T) {
	ex := slurmTestExecutor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exp := newSlurmExperiment(t, testSpec(t, []string{"ok", "ok"}, "60s", 1, ""))
	if err := Execute(ctx, exp, ex, nil); err != nil {
		t.Fatal(err)
	}
	// A resume of the same tasks is refused while they live, and the next
	// refresh finds them again.
	if err := Execute(ctx, exp, ex, nil); err == nil || !strings.Contains(err.Error(), "still queued or running") {
		t.Errorf("duplicate submission: err = %v", err)
	}
	if err := ex.Refresh(ctx, exp); err != nil {
		t.Fatal(err)
	}
	if st := exp.Snapshot(); (st.State != ExpSubmitted && st.State != ExpRunning) || st.Tasks[0].JobID == "" || len(st.Submissions) != 2 {
		t.Errorf("after refused resume and refresh: %s %+v", st.State, st.Tasks)
	}
	for {
		if err := ex.Refresh(ctx, exp); err != nil {
			t.Fatal(err)
		}
		if st := exp.Snapshot(); st.Tasks[0].State == TaskRunning {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("task never ran")
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err := ex.Cancel(ctx, exp, nil); err != nil {
		t.Fatal(err)
	}
	st := exp.Snapshot()
	for _, ts := range st.Tasks {
		if ts.State != TaskCancelled {
			t.Errorf("task %d: %s", ts.Index, ts.State)
		}
	}
	// Slurm agrees once sacct catches up.
	q, err := ex.client.Queue(ctx, st.Submissions[0].JobID)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range q {
		if task.InQueue && task.State != sbatch.StateCompleting {
			t.Errorf("task %s still %s after cancel", task.ID(), task.State)
		}
	}
}

// TestSlurmTimeout lets a task hit its Slurm time limit (one minute, Slurm's
// granularity; about 70 s in all, beside the other Slurm tests), so
// `go test -short` leaves it out.
func TestSlurmTimeout(t *testing.T) {
	testgate.Slow(t)
	ex := slurmTestExecutor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	exp := newSlurmExperiment(t, testSpec(t, []string{"ok"}, "300s", 1, "[slurm]\ntime = \"1\"\n"))
	if err := Execute(ctx, exp, ex, nil); err != nil {
		t.Fatal(err)
	}
	st := waitSlurm(t, ctx, ex, exp)
	if ts := st.Tasks[0]; ts.State != TaskTimeout || !strings.Contains(ts.Error, "time limit") {
		t.Errorf("task: %s %q", ts.State, ts.Error)
	}
	if idx := RetryIndices(&st); len(idx) != 1 {
		t.Errorf("retry indices %v", idx)
	}
}

// TestSlurmJobShardsPerNode: run.shards_per_node packs shards onto fewer
// nodes: 5 shards at 2 per node take 3 nodes.
func TestSlurmJobShardsPerNode(t *testing.T) {
	s := testSpec(t, []string{"ok"}, "10s", 1, "")
	s.Run.Shards, s.Run.ShardsPerNode = 5, 2
	script := renderTask0(t, s)
	for _, want := range []string{"#SBATCH --nodes=3\n", "#SBATCH --ntasks-per-node=2\n", "\nsrun '--nodes=3' '--ntasks=5' '--ntasks-per-node=2' '--kill-on-bad-exit=0' --label "} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
}

// renderTask0 is the Slurm script of s's plan for its task 0.
func renderTask0(t *testing.T, s *Spec) string {
	t.Helper()
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	job, err := SlurmJob(p, "exp-1", t.TempDir(), "/opt/gpuorch", []int{0})
	if err != nil {
		t.Fatal(err)
	}
	script, err := job.Render()
	if err != nil {
		t.Fatal(err)
	}
	return script
}
