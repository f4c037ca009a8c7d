package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/gpuslice/mps"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sbatch"
)

// TestMPSHookOnCluster runs the MPS hook on the Slurm test cluster with a
// stand-in nvidia-cuda-mps-control that records what it is told (there is
// no GPU here): admin apply installs the hook with the model's paths; a
// compute-limited slice job gets its own control daemon, on its GPU, with
// the slice's limits set on the daemon, its pipe directory in the job's
// environment, and the daemon stopped by the epilog when the job ends
// (cancelled); a second job on a GPU the first one's daemon holds, and a
// job on a node where a daemon gpuorch did not start holds every GPU, are
// refused with exit 75 and a message.
func TestMPSHookOnCluster(t *testing.T) {
	testgate.SlurmMPSHook(t, gpuslice.DefaultIncludeFile)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The hook is one file for the whole cluster: one run at a time.
	lock, err := os.OpenFile(testgate.MPSHook+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	template, err := os.ReadFile("../../gpuslice/mps/hook.sh")
	if err != nil {
		t.Fatal(err)
	}

	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	standIn, err := os.ReadFile("../../gpuslice/mps/testdata/nvidia-cuda-mps-control")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(bin, 0o755)
	control := filepath.Join(bin, "nvidia-cuda-mps-control")
	if err := os.WriteFile(control, standIn, 0o755); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(bin, "mps-control.record")
	// gpuorch on the nodes is this test binary (TestMain runs main).
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(tmp, "gpuorch")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nGPUORCH_TEST_AS_GPUORCH=1 exec "+exe+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mpsDir := filepath.Join(tmp, "mps")
	prefix := fmt.Sprintf("gom%d_", os.Getpid()%100000)
	pools := filepath.Join(tmp, "pools.toml")
	if err := os.WriteFile(pools, []byte(fmt.Sprintf(`
[slurm]
prefix = %q
users = ["root"]
[pools.m]
nodes = "node4"
gpu_model = "NVIDIA A100-SXM4-40GB"
gpus_per_node = 4
shards_per_gpu = 2
[qos.low]
grace_time = "5s"
[qos.medium]
[profiles.mpsjob]
pool = "m"
qos = "medium"
requests = { tflops = 30, vram = "2Gi" }
limits = { tflops = 78, vram = "2Gi" }
[mps]
enabled = true
hook = %q
dir = %q
control = %q
gpuorch = %q
`, prefix, testgate.MPSHook, mpsDir, control, wrapper)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := mps.Config{Dir: mpsDir, Control: control, StopWait: 3 * time.Second,
		JobRunning: func(context.Context, string) (bool, error) { return false, nil }}
	var jobs []string
	t.Cleanup(func() {
		if len(jobs) > 0 {
			exec.Command("scancel", jobs...).Run()
		}
		for _, j := range jobs {
			cfg.Epilog(context.Background(), j) // a daemon an epilog did not stop
		}
		// (Not runCLI: the test's context is cancelled before cleanups.)
		if m, err := gpuslice.LoadModel(pools); err != nil {
			t.Error(err)
		} else if done, err := (&gpuslice.Admin{}).Remove(context.Background(), m); err != nil {
			t.Errorf("admin remove: %v (did %v)", err, done)
		}
		// Leave the hook as up.sh installs it, not pointing at this test.
		os.WriteFile(testgate.MPSHook, template, 0o755)
	})

	out, errOut, code := runCLI(t, tmp, "admin", "apply", pools)
	if code != 0 || !strings.Contains(out, "install-hook") {
		t.Fatalf("admin apply: exit %d\n%s\n%s", code, out, errOut)
	}
	hook, _ := os.ReadFile(testgate.MPSHook)
	if !strings.Contains(string(hook), "\nGPUORCH="+wrapper+"\nMPS_DIR="+mpsDir+"\nMPS_CONTROL="+control+"\n") {
		t.Fatalf("installed hook:\n%s", hook)
	}
	if out, _, _ := runCLI(t, tmp, "admin", "plan", pools); strings.Contains(out, "install-hook") || strings.Contains(out, "Prolog is") {
		t.Fatalf("plan after apply:\n%s", out)
	}

	// A job that runs until the test cancels it (its daemon must be alive
	// while the next jobs' prologs run, however long they wait in the
	// queue), and one that ends by itself.
	script := func(seconds int) string {
		t.Helper()
		s, errOut, code := runCLI(t, tmp, "slice", "plan", "--pools", pools, "--profile", "mpsjob", "--script", "--",
			"sh", "-c", fmt.Sprintf(`echo "pipe=$CUDA_MPS_PIPE_DIRECTORY"; sleep %d`, seconds))
		if code != 0 || !strings.Contains(s, "#SBATCH --comment=gpuorch-mps=25,2048M\n") {
			t.Fatalf("slice plan: exit %d %s\n%s", code, errOut, s)
		}
		return s
	}
	long, short := script(600), script(5)
	submit := func(script string) string {
		t.Helper()
		id, err := (&sbatch.Client{}).Submit(ctx, script, "--output="+filepath.Join(tmp, "%j.out"), "--chdir="+tmp)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, id)
		return id
	}
	output := func(id string) string { b, _ := os.ReadFile(filepath.Join(tmp, id+".out")); return string(b) }
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		// Long enough for a busy queue (go test ./... runs other jobs).
		for deadline := time.Now().Add(150 * time.Second); !ok(); time.Sleep(300 * time.Millisecond) {
			if time.Now().After(deadline) {
				rec, _ := os.ReadFile(record)
				log, _ := os.ReadFile(filepath.Join(mpsDir, "hook.log"))
				t.Fatalf("%s: timed out\nrecord:\n%s\nhook.log:\n%s", what, rec, log)
			}
		}
	}
	recorded := func(s string) bool { b, _ := os.ReadFile(record); return strings.Contains(string(b), s) }
	ended := func(id string) (state, exit string) {
		recs, err := (&sbatch.Client{}).ShowJob(ctx, id)
		if err != nil || len(recs) == 0 {
			return "", ""
		}
		return recs[0]["JobState"], recs[0]["ExitCode"]
	}

	// Job A: its own daemon, limits on the daemon, pipe in its environment.
	a := submit(long)
	waitFor("job "+a+"'s MPS daemon", func() bool { return strings.Contains(output(a), "pipe=") })
	if want := "pipe=" + filepath.Join(mpsDir, a, "pipe") + "\n"; !strings.Contains(output(a), want) {
		t.Fatalf("job %s output %q, want %q", a, output(a), want)
	}
	rec, _ := os.ReadFile(record)
	m := regexp.MustCompile(`start ` + a + ` visible=([0-9]+) pipe=` + regexp.QuoteMeta(filepath.Join(mpsDir, a, "pipe")) + ` log=` + regexp.QuoteMeta(filepath.Join(mpsDir, a, "log")) + ` order=PCI_BUS_ID\n`).FindSubmatch(rec)
	if m == nil {
		t.Fatalf("no daemon start for job %s:\n%s", a, rec)
	}
	gpu := string(m[1])
	for _, want := range []string{"cmd " + a + " set_default_active_thread_percentage 25\n", "cmd " + a + " set_default_device_pinned_mem_limit 0 2048M\n"} {
		if !strings.Contains(string(rec), want) {
			t.Errorf("the daemon was not told %q:\n%s", want, rec)
		}
	}

	// Job B, while A runs: Slurm packs shards, so B lands on A's GPU and is
	// refused; should it land elsewhere (other tests' jobs hold shards too),
	// it must get a daemon of its own there.
	b := submit(short)
	waitFor("job "+b+" refused or started", func() bool {
		st, _ := ended(b)
		return st == "FAILED" || strings.Contains(output(b), "pipe=")
	})
	if st, exit := ended(b); st == "FAILED" {
		t.Logf("job %s refused: %s", b, strings.TrimSpace(output(b)))
		want := fmt.Sprintf("gpuorch: MPS refused for job %s on node4: GPU %s is held by job %s's MPS daemon", b, gpu, a)
		if exit != "75:0" || !strings.Contains(output(b), want) || strings.Contains(output(b), "pipe=") {
			t.Errorf("job %s: exit %s, output %q, want it to contain %q", b, exit, output(b), want)
		}
		if recorded("start " + b + " ") {
			t.Errorf("a daemon was started for the refused job %s", b)
		}
	} else if recorded("start "+b+" visible="+gpu+" ") || !recorded("start "+b+" ") {
		t.Errorf("job %s shares GPU %s with job %s's daemon, or has none", b, gpu, a)
	} else {
		t.Logf("job %s was placed on another GPU than job %s: no conflict to refuse", b, a)
	}

	// A daemon gpuorch did not start, for every GPU (the MPS guide's
	// node-wide one): the next job is refused whatever its GPU.
	foreign := filepath.Join(tmp, "foreign-mps")
	start := exec.Command(control, "-d")
	start.Env = []string{"PATH=/usr/bin:/bin", "CUDA_MPS_PIPE_DIRECTORY=" + foreign}
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("foreign daemon: %v %s", err, out)
	}
	c := submit(short)
	waitFor("job "+c+" refused", func() bool { st, _ := ended(c); return st == "FAILED" || st == "COMPLETED" })
	if st, exit := ended(c); st != "FAILED" || exit != "75:0" || !strings.Contains(output(c), "is held by an MPS daemon gpuorch did not start") {
		t.Errorf("job %s beside a foreign daemon: %s %s %q", c, st, exit, output(c))
	}
	quit := exec.Command(control)
	quit.Env, quit.Stdin = start.Env, strings.NewReader("quit\n")
	quit.Run()

	// A ends (cancelled): the epilog quits its daemon and removes its
	// directory.
	if err := (&sbatch.Client{}).Cancel(ctx, a); err != nil {
		t.Fatal(err)
	}
	waitFor("job "+a+"'s epilog", func() bool {
		_, err := os.Stat(filepath.Join(mpsDir, a))
		st, _ := ended(a)
		return recorded("cmd "+a+" quit") && os.IsNotExist(err) && st != "RUNNING" && st != "COMPLETING"
	})
	if st, _ := ended(a); st != "CANCELLED" {
		t.Errorf("job %s: %s\n%s", a, st, output(a))
	}
	log, _ := os.ReadFile(filepath.Join(mpsDir, "hook.log"))
	if !strings.Contains(string(log), "prolog job "+a+": gpuorch: MPS for job "+a+" on node4: GPU "+gpu+", 25 % of the threads, 2048M pinned") ||
		!strings.Contains(string(log), "epilog job "+a+": stopped the MPS daemon of job "+a) {
		t.Errorf("hook.log:\n%s", log)
	}
}
