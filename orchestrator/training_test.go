package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/results/trainlog"
	"github.com/gpuorch/gpuorch/sbatch"
)

func TestTrainingSpecFromTOML(t *testing.T) {
	src := `[experiment]
name = "opt125m"

[training]
hosts = ["gpu01", "gpu02"]
gpus_per_node = 8
image = "/shared/images/metaseq_f7ffa5f_2306.sif"
image_version = "f7ffa5f_2306"
model_size = "125m"
binds = ["/scratch/data:/data"]
extra_args = ["--disable-validation"]
time = "1:00:00"

[training.nccl]
debug = "WARN"

[training.env]
CUDA_DEVICE_ORDER = "PCI_BUS_ID"
`
	spec, err := ParseSpec("train.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := spec.Training.WithDefaults(spec.Slurm)
	if tr.Nodes != 2 || tr.Runtime != RuntimeApptainer || tr.CPUsPerTask != 10 || tr.MaxUpdate != 50 || tr.LogInterval != 5 {
		t.Errorf("defaults: %+v", tr)
	}
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}

	_, err = ParseSpec("bad.toml", []byte(strings.Replace(src, "gpus_per_node", "gpus_per_nod", 1)), nil)
	if err == nil || !strings.Contains(err.Error(), "bad.toml:6") || !strings.Contains(err.Error(), "gpus_per_nod") {
		t.Errorf("unknown key error = %v", err)
	}
}

