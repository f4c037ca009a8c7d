package orchestrator

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/testgate"
)

// TestSlurmSliceOnCluster applies a pools model with a unique prefix to the
// real test cluster (gpuslice's admin code), submits a sliced two-task
// experiment through the Slurm executor, and checks that every task ran on
// the pool's partition with its QOS, got the slice's shards
// (SLURM_SHARDS_ON_NODE) and MPS/enforcer environment, and had the enforcer
// started beside it. Only this run's partition and QOS are removed after.
func TestSlurmSliceOnCluster(t *testing.T) {
	testgate.SlurmAdmin(t, gpuslice.DefaultIncludeFile)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	user := os.Getenv("USER")
	if user == "" {
		user = "root"
	}
	prefix := fmt.Sprintf("gos%d_", os.Getpid()%100000)
	// The test cluster's node3 and node4 have gres gpu:4,shard:8.
	pools := fmt.Sprintf(`[slurm]
prefix = %q
users = [%q]
[pools.sl]
nodes = "node[3-4]"
gpu_model = "NVIDIA A100-SXM4-40GB"
gpus_per_node = 4
shards_per_gpu = 2
[qos.low]
grace_time = "5s"
[qos.medium]
[qos.high]
[profiles.tiny]
pool = "sl"
qos = "medium"
requests = { tflops = 10, vram = "4Gi" }
limits = { tflops = 20, vram = "8Gi" }
`, prefix, user)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pools.toml"), []byte(pools), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := gpuslice.LoadModel(filepath.Join(dir, "pools.toml"))
	if err != nil {
		t.Fatal(err)
	}
	admin := &gpuslice.Admin{}
	t.Cleanup(func() {
		// Remove only this run's partition and QOS (other test runs may be
		// applying their own), and check nothing of it is left.
		for try := 1; ; try++ {
			done, err := admin.Remove(context.Background(), m)
			if err != nil {
				t.Errorf("remove %s model: %v (did %v)", prefix, err, done)
				return
			}
			left := leftovers(prefix)
			if left == "" {
				return
			}
			if try == 2 {
				t.Errorf("%s model left behind after remove: %s", prefix, left)
				return
			}
			t.Logf("%s model still there after remove (did %v): %s; removing again", prefix, done, left)
			time.Sleep(2 * time.Second)
		}
	})
	if done, err := admin.Apply(ctx, m); err != nil {
		t.Fatalf("apply: %v (did %v)", err, done)
	}

	// The task binary: as `slice enforce` it notes that it ran and waits
	// to be stopped; as `loadgen run` it saves its environment.
	bin := filepath.Join(dir, "gpuorch-fake")
	fake := `#!/bin/sh
case "$1" in
slice) echo "$SLURM_JOB_ID $GPUORCH_SLICE_VRAM_LIMIT" > "$GPUORCH_EXPERIMENT_DIR/tasks/$SLURM_ARRAY_TASK_ID/enforcer"; exec sleep 60 ;;
loadgen) env > "$(dirname "$4")/env.txt"; sleep 1; exit 0 ;;
esac
exit 99
`
	if err := os.WriteFile(bin, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	// Overrides of the profile: a 24Gi VRAM request (of 40Gi × 2 shards →
	// 2 shards, where the profile's 4Gi needs 1) and qos low, not medium.
	spec := sliceSpecSrc(`[slice]
pools = "pools.toml"
profile = "tiny"
vram_request = "24Gi"
vram_limit = "24Gi"
qos = "low"
`)
	if err := os.WriteFile(filepath.Join(dir, "spec.toml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSpec(filepath.Join(dir, "spec.toml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if g := s.Slurm.Slice.Gres; g != "shard:2" {
		t.Fatalf("planned %s, want shard:2", g)
	}
	ex, err := NewExecutor("slurm", ExecutorOptions{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	exp := newSlurmExperiment(t, s)
	start := time.Now()
	if err := Execute(ctx, exp, ex, nil); err != nil {
		t.Fatal(err)
	}
	st := waitSlurm(t, ctx, ex, exp)
	t.Logf("two sliced tasks ran in %s", time.Since(start).Round(time.Millisecond))
	for i, ts := range st.Tasks {
		if ts.State != TaskCompleted {
			log, _ := os.ReadFile(filepath.Join(exp.Dir, LogPath(i)))
			t.Fatalf("task %d: %s (%s)\n%s", i, ts.State, ts.Error, log)
		}
		if ts.Node != "node3" && ts.Node != "node4" {
			t.Errorf("task %d ran on %q, outside the pool", i, ts.Node)
		}
		b, err := os.ReadFile(filepath.Join(exp.TaskDir(i), "env.txt"))
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		env := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				env[k] = v
			}
		}
		for k, want := range map[string]string{
			"SLURM_SHARDS_ON_NODE":              "2",
			"SLURM_JOB_PARTITION":               prefix + "sl",
			"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "7", // ceil(20 / 312 × 100)
			"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT":  "0=24576M",
			"GPUORCH_SLICE_VRAM_LIMIT":          "25769803776",
			"GPUORCH_SLICE_QOS":                 "low",
			"GPUORCH_SLICE_ON_OVERRUN":          "requeue",
			"GPUORCH_SLICE_GRACE":               "5s",
		} {
			if env[k] != want {
				t.Errorf("task %d: %s=%q, want %q", i, k, env[k], want)
			}
		}
		rec, err := os.ReadFile(filepath.Join(exp.TaskDir(i), "enforcer"))
		if err != nil || !strings.HasSuffix(string(rec), " 25769803776\n") {
			t.Errorf("task %d: enforcer not started with the slice's limits: %q, %v", i, rec, err)
		}
	}
	// Slurm's own record: the pool's partition and the override's QOS.
	job := st.Submissions[0].JobID
	out, err := exec.CommandContext(ctx, "sacct", "-n", "-P", "-X", "-j", job, "--format=Partition,QOS,AllocTRES").Output()
	if err != nil {
		t.Fatalf("sacct: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("sacct shows %d tasks:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, prefix+"sl|"+prefix+"low|") || !strings.Contains(l, "gres/shard=2") {
			t.Errorf("sacct: %q, want partition %ssl, QOS %slow, gres/shard=2", l, prefix, prefix)
		}
	}
}

// leftovers describes what of a model with prefix is still in the include
// file or the accounting database ("" when nothing).
func leftovers(prefix string) string {
	var left []string
	if b, _ := os.ReadFile(gpuslice.DefaultIncludeFile); strings.Contains(string(b), prefix) {
		left = append(left, "partition in "+gpuslice.DefaultIncludeFile)
	}
	out, err := exec.Command("sacctmgr", "-n", "-P", "show", "qos", "format=name").Output()
	if err == nil && strings.Contains(string(out), prefix) {
		left = append(left, "QOS "+strings.Join(strings.Fields(string(out)), " "))
	}
	return strings.Join(left, "; ")
}
