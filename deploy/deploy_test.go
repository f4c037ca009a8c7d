package deploy_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/deploy"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/loadgen/simserver"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/taskrun"
)

// TestMain: the test binary is gpuorch's parts a replica runs, when a
// deployment starts it as such (the replica's Slurm job or process runs
// the gpuorch binary of the experiment, which is this test binary):
//   - `deploy replica`: deploy.RunReplicaFromEnv, as `gpuorch deploy replica`;
//   - `sim-server --listen ADDR --dnn SPEC…`: the simulated model server
//     (loadgen/simserver, which `gpuorch sim-server` serves);
//   - `slice enforce`: the enforcer beside a sliced replica (this host has
//     no GPU to watch): waits until stopped.
func TestMain(m *testing.M) {
	args := os.Args[1:]
	as := func(words ...string) bool {
		return len(args) >= len(words) && strings.Join(args[:len(words)], " ") == strings.Join(words, " ")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	switch {
	case as("deploy", "replica"):
		err := deploy.RunReplicaFromEnv(ctx, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case as("sim-server"):
		serveSim(ctx, args[1:])
		os.Exit(0)
	case as("slice", "enforce"):
		<-ctx.Done()
		os.Exit(0)
	}
	stop()
	os.Exit(m.Run())
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func serveSim(ctx context.Context, args []string) {
	fs := flag.NewFlagSet("sim-server", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "")
	var dnn listFlag
	fs.Var(&dnn, "dnn", "")
	fs.Parse(args)
	var cfg simserver.Config
	for _, s := range dnn {
		m, _, err := simserver.ParseModelFlag("dnn", s)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		cfg.DNN = append(cfg.DNN, *m)
	}
	srv, err := simserver.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	fmt.Fprintf(os.Stderr, "sim-server listening on %s\n", ln.Addr())
	if err := srv.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

// step is one phase of a step load.
type step struct {
	name string
	rate float64 // requests/s, Poisson
	dur  time.Duration
}

// stepWorkload sends to model the phases one after another, each a class
// named "<i>-<name>" (so the summary breaks the run down by phase).
func stepWorkload(model string, seed int64, steps ...step) (*loadgen.Workload, time.Duration) {
	w := &loadgen.Workload{Name: "step"}
	var at time.Duration
	for i, s := range steps {
		w.Open = append(w.Open, &loadgen.OpenLoop{Model: model, Class: fmt.Sprintf("%d-%s", i, s.name),
			Proc: loadgen.NewPoisson(s.rate, loadgen.NewRNG(seed, uint64(i))), Start: at, Stop: at + s.dur})
		at += s.dur
	}
	return w, at
}

// experiment creates an experiment from spec (its [deployment] and the
// rest) under a fresh home, with pools.toml beside the spec when given.
func experiment(t *testing.T, spec, pools, executor string) *orchestrator.Experiment {
	t.Helper()
	dir := t.TempDir()
	if pools != "" {
		if err := os.WriteFile(filepath.Join(dir, "pools.toml"), []byte(pools), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "spec.toml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := orchestrator.LoadSpec(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	exp, err := orchestrator.Create(filepath.Join(dir, "runs"), s, p, executor)
	if err != nil {
		t.Fatal(err)
	}
	return exp
}

// run runs task 0 of exp with workload w through deploy.RunTask, as
// `gpuorch loadgen run --manifest` does for a deployment's task.
func run(t *testing.T, ctx context.Context, exp *orchestrator.Experiment, w *loadgen.Workload, dur time.Duration) *loadgen.Summary {
	t.Helper()
	cfg := exp.Plan.Tasks[0].Config
	cfg.Duration = loadgen.Duration(dur)
	t.Cleanup(func() { noProcessesLeft(t, exp) })
	sum, err := deploy.RunTask(ctx, &cfg, w, taskrun.Options{Dir: exp.TaskDir(0)})
	if err != nil {
		t.Fatalf("run: %v (summary %+v)", err, sum)
	}
	return sum
}

// noProcessesLeft checks that the replicas' local processes are gone.
func noProcessesLeft(t *testing.T, exp *orchestrator.Experiment) {
	files, _ := filepath.Glob(filepath.Join(exp.TaskDir(0), layout.ReplicasDir, "*", layout.AddressFile))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		var a struct{ PID int }
		if jsonUnmarshal(b, &a) == nil && a.PID > 0 && syscall.Kill(a.PID, 0) == nil {
			t.Errorf("the server of %s (pid %d) still runs", filepath.Dir(f), a.PID)
			syscall.Kill(-a.PID, syscall.SIGKILL)
		}
	}
}

// points reads the task's points of a measurement.
func points(t *testing.T, exp *orchestrator.Experiment, meas string) []results.Point {
	t.Helper()
	pts, err := results.NewLocalStore(exp.Dir).Query(context.Background(), results.Query{Measurement: meas})
	if err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(pts, func(i, j int) bool { return pts[i].Time.Before(pts[j].Time) })
	return pts
}

func deployment(t *testing.T, exp *orchestrator.Experiment) results.Deployment {
	t.Helper()
	ds := results.BuildDeployments(points(t, exp, results.MeasDeployment))
	if len(ds) != 1 {
		t.Fatalf("%d deployments in the points", len(ds))
	}
	return ds[0]
}

func failed(s loadgen.Snapshot) int64 { return s.Errors + s.Timeouts + s.Dropped + s.Cancelled }

// the replica model: one request at a time, 20 ms each, so one replica
// serves 50 requests/s; late requests are queued, never shed.
const simModel = `["--dnn", "m:b1=20ms:max_batch=1:drop=false"]`

// TestLocalDeploymentScales: replicas as local processes on free ports, a
// step load (low, high, low) with autoscaling on p99 between 1 and 3: the
// controller scales up during the high phase and back down after it, with
// no failed request, and every replica process is gone at the end.
func TestLocalDeploymentScales(t *testing.T) {
	exp := experiment(t, `[experiment]
name = "local-scale"
[target]
protocol = "kserve"
models = ["m"]
[[workload]]
arrival = "poisson"
rate = 1
[slo]
deadline = "150ms"
[run]
duration = "30s"
[deployment]
sim_server = `+simModel+`
min_replicas = 1
max_replicas = 3
[deployment.autoscaling]
signal = "p99"
window = "2s"
up_cooldown = "2s"
down_cooldown = "4s"
`, "", "local")
	w, dur := stepWorkload("m", 1, step{"low", 10, 4 * time.Second}, step{"high", 110, 10 * time.Second}, step{"low", 10, 12 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum := run(t, ctx, exp, w, dur)
	if f := failed(sum.Total); f != 0 || sum.Total.Completed != sum.Total.Offered {
		t.Fatalf("%d of %d requests failed: %v", f, sum.Total.Offered, sum.ErrorKinds)
	}
	d := deployment(t, exp)
	if d.Summary.ScaleUps < 1 || d.Summary.ScaleDowns < 1 || d.Summary.MaxReady < 2 {
		t.Fatalf("summary %+v", d.Summary)
	}
	var lastReady int64 = -1
	for _, x := range d.Decisions {
		if x.Action != "stop" {
			lastReady = x.Ready
		}
	}
	if lastReady != 1 {
		t.Errorf("%d replicas ready at the end of the low phase, want 1", lastReady)
	}
	served := int64(0)
	for _, r := range d.Replicas {
		served += r.Completed
		if r.Failed != 0 {
			t.Errorf("replica %s: %d failed", r.Replica, r.Failed)
		}
	}
	if served != sum.Total.Completed {
		t.Errorf("replicas served %d, the run completed %d", served, sum.Total.Completed)
	}
	for _, e := range d.Events {
		if e.Event == "lost" || e.Event == "failed" {
			t.Errorf("event %+v", e)
		}
	}
	var text strings.Builder
	d.WriteText(&text)
	t.Log(text.String())
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
