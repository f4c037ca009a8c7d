package orchestrator

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/sbatch"
)

// sliceSpecSrc is a minimal serving spec with the given [slice] (and any
// further tables) appended.
func sliceSpecSrc(slice string) string {
	return `[experiment]
name = "sliced"
[target]
url = "http://127.0.0.1:1"
[[workload]]
arrival = "poisson"
rate = 10
[sweep]
"workload.rate" = [10, 20]
[run]
duration = "1s"
` + slice
}

// sliceSpecDir writes examples/pools.toml as pools.toml next to spec.toml
// (holding src) in a fresh directory and returns the spec's path.
func sliceSpecDir(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	pools, err := os.ReadFile("../examples/pools.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pools.toml"), pools, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "spec.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSliceSpecResolves(t *testing.T) {
	t.Setenv(EnvPools, "")
	for _, tc := range []struct {
		name      string
		slice     string
		set       []string
		env       bool // pools from $GPUORCH_POOLS
		partition string
		qos       string // level
		qosFrom   string
		request   gpuslice.Resources
		limit     gpuslice.Resources
		gres      string
		threadPct string
		vramEnv   string
	}{
		{
			name:  "profile by name",
			slice: "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\n",
			// small-infer: a100, medium, requests 5/3Gi, limits 15/3Gi.
			partition: "gs_a100", qos: "medium", qosFrom: "profile",
			request: gpuslice.Resources{TFLOPS: 5, VRAM: 3 * gpuslice.GiB}, limit: gpuslice.Resources{TFLOPS: 15, VRAM: 3 * gpuslice.GiB},
			gres: "shard:1", threadPct: "5", vramEnv: "3221225472",
		},
		{
			name:  "overrides beat the profile",
			slice: "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\ntflops_limit = 30\nvram_request = \"20Gi\"\nvram_limit = \"24Gi\"\nqos = \"high\"\n",
			// vram 20Gi of 80Gi × 8 shards = 2 shards; 30/312 → 10 %.
			partition: "gs_a100", qos: "high", qosFrom: "explicit",
			request: gpuslice.Resources{TFLOPS: 5, VRAM: 20 * gpuslice.GiB}, limit: gpuslice.Resources{TFLOPS: 30, VRAM: 24 * gpuslice.GiB},
			gres: "shard:2", threadPct: "10", vramEnv: "25769803776",
		},
		{
			name:  "--set beats the file",
			slice: "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\nqos = \"high\"\n",
			set:   []string{"slice.qos=low", "slice.pool=h100"},
			// H100: 989 TFLOPS; limit 15 → 2 %.
			partition: "gs_h100", qos: "low", qosFrom: "explicit",
			request: gpuslice.Resources{TFLOPS: 5, VRAM: 3 * gpuslice.GiB}, limit: gpuslice.Resources{TFLOPS: 15, VRAM: 3 * gpuslice.GiB},
			gres: "shard:1", threadPct: "2", vramEnv: "3221225472",
		},
		{
			name:  "no profile, pools from the environment, guaranteed",
			slice: "[slice]\npool = \"h100\"\ntflops_request = 200\nvram_request = \"40Gi\"\n",
			env:   true,
			// requests == limits → high; 40Gi of 80 × 8 = 4 shards.
			partition: "gs_h100", qos: "high", qosFrom: "guaranteed",
			request: gpuslice.Resources{TFLOPS: 200, VRAM: 40 * gpuslice.GiB}, limit: gpuslice.Resources{TFLOPS: 200, VRAM: 40 * gpuslice.GiB},
			gres: "shard:4", threadPct: "21", vramEnv: "42949672960",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := sliceSpecDir(t, sliceSpecSrc(tc.slice))
			if tc.env {
				t.Setenv(EnvPools, filepath.Join(filepath.Dir(path), "pools.toml"))
			}
			s, err := LoadSpec(path, tc.set)
			if err != nil {
				t.Fatal(err)
			}
			p, err := s.Plan()
			if err != nil {
				t.Fatal(err)
			}
			sl := p.Slurm.Slice
			if sl == nil {
				t.Fatal("plan has no slice")
			}
			w := sl.Workload
			if sl.Partition != tc.partition || w.QoS != tc.qos || w.QoSFrom != tc.qosFrom || sl.SlurmQoS != "gs_"+tc.qos ||
				w.Requests != tc.request || w.Limits != tc.limit || sl.Gres != tc.gres {
				t.Errorf("slice %s qos %s (%s, %s) req %+v lim %+v %s; want %s %s (%s) req %+v lim %+v %s",
					sl.Partition, w.QoS, w.QoSFrom, sl.SlurmQoS, w.Requests, w.Limits, sl.Gres,
					tc.partition, tc.qos, tc.qosFrom, tc.request, tc.limit, tc.gres)
			}
			if sl.Env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] != tc.threadPct || sl.Env[gpuslice.EnvVRAMLimit] != tc.vramEnv {
				t.Errorf("env %v: want thread %% %s, vram %s", sl.Env, tc.threadPct, tc.vramEnv)
			}
			// plan.json carries the slice: executors never re-read the spec.
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var back Plan
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Slurm.Slice, sl) {
				t.Errorf("slice after plan.json round trip:\n%+v\nwant\n%+v", back.Slurm.Slice, sl)
			}
		})
	}
}

