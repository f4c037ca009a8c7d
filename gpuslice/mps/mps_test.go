package mps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sbatch"
)

// standIn copies testdata/nvidia-cuda-mps-control into a temporary
// directory under a name of its own (its first 15 bytes, what /proc shows,
// unique to this test process), so that the test sees only its own daemons
// and not those of a test running beside it.
func standIn(t *testing.T) (Config, string) {
	t.Helper()
	src, err := os.ReadFile("testdata/nvidia-cuda-mps-control")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	name := fmt.Sprintf("m%06d-mps-ctl", os.Getpid()%1000000) // 15 bytes
	ctl := filepath.Join(bin, name)
	if err := os.WriteFile(ctl, src, 0o755); err != nil {
		t.Fatal(err)
	}
	c := Config{Dir: filepath.Join(t.TempDir(), "mps"), Control: ctl, ProcName: name, StopWait: 3 * time.Second,
		JobRunning: func(context.Context, string) (bool, error) { return true, nil }}
	t.Cleanup(func() {
		// Whatever a failed test left running.
		hs, _ := c.holders()
		for _, h := range hs {
			for _, p := range h.pids {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
	})
	return c, filepath.Join(bin, "mps-control.record")
}

func job(id string, gpus ...int) Job {
	return Job{ID: id, Node: "node3", UID: os.Getuid(), GID: os.Getgid(), GPUs: gpus,
		Req: gpuslice.MPSRequest{ThreadPercent: 25, PinnedMiB: 3072}}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPrologStartsAndEpilogStops(t *testing.T) {
	c, rec := standIn(t)
	ctx := context.Background()
	o, err := c.Prolog(ctx, job("11", 2, 3))
	if err != nil || !o.Started || o.Refused != "" || o.Unavailable != "" {
		t.Fatalf("prolog: %+v %v", o, err)
	}
	dir := c.JobDir("11")
	want := "start 11 visible=2,3 pipe=" + dir + "/pipe log=" + dir + "/log order=PCI_BUS_ID\n" +
		"cmd 11 get_default_active_thread_percentage \n" +
		"cmd 11 set_default_active_thread_percentage 25\n" +
		"cmd 11 set_default_device_pinned_mem_limit 0 3072M\n" +
		"cmd 11 set_default_device_pinned_mem_limit 1 3072M\n" +
		"cmd 11 get_default_active_thread_percentage \n"
	if got := readFile(t, rec); got != want {
		t.Fatalf("the control program was told:\n%s\nwant:\n%s", got, want)
	}
	if got := readFile(t, filepath.Join(dir, FileEnv)); got != "export CUDA_MPS_PIPE_DIRECTORY="+dir+"/pipe\nexport CUDA_MPS_LOG_DIRECTORY="+dir+"/log\n" {
		t.Errorf("env file %q", got)
	}
	h, err := c.holder(dir + "/pipe")
	if err != nil || h == nil || h.job != "11" || h.all || fmt.Sprint(h.gpus) != "[2 3]" {
		t.Fatalf("daemon in /proc: %+v %v", h, err)
	}
	if !strings.Contains(o.Message, "GPU 2,3, 25 % of the threads, 3072M pinned device memory per GPU") {
		t.Errorf("message %q", o.Message)
	}

	if err := c.Epilog(ctx, "11"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(readFile(t, rec), "cmd 11 quit \n") {
		t.Errorf("no quit: %s", readFile(t, rec))
	}
	if h, _ := c.holder(dir + "/pipe"); h != nil {
		t.Fatalf("daemon still running: %+v", h)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("job directory left: %v", err)
	}
	log := readFile(t, filepath.Join(c.Dir, "hook.log"))
	if !strings.Contains(log, "prolog job 11: gpuorch: MPS for job 11 on node3") || !strings.Contains(log, "epilog job 11: stopped the MPS daemon of job 11") {
		t.Errorf("hook.log:\n%s", log)
	}
	// An epilog for a job without a daemon does nothing and succeeds.
	if err := c.Epilog(ctx, "99"); err != nil {
		t.Fatal(err)
	}
}

func TestPrologRefusesAHeldGPU(t *testing.T) {
	c, rec := standIn(t)
	ctx := context.Background()
	if o, err := c.Prolog(ctx, job("21", 0)); err != nil || !o.Started {
		t.Fatalf("%+v %v", o, err)
	}
	// Another live job on GPUs 1 and 0: refused, naming GPU 0 and job 21.
	o, err := c.Prolog(ctx, job("22", 1, 0))
	if err != nil || o.Started || !strings.Contains(o.Refused, "MPS refused for job 22 on node3: GPU 0 is held by job 21's MPS daemon") {
		t.Fatalf("%+v %v", o, err)
	}
	if got := readFile(t, filepath.Join(c.JobDir("22"), FileRefused)); got != o.Refused+"\n" {
		t.Errorf("refused file %q", got)
	}
	if strings.Contains(readFile(t, rec), "start 22") {
		t.Error("a daemon was started for the refused job")
	}
	if h, _ := c.holder(c.JobDir("21") + "/pipe"); h == nil {
		t.Fatal("job 21's daemon was touched")
	}
	// A job on another GPU of the node gets its own daemon beside it.
	if o, err := c.Prolog(ctx, job("23", 2)); err != nil || !o.Started {
		t.Fatalf("%+v %v", o, err)
	}
	// Job 21 ended without its epilog: its daemon is stale and goes.
	c.JobRunning = func(_ context.Context, j string) (bool, error) { return j != "21", nil }
	if o, err := c.Prolog(ctx, job("24", 0)); err != nil || !o.Started {
		t.Fatalf("after job 21 ended: %+v %v", o, err)
	}
	if h, _ := c.holder(c.JobDir("21") + "/pipe"); h != nil {
		t.Error("the stale daemon still runs")
	}
	if !strings.Contains(readFile(t, filepath.Join(c.Dir, "hook.log")), "stopped the stale MPS daemon of ended job 21") {
		t.Error("stale daemon not logged")
	}
	for _, j := range []string{"22", "23", "24"} {
		if err := c.Epilog(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
}

// An MPS daemon gpuorch did not start (the node-wide one of the MPS guide:
// default pipe directory, every GPU) holds every GPU.
func TestPrologRefusesAForeignDaemon(t *testing.T) {
	c, _ := standIn(t)
	pipe := filepath.Join(t.TempDir(), "nvidia-mps")
	cmd := exec.Command(c.Control, "-d")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "CUDA_MPS_PIPE_DIRECTORY=" + pipe}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	o, err := c.Prolog(context.Background(), job("31", 3))
	if err != nil || !strings.Contains(o.Refused, "GPU 3 is held by an MPS daemon gpuorch did not start") || !strings.Contains(o.Refused, pipe) {
		t.Fatalf("%+v %v", o, err)
	}
}

func TestPrologUnavailableAndFailing(t *testing.T) {
	c, rec := standIn(t)
	ctx := context.Background()
	o, err := c.Prolog(ctx, job("41"))
	if err != nil || !strings.Contains(o.Unavailable, "the job has no GPU on this node") {
		t.Fatalf("no GPU: %+v %v", o, err)
	}
	missing := c
	missing.Control = "/nonexistent/nvidia-cuda-mps-control"
	o, err = missing.Prolog(ctx, job("42", 0))
	if err != nil || !strings.Contains(o.Unavailable, "/nonexistent/nvidia-cuda-mps-control is not an executable") {
		t.Fatalf("no control program: %+v %v", o, err)
	}
	if got := readFile(t, filepath.Join(c.JobDir("42"), FileUnavailable)); got != o.Unavailable+"\n" {
		t.Errorf("unavailable file %q", got)
	}
	// A daemon that cannot start refuses the job (its limits would not hold).
	if err := os.WriteFile(filepath.Join(filepath.Dir(rec), "fail-start"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o, err = c.Prolog(ctx, job("43", 0))
	if err != nil || !strings.Contains(o.Refused, "did not take the slice's limits") || !strings.Contains(o.Refused, "An instance of this daemon is already running") {
		t.Fatalf("failing daemon: %+v %v", o, err)
	}
}

// A requeued job's prolog runs again: the old daemon goes, a new one starts.
func TestPrologAgainRestarts(t *testing.T) {
	c, rec := standIn(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if o, err := c.Prolog(ctx, job("51", 1)); err != nil || !o.Started {
			t.Fatalf("run %d: %+v %v", i, o, err)
		}
	}
	r := readFile(t, rec)
	if strings.Count(r, "start 51") != 2 || strings.Count(r, "cmd 51 quit") != 1 {
		t.Fatalf("record:\n%s", r)
	}
	hs, _ := c.holders()
	if len(hs) != 1 {
		t.Fatalf("daemons %+v", hs)
	}
	c.Epilog(ctx, "51")
}

func TestJobFromEnv(t *testing.T) {
	base := map[string]string{"SLURM_JOB_COMMENT": "gpuorch experiment x gpuorch-mps=25,3072M", "SLURM_JOB_ID": "7", "SLURMD_NODENAME": "node1",
		"SLURM_JOB_UID": "1000", "SLURM_JOB_GID": "100", "SLURM_JOB_GPUS": "0,3"}
	with := func(k, v string) func(string) string {
		return func(key string) string {
			if key == k {
				return v
			}
			return base[key]
		}
	}
	j, ok, err := JobFromEnv(with("", ""))
	if err != nil || !ok || j.ID != "7" || j.UID != 1000 || j.GID != 100 || fmt.Sprint(j.GPUs) != "[0 3]" || j.Req.ThreadPercent != 25 || j.Req.PinnedMiB != 3072 {
		t.Fatalf("%+v %v %v", j, ok, err)
	}
	if _, ok, err := JobFromEnv(with("SLURM_JOB_COMMENT", "my own comment")); ok || err != nil {
		t.Errorf("no token: ok %v err %v", ok, err)
	}
	for k, v := range map[string]string{"SLURM_JOB_COMMENT": "gpuorch-mps=0", "SLURM_JOB_ID": "../7", "SLURM_JOB_UID": "root", "SLURM_JOB_GPUS": "0,x"} {
		if _, ok, err := JobFromEnv(with(k, v)); !ok || err == nil {
			t.Errorf("%s=%q: ok %v err %v", k, v, ok, err)
		}
	}
}

// SlurmJobRunning against the test cluster: a job slurmctld does not know,
// a running job, the same job cancelled.
func TestSlurmJobRunningOnCluster(t *testing.T) {
	testgate.Slurm(t)
	ctx := context.Background()
	if running, err := SlurmJobRunning(ctx, "999999999"); err != nil || running {
		t.Fatalf("unknown job: %v %v", running, err)
	}
	c := &sbatch.Client{}
	id, err := c.Submit(ctx, "#!/bin/sh\nsleep 60\n", "--output=/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Cancel(context.Background(), id)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if running, err := SlurmJobRunning(ctx, id); err == nil && running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never counted as running", id)
		}
	}
	if err := c.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if running, err := SlurmJobRunning(ctx, id); err == nil && !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cancelled job %s still counts as running", id)
		}
	}
}

// Hook reads everything from the environment the hook gives it (c, the
// stand-in's config, only names its processes, so that the test sees no
// other test's daemons).
func TestHook(t *testing.T) {
	c, rec := standIn(t)
	env := map[string]string{EnvDir: c.Dir, EnvControl: c.Control, "SLURM_JOB_COMMENT": "gpuorch-mps=40", "SLURM_JOB_ID": "61",
		"SLURM_JOB_UID": fmt.Sprint(os.Getuid()), "SLURM_JOB_GID": fmt.Sprint(os.Getgid()), "SLURM_JOB_GPUS": "1"}
	getenv := func(k string) string { return env[k] }
	ctx := context.Background()
	if _, err := c.Hook(ctx, "start", getenv); !errors.Is(err, errkind.ErrInvalid) {
		t.Fatalf("bad verb: %v", err)
	}
	msg, err := c.Hook(ctx, "prolog", getenv)
	if err != nil || !strings.Contains(msg, "MPS for job 61: GPU 1, 40 % of the threads") || !strings.Contains(readFile(t, rec), "cmd 61 set_default_active_thread_percentage 40") {
		t.Fatalf("prolog: %q %v", msg, err)
	}
	if msg, err := c.Hook(ctx, "epilog", getenv); err != nil || msg != "gpuorch: MPS of job 61 stopped" {
		t.Fatalf("epilog: %q %v", msg, err)
	}
	if _, err := os.Stat(c.JobDir("61")); !os.IsNotExist(err) {
		t.Errorf("job directory: %v", err)
	}
	env["SLURM_JOB_COMMENT"] = "no request"
	if msg, err := c.Hook(ctx, "prolog", getenv); err != nil || !strings.Contains(msg, "nothing to do") {
		t.Fatalf("no request: %q %v", msg, err)
	}
	env["SLURM_JOB_COMMENT"], env["SLURM_JOB_GPUS"] = "gpuorch-mps=40", "gpu0"
	if _, err := c.Hook(ctx, "prolog", getenv); !errors.Is(err, errkind.ErrInvalid) {
		t.Fatalf("bad SLURM_JOB_GPUS: %v", err)
	}
}

// A daemon that quit but was not reaped yet (a zombie, whose environ some
// kernels read as empty and others refuse) holds no GPU.
func TestZombieHoldsNothing(t *testing.T) {
	c, _ := standIn(t)
	cmd := exec.Command(c.Control) // no daemon to talk to: exits at once
	cmd.Env = []string{"CUDA_MPS_PIPE_DIRECTORY=" + t.TempDir()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
		if zombie(string(b)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never became a zombie")
		}
	}
	if hs, err := c.holders(); err != nil || len(hs) != 0 {
		t.Fatalf("holders %+v %v", hs, err)
	}
	if o, err := c.Prolog(context.Background(), job("71", 0)); err != nil || !o.Started {
		t.Fatalf("%+v %v", o, err)
	}
	c.Epilog(context.Background(), "71")
}

func TestZombieStat(t *testing.T) {
	for _, c := range []struct {
		stat string
		want bool
	}{
		{"5614 (true) Z 5554 5552 30890 0 -1", true},
		{"77 (a) b) (c) X 1 2", true},
		{"", true},
		{"5614 (nvidia-cuda-mps) S 1 5552 30890 0 -1", false},
		{"9 (x) Z) R 1 9 9 0 -1 4194560", false}, // the name may hold ") Z"
	} {
		if got := zombie(c.stat); got != c.want {
			t.Errorf("zombie(%q) = %v, want %v", c.stat, got, c.want)
		}
	}
}
