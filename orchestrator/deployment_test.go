package orchestrator

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/deploy"
	"github.com/gpuorch/gpuorch/internal/layout"
)

// deploySpecSrc is a serving spec without a target URL plus the given
// tables (a [deployment], a [slice], …).
func deploySpecSrc(tables string) string {
	return `[experiment]
name = "deployed"
[target]
protocol = "kserve"
models = ["m"]
[[workload]]
arrival = "poisson"
rate = 10
[slo]
deadline = "200ms"
[run]
duration = "2s"
` + tables
}

// TestDeploymentSpecErrors: every bad [deployment] (and a slice that
// contradicts it) is a spec error naming the file, the line of the key and
// the key, before anything is created.
func TestDeploymentSpecErrors(t *testing.T) {
	t.Setenv(EnvPools, "")
	base := strings.Count(deploySpecSrc(""), "\n") // the tables start on line base+1
	const srv = "[deployment]\nsim_server = []\n"
	for _, tc := range []struct {
		name, tables string
		set          []string
		line         int // 0: want --set in the message
		want         string
	}{
		{"min above max", srv + "min_replicas = 3\nmax_replicas = 2\n[deployment.autoscaling]\nsignal = \"p99\"\n", nil,
			3, "deployment.min_replicas 3 > deployment.max_replicas 2"},
		{"replicas outside the range", srv + "replicas = 5\nmin_replicas = 1\nmax_replicas = 3\n[deployment.autoscaling]\nsignal = \"p99\"\n", nil,
			3, "deployment.replicas 5 outside [min_replicas, max_replicas] = [1, 3]"},
		{"autoscaling without a signal", srv + "min_replicas = 1\nmax_replicas = 3\n[deployment.autoscaling]\nwindow = \"5s\"\n", nil,
			5, "autoscaling needs a signal"},
		{"window shorter than the interval", srv + "min_replicas = 1\nmax_replicas = 3\n[deployment.autoscaling]\nsignal = \"p99\"\nwindow = \"500ms\"\n", nil,
			7, "deployment.autoscaling.window 500ms is shorter than the snapshot interval 1s"},
		{"window shorter than a set interval", srv + "min_replicas = 1\nmax_replicas = 3\n[deployment.autoscaling]\nsignal = \"p99\"\nwindow = \"2s\"\n", []string{"run.interval=5s"},
			7, "window 2s is shorter than the snapshot interval 5s"},
		{"unknown signal", srv + "[deployment.autoscaling]\nsignal = \"cpu\"\n", nil,
			4, `signal "cpu": want one of p99, inflight, goodput`},
		{"inflight without a target", srv + "[deployment.autoscaling]\nsignal = \"inflight\"\n", nil,
			4, "needs a target: set deployment.autoscaling.per_replica"},
		{"another signal's target", srv + "[deployment.autoscaling]\nsignal = \"p99\"\nper_replica = 4\n", nil,
			5, "per_replica is a target of another signal"},
		{"no server", "[deployment]\nreplicas = 2\n", nil,
			1, "needs exactly one server"},
		{"two servers", "[deployment]\nsim_server = []\ncommand = [\"serve\"]\n", nil,
			1, "needs exactly one server"},
		{"range without autoscaling", srv + "max_replicas = 3\n", nil,
			3, "min_replicas and max_replicas bound autoscaling"},
		{"bad balance", srv + "balance = \"random\"\n", nil,
			3, `deployment.balance "random"`},
		{"bad executor", srv + "executor = \"k8s\"\n", nil,
			3, `deployment.executor "k8s"`},
		{"bad env name", srv + "env = { \"1X\" = \"y\" }\n", nil,
			3, `deployment.env: "1X" is not an environment variable name`},
		{"args without an image", srv + "args = [\"-v\"]\n", nil,
			3, "deployment.args are the image's arguments"},
		{"target url given", srv, []string{"target.url=http://127.0.0.1:1"},
			0, "target.url: a [deployment]'s replicas publish their own addresses"},
		{"sharded", srv, []string{"run.shards=2"},
			0, "run.shards and [deployment] together"},
		{"unknown key", srv + "replica = 2\n", nil,
			3, `unknown key "deployment.replica" (did you mean "replicas"?)`},
		{"hysteresis upside down", srv + "[deployment.autoscaling]\nsignal = \"p99\"\nscale_up_at = 1\nscale_down_at = 2\n", nil,
			6, "want 0 < scale_down_at (2) < scale_up_at (1)"},
		// With a [slice], the replicas and their range come from it.
		{"slice: min above max", srv + "[deployment.autoscaling]\nsignal = \"p99\"\n[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\nmin_replicas = 4\nmax_replicas = 2\n", nil,
			8, "slice.min_replicas: autoscaling: want 1 <= min_replicas (4) <= max_replicas (2)"},
		{"slice: replicas outside the range", srv + "[deployment.autoscaling]\nsignal = \"p99\"\n[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\nreplicas = 9\n", nil,
			8, "replicas 9 outside autoscaling range 1..5"},
		{"slice: autoscaling without a signal", srv + "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\nautoscaling = true\n", nil,
			6, "autoscaling is on in [slice], but the deployment has no signal"},
		{"slice: replicas in both", srv + "replicas = 2\n[slice]\npools = \"pools.toml\"\nprofile = \"guaranteed-llm\"\n", nil,
			3, "deployment.replicas conflicts with [slice]"},
		{"slice: autoscaling off there", srv + "[deployment.autoscaling]\nsignal = \"p99\"\n[slice]\npools = \"pools.toml\"\nprofile = \"guaranteed-llm\"\n", nil,
			3, "autoscaling is off in [slice]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := sliceSpecDir(t, deploySpecSrc(tc.tables))
			home := t.TempDir()
			t.Setenv("GPUORCH_HOME", home)
			_, err := LoadSpec(path, tc.set)
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *SpecError", err)
			}
			where := path + ":" + itoa(base+tc.line) + ": "
			if tc.line == 0 {
				where = "--set " + strings.SplitN(tc.set[0], "=", 2)[0]
			}
			if !strings.HasPrefix(err.Error(), where) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q\nwant %q … %q", err, where, tc.want)
			}
			if ents, _ := os.ReadDir(home); len(ents) > 0 {
				t.Errorf("an experiment was created: %v", ents)
			}
		})
	}
}