func TestSliceSpecErrors(t *testing.T) {
	t.Setenv(EnvPools, "")
	base := strings.Count(sliceSpecSrc(""), "\n") // [slice] is on line base+1
	for _, tc := range []struct {
		name  string
		slice string
		set   []string
		where string // "spec.toml:LINE" or "--set …"
		want  string
	}{
		{"unknown key", "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\ntflops_limt = 30\n", nil,
			lineOf(base + 4), `unknown key "slice.tflops_limt" (did you mean "tflops_limit"?)`},
		{"bad value type", "[slice]\npools = \"pools.toml\"\nvram_limit = true\n", nil,
			lineOf(base + 3), "slice.vram_limit: memory quantity must be a string"},
		{"tflops do not fit", "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\ntflops_limit = 400\n", nil,
			lineOf(base + 4), "slice.tflops_limit: does not fit on one GPU of pool a100 (NVIDIA A100-SXM4-80GB: 312 TFLOPS, 80Gi): tflops limit 400 TFLOPS > 312 TFLOPS"},
		{"vram does not fit", "[slice]\npools = \"pools.toml\"\npool = \"h100\"\nvram_request = \"64Gi\"\nvram_limit = \"100Gi\"\n", nil,
			lineOf(base + 5), "vram limit 100 GiB > 80 GiB"},
		{"set does not fit", "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\n", []string{"slice.tflops_limit=500"},
			"--set slice.tflops_limit=500", "tflops limit 500 TFLOPS > 312 TFLOPS"},
		{"unknown profile", "[slice]\npools = \"pools.toml\"\nprofile = \"huge\"\n", nil,
			lineOf(base + 3), `slice.profile: profile "huge": not in`},
		{"unknown qos", "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\nqos = \"urgent\"\n", nil,
			lineOf(base + 4), `slice.qos: qos "urgent"`},
		{"no pools file", "[slice]\nprofile = \"small-infer\"\n", nil,
			lineOf(base + 1), "[slice] needs a pools file"},
		{"missing pools file", "[slice]\npools = \"nope.toml\"\nprofile = \"small-infer\"\n", nil,
			lineOf(base + 2), "slice.pools: read pools file"},
		{"slurm partition conflicts", "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\n[slurm]\npartition = \"debug\"\n", nil,
			lineOf(base + 5), `slurm.partition "debug" conflicts with [slice], which sets partition "gs_a100"`},
		{"slurm gpus conflict", "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\n[slurm]\ngpus = \"1\"\n", nil,
			lineOf(base + 5), "slurm.gpus \"1\" conflicts with [slice]"},
		{"tflops limit 0", "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\ntflops_limit = 0\n", nil,
			lineOf(base + 4), `slice.tflops_limit 0: 0 TFLOPS would give 100 % of the SMs; leave tflops out for a VRAM-only slice (profile small-infer)`},
		{"set tflops NaN", "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\n", []string{"slice.tflops_limit=nan"},
			"--set slice.tflops_limit=nan", "tflops limit NaN: not a number (pool a100, profile small-infer)"},
		{"request above limit", "[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\ntflops_request = 20\n", nil,
			lineOf(base + 4), "tflops request 20 is above its limit 15"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := sliceSpecDir(t, sliceSpecSrc(tc.slice))
			_, err := LoadSpec(path, tc.set)
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *SpecError", err)
			}
			where := tc.where
			if strings.HasPrefix(where, ":") {
				where = path + where
			}
			if !strings.HasPrefix(err.Error(), where+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q\nwant %q … %q", err, where, tc.want)
			}
		})
	}
}

func lineOf(n int) string { return ":" + strconv.Itoa(n) }