func TestTrainingValidate(t *testing.T) {
	base := TrainingSpec{Nodes: 2, GPUsPerNode: 8, Image: "/img.sif", ModelSize: "125m"}
	tests := []struct {
		name string
		mod  func(*TrainingSpec)
		want string // "" = valid
	}{
		{"ok", func(*TrainingSpec) {}, ""},
		{"no image", func(s *TrainingSpec) { s.Image = "" }, "training.image: is required"},
		{"relative image", func(s *TrainingSpec) { s.Image = "img.sif" }, "must be an absolute path"},
		{"none needs no image", func(s *TrainingSpec) { s.Image = ""; s.Runtime = RuntimeNone }, ""},
		{"bad runtime", func(s *TrainingSpec) { s.Runtime = "docker" }, "training.runtime"},
		{"neither", func(s *TrainingSpec) { s.ModelSize = "" }, "one of script or model_size"},
		{"both", func(s *TrainingSpec) { s.Script = "/x.sh" }, "not both"},
		{"unknown size", func(s *TrainingSpec) { s.ModelSize = "7b" }, `unknown size "7b" (one of 125m, 350m, 1.3b`},
		{"mp divisibility", func(s *TrainingSpec) { s.ModelSize = "66b"; s.Nodes = 1; s.GPUsPerNode = 4 }, "model parallelism 8"},
		{"hosts vs nodes", func(s *TrainingSpec) { s.Hosts = []string{"a"} }, "hosts lists 1 hosts"},
		{"log format", func(s *TrainingSpec) { s.ExtraArgs = []string{"--log-format", "tqdm"} }, "--log-format cannot be changed"},
		{"env name", func(s *TrainingSpec) { s.Env = map[string]string{"A B": "x"} }, `training.env: "A B"`},
		{"bind comma", func(s *TrainingSpec) { s.Binds = []string{"/a,/b"} }, "one bind per entry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			tc.mod(&s)
			s = s.WithDefaults(SlurmSpec{})
			err := s.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func renderTraining(t *testing.T, s TrainingSpec, o TrainingJobOptions) string {
	t.Helper()
	s = s.WithDefaults(SlurmSpec{Partition: "gpu"})
	job, err := s.TrainingJob(o)
	if err != nil {
		t.Fatal(err)
	}
	script, err := job.Render()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("rendered script is not valid bash: %v\n%s\n%s", err, out, script)
	}
	return script
}

func TestTrainingRender(t *testing.T) {
	s := TrainingSpec{Hosts: []string{"gpu01", "gpu02"}, GPUsPerNode: 8, Image: "/shared/metaseq_f7ffa5f_2306.sif",
		ModelSize: "125m", Binds: []string{"/data"}, NCCL: map[string]string{"ib_hca": "mlx5"},
		Env: map[string]string{"EVIL": "$(touch /tmp/pwned)'\""}}
	script := renderTraining(t, s, TrainingJobOptions{Name: "opt125m", RunDir: "/shared/runs/x", Preflight: true})
	for _, want := range []string{
		"#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8", "#SBATCH --cpus-per-task=10",
		"#SBATCH --nodelist=gpu01,gpu02", "#SBATCH --signal=B:USR1@180", "#SBATCH --requeue", "#SBATCH --partition=gpu",
		"#SBATCH --output=/shared/runs/x/train.log", "#SBATCH --open-mode=append", "#SBATCH --mem=0",
		"trap requeue_job USR1", `scontrol requeue "$SLURM_JOB_ID"`,
		`MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)`,
		"export MASTER_PORT=$((MASTER_PORT_BASE + SLURM_JOB_ID % 10000))",
		"NCCL_IB_HCA=mlx5", "NCCL_SOCKET_IFNAME=", "OMP_NUM_THREADS=2",
		"apptainer exec --nv --bind /shared/runs/x --bind /data /shared/metaseq_f7ffa5f_2306.sif metaseq-train",
		"--task dummy_lm", "--max-update 50", "--log-interval 5", "--log-format json", "--model-parallel-size 2",
		"--batch-size 32", "'(0.9, 0.95)'", "gpuorch-preflight /shared/metaseq_f7ffa5f_2306.sif apptainer 8",
		"--kill-on-bad-exit=1",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	if strings.Contains(script, "--distributed-port") {
		t.Error("script uses the Slurm rendezvous path (--distributed-port); want env://")
	}
	// No scontrol inside the container: it only appears in batch-shell lines.
	for _, l := range strings.Split(script, "\n") {
		if strings.Contains(l, "apptainer exec") && strings.Contains(l, "scontrol") {
			t.Errorf("scontrol on the container line: %s", l)
		}
	}
	// The hostile env value stays one quoted word.
	if !strings.Contains(script, `EVIL='$(touch /tmp/pwned)'\''"'`) {
		t.Errorf("EVIL not quoted as expected:\n%s", script)
	}

	sc := renderTraining(t, TrainingSpec{Nodes: 1, GPUsPerNode: 2, Runtime: RuntimeSingularity, Image: "/i.sif",
		Script: "/opt/metaseq/train_7.5.sh", ExtraArgs: []string{"--log-format=json", "--foo"}}, TrainingJobOptions{Name: "s", RunDir: "/r"})
	if !strings.Contains(sc, "singularity exec --nv --bind /r /i.sif /opt/metaseq/train_7.5.sh '--log-format=json' --foo\n") {
		t.Errorf("script mode line wrong:\n%s", sc)
	}
	if strings.Contains(sc, "NCCL_SOCKET_IFNAME") || strings.Contains(sc, "preflight") {
		t.Error("single node: no NCCL_SOCKET_IFNAME default; no preflight unless asked")
	}
}

func FuzzTrainingRender(f *testing.F) {
	f.Add("/opt/train.sh", "--x", "A", "v", "/data:/data", "host1")
	f.Add("$(reboot)", "'; rm -rf / #", "NCCL_X", "`id`", "/a:/b:ro", "n[1-2]")
	f.Fuzz(func(t *testing.T, script, arg, envK, envV, bind, host string) {
		s := TrainingSpec{Nodes: 1, GPUsPerNode: 1, Runtime: RuntimeNone, Script: script, ExtraArgs: []string{arg},
			Env: map[string]string{envK: envV}, Binds: []string{bind}, Hosts: []string{host}}
		s = s.WithDefaults(SlurmSpec{})
		job, err := s.TrainingJob(TrainingJobOptions{Name: "fuzz", RunDir: "/run"})
		if err != nil {
			return
		}
		out, err := job.Render()
		if err != nil {
			return
		}
		if !strings.Contains(out, "--log-format") {
			t.Fatal("rendered without --log-format")
		}
	})
}

// TestTrainingOnSlurm launches the stand-in trainer with runtime "none" on
// 2 nodes x 4 tasks of the test cluster and checks every rank's view.
func TestTrainingOnSlurm(t *testing.T) {
	testgate.Slurm(t)
	t.Parallel()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "standin")
	if out, err := exec.Command("go", "build", "-o", bin, "../test/training/standin").CombinedOutput(); err != nil {
		t.Fatalf("build stand-in: %v\n%s", err, out)
	}
	records := filepath.Join(dir, "ranks")
	os.Mkdir(records, 0o755)
	hostile := `--note=$(touch ` + dir + `/pwned); echo 'x' "y" *`
	s := TrainingSpec{Nodes: 2, GPUsPerNode: 4, CPUsPerTask: 1, Mem: "200M", Time: "5:00", Runtime: RuntimeNone,
		Script: bin, ExtraArgs: []string{"--max-update", "20", "--log-interval", "5", hostile},
		Env: map[string]string{"STANDIN_RECORD_DIR": records}, NCCL: map[string]string{"debug": "WARN"}}
	s = s.WithDefaults(SlurmSpec{})
	job, err := s.TrainingJob(TrainingJobOptions{Name: "gpuorch-train-test", RunDir: dir, Preflight: true})
	if err != nil {
		t.Fatal(err)
	}
	script, err := job.Render()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, TrainingScriptName)
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := &sbatch.Client{}
	id, err := c.SubmitFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CancelJobs(context.Background(), id) })

	// Follow the log while the job runs, as `gpuorch train submit --follow` does.
	type followed struct {
		res trainlog.Result
		err error
	}
	fch := make(chan followed, 1)
	go func() {
		r, err := trainlog.Follow(ctx, filepath.Join(dir, TrainingLogName), trainlog.FollowOptions{Poll: 50 * time.Millisecond, StopAtDone: true})
		fch <- followed{r, err}
	}()
	tasks, err := c.Wait(ctx, id, nil, time.Second, nil)
	if err != nil {
		t.Fatalf("wait for job %s: %v", id, err)
	}
	logText, _ := os.ReadFile(filepath.Join(dir, TrainingLogName))
	stderr, _ := os.ReadFile(filepath.Join(dir, "train.stderr."+id))
	if len(tasks) != 1 || tasks[0].State != sbatch.StateCompleted {
		t.Fatalf("job %s ended %+v\nlog:\n%s\nstderr:\n%s", id, tasks, logText, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatal("a user argument ran as code")
	}

	type rank struct {
		Args                                                                 []string
		RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, SLURM_JOB_ID string
		SLURMD_NODENAME, NCCL_DEBUG, LOCAL_WORLD_SIZE                        string
	}
	files, _ := filepath.Glob(filepath.Join(records, "rank-*.json"))
	if len(files) != 8 {
		t.Fatalf("%d rank records, want 8\nlog:\n%s\nstderr:\n%s", len(files), logText, stderr)
	}
	var ranks []rank
	nodes := map[string][]string{}
	for _, f := range files {
		var r rank
		b, _ := os.ReadFile(f)
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		ranks = append(ranks, r)
		nodes[r.SLURMD_NODENAME] = append(nodes[r.SLURMD_NODENAME], r.LOCAL_RANK)
	}
	var seen []string
	var port int
	fmt.Sscan(ranks[0].MASTER_PORT, &port)
	var jobID int
	fmt.Sscan(id, &jobID)
	for _, r := range ranks {
		seen = append(seen, r.RANK)
		if r.WORLD_SIZE != "8" || r.LOCAL_WORLD_SIZE != "4" || r.MASTER_ADDR != ranks[0].MASTER_ADDR || r.MASTER_PORT != ranks[0].MASTER_PORT || r.SLURM_JOB_ID != id {
			t.Errorf("rank %s inconsistent: %+v (rank 0 of records: %+v)", r.RANK, r, ranks[0])
		}
		if r.NCCL_DEBUG != "WARN" {
			t.Errorf("rank %s NCCL_DEBUG = %q", r.RANK, r.NCCL_DEBUG)
		}
		if last := r.Args[len(r.Args)-3:]; last[0] != hostile || last[1] != "--log-format" || last[2] != "json" {
			t.Errorf("rank %s args end %q", r.RANK, last)
		}
	}
	sort.Strings(seen)
	if strings.Join(seen, ",") != "0,1,2,3,4,5,6,7" {
		t.Errorf("ranks = %v", seen)
	}
	if port != 10000+jobID%10000 {
		t.Errorf("MASTER_PORT = %d, want 10000 + %d %% 10000", port, jobID)
	}
	if len(nodes) != 2 {
		t.Errorf("ranks ran on %d nodes: %v", len(nodes), nodes)
	}
	for n, lr := range nodes {
		sort.Strings(lr)
		if strings.Join(lr, ",") != "0,1,2,3" {
			t.Errorf("node %s local ranks %v", n, lr)
		}
	}
	for _, r := range ranks {
		// Block distribution: rank 0 runs on the allocation's first node.
		if r.RANK == "0" && r.MASTER_ADDR != r.SLURMD_NODENAME {
			t.Errorf("MASTER_ADDR = %s, want rank 0's node %s", r.MASTER_ADDR, r.SLURMD_NODENAME)
		}
	}
	if !strings.Contains(string(stderr), "preflight: node") && !strings.Contains(string(logText), "preflight: node") {
		t.Errorf("no preflight output\nlog:\n%s\nstderr:\n%s", logText, stderr)
	}

	f := <-fch
	if f.err != nil || !f.res.Finished || f.res.Summary.Intervals != 4 || f.res.Summary.LastUpdate != 20 || !f.res.Summary.HasSteadyState {
		t.Errorf("followed log: %+v err %v\nlog:\n%s", f.res, f.err, logText)
	}
}

