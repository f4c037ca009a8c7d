package nvmlx

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sbatch"
)

// TestEnforcerRequeuesRealSlurmJob submits a real batch job to the Slurm
// test cluster, finds its process, has the mock GPU report it over its VRAM
// limit, and checks the enforcer's `scontrol requeue` puts the job back in
// the queue (Restarts=1) and its process is gone.
func TestEnforcerRequeuesRealSlurmJob(t *testing.T) {
	testgate.Slurm(t)
	r := sbatch.Runner{}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := r.Run(ctx, "sbatch", "--parsable", "--requeue", "--job-name=gpuslice-requeue-test", "-o", "/dev/null", "--wrap", "exec sleep 300")
	if err != nil {
		t.Fatal(err)
	}
	job := strings.TrimSpace(strings.Split(string(out), ";")[0])
	t.Cleanup(func() { r.Run(context.Background(), "scancel", job) }) //nolint:errcheck
	pid := 0
	for pid == 0 && ctx.Err() == nil {
		pid = findJobProcess(job, "sleep")
		if pid == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if pid == 0 {
		t.Fatalf("job %s never started a sleep", job)
	}
	srv := dgxa100.New()
	g := wire(srv)
	g.set(0, pid, 2*gpuslice.GiB, 0)
	s, err := Open(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := &gpuslice.Enforcer{GPU: s, Procs: &gpuslice.ProcFS{}, Sig: gpuslice.OSSignaller{},
		Limits: gpuslice.StaticLimits{job: {VRAM: gpuslice.GiB, QoS: "low", OnOverrun: gpuslice.ActionRequeue, Grace: 30 * time.Second}}}
	evs, err := e.Poll(ctx)
	if err != nil || len(evs) != 1 || evs[0].Action != gpuslice.ActionRequeue || evs[0].Err != "" {
		t.Fatalf("poll: %+v %v", evs, err)
	}
	for ctx.Err() == nil {
		out, _ := r.Run(ctx, "scontrol", "show", "job", job)
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		if strings.Contains(string(out), "Restarts=1") && os.IsNotExist(err) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("job %s not requeued or pid %d still alive", job, pid)
}

// findJobProcess scans /proc for a process named comm with SLURM_JOB_ID=job.
func findJobProcess(job, comm string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		c, _ := os.ReadFile(d + "/comm")
		if strings.TrimSpace(string(c)) != comm {
			continue
		}
		env, _ := os.ReadFile(d + "/environ")
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv == "SLURM_JOB_ID="+job {
				pid, _ := strconv.Atoi(filepath.Base(d))
				return pid
			}
		}
	}
	return 0
}
