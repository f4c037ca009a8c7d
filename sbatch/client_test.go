package sbatch_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sbatch"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// squeueField reads one squeue format field of a job (e.g. %j, %k).
func squeueField(t *testing.T, id, f string) string {
	out, err := exec.Command("squeue", "--noheader", "--jobs="+id, "--format="+f).Output()
	if err != nil {
		t.Fatalf("squeue %s: %v", f, err)
	}
	return strings.TrimRight(string(out), "\n")
}

// TestDirectiveQuotingOnSlurm submits (held) a job whose #SBATCH values hold
// quotes, '#', backslashes and spaces, and checks that Slurm reads back
// exactly the values rendered: the quoting matches sbatch's own tokenizer.
func TestDirectiveQuotingOnSlurm(t *testing.T) {
	testgate.Slurm(t)
	c := &sbatch.Client{}
	ctx := ctxT(t, 30*time.Second)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	for _, v := range []string{`a b " c # d 'e' \ f $x`, `x"; touch pwned; #`, "plain-name", "é ü 漢字", `\\"'`} {
		j := sbatch.Job{Name: v, Comment: v, Hold: true, Output: "/dev/null",
			Body: []sbatch.Line{sbatch.CommandArgv("true")}}
		script, err := j.Render()
		if err != nil {
			t.Fatal(err)
		}
		id, err := c.Submit(ctx, script)
		if err != nil {
			t.Fatalf("submit %q: %v", v, err)
		}
		name, comment := squeueField(t, id, "%j"), squeueField(t, id, "%k")
		recs, err := c.ShowJob(ctx, id)
		if err != nil || len(recs) != 1 || recs[0]["JobId"] != id || recs[0]["JobState"] != "PENDING" || recs[0]["Reason"] != "JobHeldUser" {
			t.Errorf("scontrol show job %s: %v %v", id, recs, err)
		}
		if err := c.Cancel(ctx, id); err != nil {
			t.Fatal(err)
		}
		if name != v || comment != v {
			t.Errorf("value %q came back as name %q, comment %q", v, name, comment)
		}
	}
}

// TestArrayJobStates runs a 4-task array: tasks 0 and 1 complete, task 2
// exits 3, task 3 sleeps and is cancelled. It checks the per-task states and
// exit codes once sacct has caught up, and that the script received its
// argv byte-identical.
func TestArrayJobStates(t *testing.T) {
	testgate.Slurm(t)
	c := &sbatch.Client{}
	ctx := ctxT(t, 90*time.Second)
	dir := t.TempDir()
	weird := "it's a \"test\" $(touch pwned)"
	j := sbatch.Job{
		Name: "gpuorch-test-states", Array: "0-3", ArrayThrottle: 4, Time: "2", Mem: "100M",
		Output: sbatch.PatternIn(dir, "%a.log"), WorkDir: dir,
		Env: []sbatch.EnvVar{sbatch.Env("WEIRD", weird)},
		Body: []sbatch.Line{
			sbatch.Command(sbatch.Lit("printf"), sbatch.Lit("%s"), sbatch.Var("WEIRD")).
				AppendTo(sbatch.Cat(sbatch.Lit(dir+"/arg."), sbatch.Var("SLURM_ARRAY_TASK_ID"))),
			sbatch.Raw(`case "$SLURM_ARRAY_TASK_ID" in 2) exit 3;; 3) sleep 60;; esac`),
		},
	}
	script, err := j.Render()
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Submit(ctx, script)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Cancel(context.Background(), id) })
	// Cancel task 3 once it runs.
	for {
		tasks, err := c.Tasks(ctx, id, 0, 1, 2, 3)
		if err != nil {
			t.Fatal(err)
		}
		if tasks[3].State == sbatch.StateRunning {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("task 3 never ran: %+v", tasks)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err := c.Cancel(ctx, id, 3); err != nil {
		t.Fatal(err)
	}
	var polls int
	tasks, err := c.Wait(ctx, id, []int{0, 1, 2, 3}, 500*time.Millisecond, func([]sbatch.Task) { polls++ })
	if err != nil {
		t.Fatalf("wait: %v (%+v)", err, tasks)
	}
	want := []struct {
		st   sbatch.State
		code int
	}{{sbatch.StateCompleted, 0}, {sbatch.StateCompleted, 0}, {sbatch.StateFailed, 3}, {sbatch.StateCancelled, 0}}
	for i, w := range want {
		if tasks[i].State != w.st || tasks[i].Exit.Code != w.code {
			t.Errorf("task %d: %s exit %v (raw %q), want %s exit %d", i, tasks[i].State, tasks[i].Exit, tasks[i].Raw, w.st, w.code)
		}
	}
	if !strings.HasPrefix(tasks[3].Raw, "CANCELLED") {
		t.Errorf("task 3 raw state %q", tasks[3].Raw)
	}
	for i := 0; i < 3; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "arg."+string(rune('0'+i))))
		if err != nil || string(b) != weird {
			t.Errorf("task %d argv: %q, %v; want %q", i, b, err, weird)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Error("injected command ran")
	}
	t.Logf("done after %d polls", polls)
}