func itoa(n int) string { return lineOf(n)[1:] }

// TestDeploymentPlan: a deployment's plan — the replicas and range from
// [deployment] or the slice, the manifests' placeholder target, the
// replicas' time limit; Create writes deployment.json and, for Slurm, the
// replica script in the slice, which runs `gpuorch deploy replica` beside
// the enforcer.
func TestDeploymentPlan(t *testing.T) {
	t.Setenv(EnvPools, "")
	path := sliceSpecDir(t, deploySpecSrc(`[deployment]
sim_server = ["--dnn", "m:b1=20ms"]
min_replicas = 1
max_replicas = 3
[deployment.autoscaling]
signal = "p99"
[sweep]
duration = ["2s", "1m"]
`))
	s, err := LoadSpec(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	dp := p.Deployment
	if dp == nil || dp.Replicas != 1 || dp.Scale.Min != 1 || dp.Scale.Max != 3 || dp.Scale.Signal != "p99" || dp.Scale.Target != 0.2 ||
		dp.Scale.Window.D() != 5*time.Second || dp.ReadyPath != "/v2/health/ready" || dp.Balance != "least-outstanding" {
		t.Fatalf("deployment %+v", dp)
	}
	// 2 × the longest task (1m) + ready_timeout 5m + 2m.
	if dp.Time != "00:09:00" {
		t.Errorf("replica time limit %q", dp.Time)
	}
	for _, task := range p.Tasks {
		if task.Config.Target.URL != deploy.TargetURL {
			t.Errorf("task %s target %q", task.Name, task.Config.Target.URL)
		}
	}
	home := t.TempDir()
	exp, err := Create(home, s, p, "local")
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := deploy.ReadPlan(exp.Dir)
	if err != nil || !ok || got.Executor != "local" || got.Binary == "" || got.Script != "" {
		t.Fatalf("deployment.json %+v %v %v", got, ok, err)
	}

	// The same spec with its replicas in a slice, on Slurm.
	path = sliceSpecDir(t, deploySpecSrc(`[deployment]
sim_server = []
executor = "slurm"
[deployment.autoscaling]
signal = "inflight"
per_replica = 4
[slice]
pools = "pools.toml"
profile = "small-infer"
is_local_gpu = false
max_replicas = 3
`))
	if s, err = LoadSpec(path, nil); err != nil {
		t.Fatal(err)
	}
	if p, err = s.Plan(); err != nil {
		t.Fatal(err)
	}
	if p.Slurm.Slice != nil {
		t.Error("the slice went to the load's array job, not to the replicas")
	}
	if dp := p.Deployment; dp.Slice == nil || dp.Slice.Gres != "shard:1" || dp.Scale.Min != 1 || dp.Scale.Max != 3 || dp.Replicas != 1 {
		t.Fatalf("deployment %+v", dp)
	}
	if exp, err = Create(home, s, p, "local"); err != nil {
		t.Fatal(err)
	}
	got, _, _ = deploy.ReadPlan(exp.Dir)
	script := layout.Experiment(exp.Dir).ReplicaScript()
	if abs, _ := filepath.Abs(script); got.Executor != "slurm" || got.Script != abs {
		t.Fatalf("deployment.json %+v", got)
	}
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#SBATCH --partition=gs_a100", "#SBATCH --qos=gs_medium", "#SBATCH --gres=shard:1",
		"export CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=5", "slice enforce & enforcer=$!", "deploy replica"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("replica script lacks %q:\n%s", want, b)
		}
	}
	// Run it as slurmd would, with a stand-in gpuorch: the enforcer starts
	// beside the replica and is stopped after it.
	dir := t.TempDir()
	bin := filepath.Join(dir, "gpuorch")
	// (The replica waits for the enforcer's line, which runs in the
	// background and could otherwise be killed before it wrote it.)
	ran := filepath.Join(dir, "ran")
	os.WriteFile(bin, []byte(`#!/bin/sh
if [ "$1" = slice ]; then echo "$1 $2 $`+deploy.EnvReplica+`" >> `+ran+`; exec sleep 30; fi
i=0; while ! grep -q '^slice' `+ran+` 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "$1 $2 $`+deploy.EnvReplica+`" >> `+ran+`
`), 0o755)
	job, err := ReplicaJob(exp.Plan, exp.ID(), exp.Dir, bin)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := job.Render()
	cmd := exec.Command("bash", "-c", text)
	cmd.Env = append(os.Environ(), deploy.EnvReplica+"=r7")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil || time.Since(start) > 10*time.Second {
		t.Fatalf("replica script: %v %s", err, out)
	}
	if b, _ := os.ReadFile(ran); !strings.Contains(string(b), "slice enforce r7") || !strings.Contains(string(b), "deploy replica r7") {
		t.Errorf("ran:\n%s", b)
	}

	// is_local_gpu puts replicas on the load's node: only a Slurm task has one.
	path = sliceSpecDir(t, deploySpecSrc("[deployment]\nsim_server = []\nexecutor = \"slurm\"\n[slice]\npools = \"pools.toml\"\nprofile = \"guaranteed-llm\"\nis_local_gpu = true\n"))
	if s, err = LoadSpec(path, nil); err != nil {
		t.Fatal(err)
	}
	p, _ = s.Plan()
	if _, err := Create(home, s, p, "local"); err == nil || !strings.Contains(err.Error(), "is_local_gpu puts every replica on the node of the task") {
		t.Errorf("local load, Slurm replicas on its node: %v", err)
	}
	job, err = SlurmJob(p, "x", t.TempDir(), "/bin/gpuorch", []int{0})
	if err != nil || job.Partition != "gs_h100" || job.QOS != "gs_high" || len(job.GRES) != 0 {
		t.Errorf("the load's array job with is_local_gpu: partition %q qos %q gres %v (%v)", job.Partition, job.QOS, job.GRES, err)
	}
}