// TestTrainingRequeueOnUSR1 sends the batch shell the USR1 that
// --signal=B:USR1@180 would send before the time limit, and checks that the
// job requeues itself (the trap runs scontrol requeue on the host).
func TestTrainingRequeueOnUSR1(t *testing.T) {
	testgate.Slurm(t)
	t.Parallel()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "standin")
	if out, err := exec.Command("go", "build", "-o", bin, "../test/training/standin").CombinedOutput(); err != nil {
		t.Fatalf("build stand-in: %v\n%s", err, out)
	}
	s := TrainingSpec{Nodes: 1, GPUsPerNode: 1, CPUsPerTask: 1, Mem: "100M", Time: "5:00", Runtime: RuntimeNone,
		Script: bin, ExtraArgs: []string{"--max-update", "1000000", "--log-interval", "5"}}
	s = s.WithDefaults(SlurmSpec{})
	job, err := s.TrainingJob(TrainingJobOptions{Name: "gpuorch-requeue-test", RunDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	script, err := job.Render()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, TrainingScriptName)
	os.WriteFile(path, []byte(script), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := &sbatch.Client{}
	id, err := c.SubmitFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CancelJobs(context.Background(), id) })
	logPath := filepath.Join(dir, TrainingLogName)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if ctx.Err() != nil {
				b, _ := os.ReadFile(logPath)
				e, _ := os.ReadFile(filepath.Join(dir, "train.stderr."+id))
				t.Fatalf("timed out waiting for %s\nlog tail:\n%s\nstderr:\n%s", what, trainingTail(string(b), 5), e)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("training lines", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "train_inner")
	})
	if out, err := exec.CommandContext(ctx, "scancel", "--batch", "--signal=USR1", id).CombinedOutput(); err != nil {
		t.Fatalf("scancel --signal=USR1: %v %s", err, out)
	}
	waitFor("the job to be requeued (Restarts=1)", func() bool {
		recs, err := c.ShowJob(ctx, id)
		return err == nil && len(recs) > 0 && recs[0]["Restarts"] == "1"
	})
	e, _ := os.ReadFile(filepath.Join(dir, "train.stderr."+id))
	if !strings.Contains(string(e), "USR1 received, requeueing job "+id) {
		t.Errorf("stderr lacks the trap's message:\n%s", e)
	}
}

func trainingTail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestTrainingRunDirInPatterns: the run directory is literal text in the
// --output and --error patterns — a '%' in it is escaped, not expanded by
// Slurm into a job id or name — and a backslash, which Slurm's patterns
// cannot carry, is refused.
func TestTrainingRunDirInPatterns(t *testing.T) {
	s := TrainingSpec{Hosts: []string{"gpu01"}, GPUsPerNode: 2, ModelSize: "125m", Image: "/shared/metaseq.sif"}
	script := renderTraining(t, s, TrainingJobOptions{Name: "p", RunDir: "/shared/runs/50%x-%j"})
	for _, want := range []string{"#SBATCH --output=/shared/runs/50%%x-%%j/train.log", "#SBATCH --error=/shared/runs/50%%x-%%j/train.stderr.%j",
		"#SBATCH --chdir=/shared/runs/50%x-%j"} {
		if !strings.Contains(script, want+"\n") {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	s = s.WithDefaults(SlurmSpec{Partition: "gpu"})
	if _, err := s.TrainingJob(TrainingJobOptions{Name: "p", RunDir: `/shared/runs/a\b`}); err == nil || !strings.Contains(err.Error(), "backslash") {
		t.Errorf("backslash in the run directory: %v", err)
	}
}