// TestSlurmJobSlice renders the array job of a sliced spec (what `gpuorch
// render` writes) and runs it with bash as slurmd would: the task gets the
// slice env, the enforcer runs beside it and is stopped, and the task's
// exit code is the script's.
func TestSlurmJobSlice(t *testing.T) {
	t.Setenv(EnvPools, "")
	path := sliceSpecDir(t, sliceSpecSrc("[slice]\npools = \"pools.toml\"\nprofile = \"small-infer\"\nvram_limit = \"6Gi\"\nqos = \"low\"\n[slurm]\nqos = \"gs_low\"\n"))
	s, err := LoadSpec(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake gpuorch")
	// The fake binary: as the enforcer it records that it ran and waits to
	// be killed; as the task it records its environment and exits 7.
	fake := `#!/bin/sh
case "$1" in
slice) echo "$2 $GPUORCH_SLICE_VRAM_LIMIT" > "$GPUORCH_EXPERIMENT_DIR/enforcer"; exec sleep 30 ;;
loadgen) env > "$GPUORCH_EXPERIMENT_DIR/task.env"; echo "$4" > "$GPUORCH_EXPERIMENT_DIR/task.args"; sleep 0.3; exit 7 ;;
esac
exit 99
`
	if err := os.WriteFile(bin, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	job, err := SlurmJob(p, "sliced-1", dir, bin, []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	script, err := job.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"#SBATCH --partition=gs_a100\n",
		"#SBATCH --qos=gs_low\n",
		"#SBATCH --gres=shard:1\n",
		"#SBATCH --requeue\n",
		"#SBATCH --array=0-1\n",
		"export CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=5\n",
		"export CUDA_MPS_PINNED_DEVICE_MEM_LIMIT='0=6144M'\n",
		"export GPUORCH_SLICE_QOS=low\n",
		"export GPUORCH_SLICE_ON_OVERRUN=requeue\n",
		"export GPUORCH_SLICE_VRAM_LIMIT=6442450944\n",
		"# gpuorch: [slice] pool a100, qos low, shard:1 of one NVIDIA A100-SXM4-80GB\n",
		"'" + bin + "' slice enforce & enforcer=$!\n'" + bin + `' loadgen run --manifest "${GPUORCH_EXPERIMENT_DIR}"/tasks/"${SLURM_ARRAY_TASK_ID}"/manifest.json` + "\n" +
			`rc=$?; kill "$enforcer" 2>/dev/null; exit $rc`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "exec ") {
		t.Errorf("a sliced task must not be exec'd (the enforcer would outlive it):\n%s", script)
	}
	sp := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(sp, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", sp)
	cmd.Env = append(os.Environ(), "SLURM_ARRAY_TASK_ID=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("script took %s: the enforcer was not stopped when the task ended", el)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("script exit: %v, want 7\n%s", err, out)
	}
	env, _ := os.ReadFile(filepath.Join(dir, "task.env"))
	for _, want := range []string{"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=6144M\n", "GPUORCH_SLICE_COMPUTE_PERCENT=5\n", "GPUORCH_SLICE_GRACE=10s\n"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("task env lacks %q:\n%s", want, env)
		}
	}
	if a, _ := os.ReadFile(filepath.Join(dir, "task.args")); string(a) != dir+"/tasks/1/manifest.json\n" {
		t.Errorf("task manifest %q", a)
	}
	if e, _ := os.ReadFile(filepath.Join(dir, "enforcer")); string(e) != "enforce 6442450944\n" {
		t.Errorf("enforcer record %q", e)
	}
}

// FuzzSliceSpec fuzzes the [slice] table (and a --set on it): every error is
// a *SpecError naming the spec, and every slice that resolves renders an
// array job with the slice's options and the enforcer before the task.
func FuzzSliceSpec(f *testing.F) {
	f.Add("profile = \"small-infer\"\ntflops_limit = 30\n", "")
	f.Add("pool = \"h100\"\nvram_limit = \"20Gi\"\nqos = \"critical\"\n", "slice.tflops_request=1.5")
	f.Add("profile = \"guaranteed-llm\"\nreplicas = 2\nautoscaling = true\nmin_replicas = 1\nmax_replicas = 3\n", "slice.vram_request=1")
	f.Add("tflops_limit = 1e9\n", "slice.pool=a100")
	f.Add("vram_request = \"4Gi\"\nvram_limit = 1\n", "slice.profile=x")
	f.Fuzz(func(t *testing.T, body, set string) {
		path := sliceSpecDir(t, sliceSpecSrc("[slice]\npools = \"pools.toml\"\n"+body))
		var sets []string
		if set != "" {
			sets = []string{set}
		}
		s, err := LoadSpec(path, sets)
		if err != nil {
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("%T is not a *SpecError: %v", err, err)
			}
			if !strings.HasPrefix(err.Error(), path) && !strings.HasPrefix(err.Error(), "--set ") {
				t.Fatalf("error does not name the spec: %v", err)
			}
			return
		}
		sl := s.Slurm.Slice
		if sl == nil {
			t.Fatal("a spec with [slice] resolved without a slice")
		}
		p, err := s.Plan()
		if err != nil {
			return
		}
		job, err := SlurmJob(p, "fz", t.TempDir(), "/opt/gpuorch", []int{0})
		if err != nil {
			t.Fatalf("sliced job: %v", err)
		}
		script, err := job.Render()
		if err != nil {
			t.Fatal(err)
		}
		enf := strings.Index(script, "\n/opt/gpuorch slice enforce & enforcer=$!\n/opt/gpuorch loadgen run ")
		if !strings.Contains(script, "\n#SBATCH --partition="+sl.Partition+"\n") || !strings.Contains(script, "\n#SBATCH --gres="+sl.Gres+"\n") || enf < 0 {
			t.Fatalf("script lacks the slice:\n%s", script)
		}
	})
}

// TestSliceJobScriptRuns renders a slice job and runs it with bash (as
// slurmd would run the batch script): the command gets the MPS and slice
// environment, its exit code is the script's, and a hostile argument stays
// one word.
func TestSliceJobScriptRuns(t *testing.T) {
	m, err := gpuslice.LoadModel("../examples/pools.toml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.PlanOverride(gpuslice.Override{Profile: "small-infer", VRAMLimit: 6 * gpuslice.GiB})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	script, err := SliceJob(s, "true", []string{"sh", "-c", `echo "$CUDA_MPS_PINNED_DEVICE_MEM_LIMIT $GPUORCH_SLICE_VRAM_LIMIT [$1]"; exit 7`, "x", "$(touch " + marker + ")"}).Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#SBATCH --partition=gs_a100", "#SBATCH --qos=gs_medium", "#SBATCH --gres=shard:1", "#SBATCH --requeue"} {
		if !strings.Contains(script, want+"\n") {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	path := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", path).CombinedOutput()
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	want := "0=6144M 6442450944 [$(touch " + marker + ")]\n"
	if string(out) != want {
		t.Fatalf("output %q, want %q", out, want)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("argument ran as code")
	}
}

// TestSliceJobReadsMPSOutcome runs a rendered slice job with [mps] enabled
// against each outcome the MPS prolog can leave in DIR/<jobid>: started (the
// command sees the daemon's pipe directory), refused (the script exits 75
// with the prolog's message, the command never runs), unavailable or no
// prolog at all (the command runs without MPS, and the script says why).
func TestSliceJobReadsMPSOutcome(t *testing.T) {
	dir := t.TempDir()
	pools := filepath.Join(dir, "pools.toml")
	src, err := os.ReadFile("../examples/pools.toml")
	if err != nil {
		t.Fatal(err)
	}
	mpsDir := filepath.Join(dir, "mps")
	if err := os.WriteFile(pools, append(src, []byte("\n[mps]\nenabled = true\ndir = \""+mpsDir+"\"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := gpuslice.LoadModel(pools)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.PlanOverride(gpuslice.Override{Profile: "small-infer"})
	if err != nil {
		t.Fatal(err)
	}
	j := &sbatch.Job{Name: "t", Comment: "mine"} // the token joins a comment already there
	ApplySlice(j, s, "true", sbatch.CommandArgv("sh", "-c", `echo "ran pipe=$CUDA_MPS_PIPE_DIRECTORY"`))
	script, err := j.Render()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(script, "#SBATCH --comment=\"mine gpuorch-mps=5,3072M\"\n") {
		t.Fatalf("comment:\n%s", script)
	}
	path := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	jobDir := filepath.Join(mpsDir, "77")
	for _, tc := range []struct {
		name, file, content string
		code                int
		want                []string
	}{
		{"started", "env", "export CUDA_MPS_PIPE_DIRECTORY=" + jobDir + "/pipe\n", 0, []string{"ran pipe=" + jobDir + "/pipe\n"}},
		{"refused", "refused", "gpuorch: MPS refused for job 77 on node3: GPU 0 is held by job 76's MPS daemon\n", 75,
			[]string{"gpuorch: MPS refused for job 77 on node3: GPU 0 is held by job 76's MPS daemon\n"}},
		{"unavailable", "unavailable", "gpuorch: no MPS for job 77 on node3: no control program\n", 0,
			[]string{"gpuorch: no MPS for job 77 on node3: no control program\n", "ran pipe=\n"}},
		{"no prolog", "", "", 0, []string{"gpuorch: no MPS for job 77: no outcome of the MPS prolog in " + jobDir, "ran pipe=\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.RemoveAll(jobDir)
			if tc.file != "" {
				os.MkdirAll(jobDir, 0o755)
				if err := os.WriteFile(filepath.Join(jobDir, tc.file), []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("bash", path)
			cmd.Env = append(os.Environ(), "SLURM_JOB_ID=77")
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tc.code != 0 && strings.Contains(string(out), "ran") {
				t.Errorf("the command ran:\n%s", out)
			}
		})
	}
}