// TestSubmitRejected shows Slurm's own message for a partition or QoS that
// does not exist, and does not retry it.
func TestSubmitRejected(t *testing.T) {
	testgate.Slurm(t)
	c := &sbatch.Client{}
	ctx := ctxT(t, 30*time.Second)
	for _, tt := range []struct {
		job  sbatch.Job
		want string
	}{
		{sbatch.Job{Partition: "nosuch"}, "Invalid partition name specified"},
		{sbatch.Job{QOS: "nosuch"}, "Invalid qos specification"},
		{sbatch.Job{Account: "nosuch"}, "Invalid account"},
		{sbatch.Job{Array: "0-5000"}, "Invalid job array specification"},
	} {
		tt.job.Body = []sbatch.Line{sbatch.CommandArgv("true")}
		script, err := tt.job.Render()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		id, err := c.Submit(ctx, script)
		var se *sbatch.Error
		if err == nil {
			_ = c.Cancel(ctx, id)
			t.Fatalf("%+v accepted as job %s", tt.job, id)
		}
		if !errors.As(err, &se) || !strings.Contains(err.Error(), tt.want) || errors.Is(err, errkind.ErrUnavailable) {
			t.Errorf("err = %v, want Slurm's %q and not unavailable", err, tt.want)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("rejection took %v: retried?", time.Since(start))
		}
	}
}

// TestUnreachable points the client at a controller that is not there.
func TestUnreachable(t *testing.T) {
	testgate.Slurm(t)
	c := &sbatch.Client{Env: []string{testgate.SlurmUnreachableConf(t)}, Attempts: 3, Backoff: 50 * time.Millisecond}
	ctx := ctxT(t, 30*time.Second)
	_, err := c.Submit(ctx, "#!/bin/bash\ntrue\n")
	if !errors.Is(err, errkind.ErrUnavailable) || !strings.Contains(err.Error(), "Unable to contact slurm controller") {
		t.Fatalf("submit err = %v, want unavailable with Slurm's message", err)
	}
	if _, err := c.Queue(ctx, "1"); !errors.Is(err, errkind.ErrUnavailable) {
		t.Fatalf("squeue err = %v, want unavailable", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, errkind.ErrUnavailable) {
		t.Fatalf("ping err = %v, want unavailable", err)
	}
	missing := &sbatch.Client{BinDir: t.TempDir()}
	if _, err := missing.Submit(ctx, "#!/bin/bash\n"); !errors.Is(err, errkind.ErrUnavailable) || !strings.Contains(err.Error(), "up.sh") {
		t.Fatalf("missing tools err = %v", err)
	}
}

// TestFilePatternOnSlurm runs jobs whose output and error files lie in
// directories named with '%' sequences Slurm would replace: each file must
// land in the directory as named, with only gpuorch's own %j and %x
// replaced (the escaping of PatternIn, and the model FuzzFilePattern
// checks, against real Slurm).
func TestFilePatternOnSlurm(t *testing.T) {
	testgate.Slurm(t)
	c := &sbatch.Client{}
	ctx := ctxT(t, 90*time.Second)
	base := t.TempDir()
	os.Chmod(base, 0o777) // jobs may run as another user
	for _, name := range []string{"50%x", "%j%%%", "a b %A_%a", "%4j-%u", "100%"} {
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		j := sbatch.Job{Name: "gpuorch-pattern", Time: "1", Mem: "50M",
			Output: sbatch.PatternIn(dir, "out-%j"), Error: sbatch.PatternIn(dir, "err-%x"),
			Body: []sbatch.Line{sbatch.CommandArgv("echo", "out"), sbatch.Raw("echo err >&2")}}
		script, err := j.Render()
		if err != nil {
			t.Fatal(err)
		}
		id, err := c.Submit(ctx, script)
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		t.Cleanup(func() { _ = c.Cancel(context.Background(), id) })
		if tasks, err := c.Wait(ctx, id, nil, 300*time.Millisecond, nil); err != nil || len(tasks) != 1 || tasks[0].State != sbatch.StateCompleted {
			t.Fatalf("job in %q: %v %+v", name, err, tasks)
		}
		// The files are written by the job's node as it ends.
		for _, f := range []struct{ file, text string }{{"out-" + id, "out\n"}, {"err-gpuorch-pattern", "err\n"}} {
			p := filepath.Join(dir, f.file)
			var b []byte
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				if b, err = os.ReadFile(p); err == nil || time.Now().After(deadline) {
					break
				}
			}
			if string(b) != f.text {
				ents, _ := os.ReadDir(dir)
				all, _ := os.ReadDir(base)
				t.Errorf("dir %q: %s holds %q (%v); the directory has %v, its parent %v", name, f.file, b, err, ents, all)
			}
		}
	}
}

// TestExpandHostlistMatchesScontrol: ExpandHostlist expands as Slurm's own
// `scontrol show hostnames` does, and refuses what it refuses.
func TestExpandHostlistMatchesScontrol(t *testing.T) {
	testgate.Slurm(t)
	for _, h := range []string{"node[1-4]", "a[1-2]b[3-4]", "n[01-03,7]", "n[1-010]", "n[001-3]", "node1,node[2-3],node1",
		"a,,b", "n[1-2]-[5-6]", "[1-2]", "gpu-a.b_c", "r[1-2]n[08-11],x9", "n[9-11]x", "x[3-1]", "n[]", "n[a-b]"} {
		out, serr := exec.Command("scontrol", "show", "hostnames", h).CombinedOutput()
		want := strings.Fields(string(out))
		got, err := sbatch.ExpandHostlist(h)
		switch {
		case serr != nil || strings.Contains(string(out), "Invalid hostlist"):
			if err == nil {
				t.Errorf("%q: Slurm refuses it (%s), ExpandHostlist gives %v", h, strings.TrimSpace(string(out)), got)
			}
		case err != nil || strings.Join(got, " ") != strings.Join(want, " "):
			t.Errorf("%q: ExpandHostlist %v (%v), scontrol %v", h, got, err, want)
		}
	}
}
