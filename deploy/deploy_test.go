package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/deploy"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/loadgen/simserver"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/sbatch"
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
	sum, err := deploy.RunTask(ctx, &cfg, w, taskOptions(exp))
	if err != nil {
		t.Fatalf("run: %v (summary %+v)", err, sum)
	}
	return sum
}

func taskOptions(exp *orchestrator.Experiment) taskrun.Options {
	return taskrun.Options{Dir: exp.TaskDir(0)}
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

// the replica model: one request at a time, 100 ms each, so one replica
// serves 10 requests/s; late requests are queued, never shed. (Slow
// requests at low rates keep the test's timing clear of the CPU time the
// load generator and servers need on a busy machine.)
const simModel = `["--dnn", "m:b1=100ms:max_batch=1:drop=false"]`

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
deadline = "800ms"
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
	w, dur := stepWorkload("m", 1, step{"low", 3, 4 * time.Second}, step{"high", 22, 10 * time.Second}, step{"low", 3, 12 * time.Second})
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

// startReplica runs the test binary as `gpuorch deploy replica` for replica
// name of task 0 (as the local launcher does) and returns its process and
// a channel closed when it exits.
func startReplica(t *testing.T, exp *orchestrator.Experiment, name string) (*exec.Cmd, chan struct{}) {
	t.Helper()
	dir, _ := filepath.Abs(exp.Dir)
	cmd := exec.Command(os.Args[0], "deploy", "replica")
	cmd.Env = append(os.Environ(), "GPUORCH_EXPERIMENT_DIR="+dir, deploy.EnvTask+"=0", deploy.EnvReplica+"="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-done })
	return cmd, done
}

// waitAddress waits for a replica's address.json.
func waitAddress(t *testing.T, exp *orchestrator.Experiment, name string) deploy.Address {
	t.Helper()
	path := layout.Task(exp.TaskDir(0)).Replica(name).Address()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var a deploy.Address
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &a) == nil {
			return a
		}
	}
	t.Fatalf("no %s", path)
	return deploy.Address{}
}

const leaseSpec = `[experiment]
name = "lease"
[target]
protocol = "kserve"
models = ["m"]
[[workload]]
arrival = "poisson"
rate = 1
[deployment]
sim_server = ` + simModel + `
`

// TestReplicaStopsWithoutLease: a replica whose task stops renewing its
// lease (killed, say) stops its server and exits within the lease, and
// while the lease is renewed it keeps serving; the address it published is
// a free port on this host, and the server answers there.
func TestReplicaStopsWithoutLease(t *testing.T) {
	exp := experiment(t, leaseSpec, "", "local")
	p, _, err := deploy.ReadPlan(exp.Dir)
	if err != nil {
		t.Fatal(err)
	}
	p.Lease = loadgen.Duration(2 * time.Second)
	if err := deploy.WritePlan(exp.Dir, p); err != nil {
		t.Fatal(err)
	}
	lease := layout.Task(exp.TaskDir(0)).Lease()
	os.MkdirAll(filepath.Dir(lease), 0o755)
	renew := func() { os.WriteFile(lease, []byte(time.Now().String()), 0o644) }
	renew()
	_, done := startReplica(t, exp, "r0")
	a := waitAddress(t, exp, "r0")
	if !strings.HasPrefix(a.URL, "http://127.0.0.1:") || a.Port == 0 || a.PID == 0 {
		t.Fatalf("address %+v", a)
	}
	ready := func() bool {
		resp, err := http.Get(a.URL + "/v2/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	for deadline := time.Now().Add(10 * time.Second); !ready(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replica's server never answered")
		}
	}
	for range 8 { // 4 s: twice the lease, renewed
		time.Sleep(500 * time.Millisecond)
		renew()
	}
	select {
	case <-done:
		t.Fatal("the replica stopped while its lease was renewed")
	default:
	}
	stopped := time.Now()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the replica outlived its lease by 8 s")
	}
	if took := time.Since(stopped); took < 2*time.Second {
		t.Errorf("stopped %s after the last renewal, before the 2 s lease ran out", took)
	}
	if syscall.Kill(a.PID, 0) == nil {
		t.Errorf("the server (pid %d) outlived its replica", a.PID)
	}
}

// TestCancelStopsLeftReplicas: `gpuorch cancel` (orchestrator.Cancel) stops
// the replicas a task left behind — a local process, and on the test
// cluster a Slurm job — from what their job.json records.
func TestCancelStopsLeftReplicas(t *testing.T) {
	exp := experiment(t, leaseSpec, "", "local")
	lease := layout.Task(exp.TaskDir(0)).Lease()
	os.MkdirAll(filepath.Dir(lease), 0o755)
	os.WriteFile(lease, []byte("x"), 0o644)
	cmd, done := startReplica(t, exp, "r0")
	waitAddress(t, exp, "r0")
	host, _ := os.Hostname()
	rec, _ := json.Marshal(deploy.JobRecord{Executor: "local", PID: cmd.Process.Pid, Host: host})
	os.WriteFile(layout.Task(exp.TaskDir(0)).Replica("r0").Job(), rec, 0o644)
	ex, err := orchestrator.NewExecutor("local", orchestrator.ExecutorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := orchestrator.Cancel(context.Background(), exp, ex, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the local replica still runs after cancel")
	}
	if st := exp.Snapshot(); st.Tasks[0].State != orchestrator.TaskCancelled {
		t.Errorf("task %s", st.Tasks[0].State)
	}

	t.Run("slurm", func(t *testing.T) {
		testgate.Slurm(t)
		exp := experiment(t, leaseSpec, "", "local")
		out, err := exec.Command("sbatch", "--parsable", "--job-name="+exp.ID()+".t0.r0", "--output=/dev/null", "--wrap", "sleep 300").Output()
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("scancel", id).Run() })
		dir := layout.Task(exp.TaskDir(0)).Replica("r0")
		os.MkdirAll(string(dir), 0o755)
		rec, _ := json.Marshal(deploy.JobRecord{Executor: "slurm", Job: id})
		os.WriteFile(dir.Job(), rec, 0o644)
		if _, err := orchestrator.Cancel(context.Background(), exp, ex, nil); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			q, err := (&sbatch.Client{}).Queue(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if len(q) == 0 || !q[0].InQueue {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s still %s after cancel", id, q[0].State)
			}
		}
	})
}

// TestLocalDeploymentInterrupted: Ctrl-C (ctx cancelled) in the middle of a
// run stops every replica process; the summary says interrupted. Run again
// (a resume), the task starts new replicas under the same names and ignores
// the addresses the first ones published.
func TestLocalDeploymentInterrupted(t *testing.T) {
	exp := experiment(t, strings.Replace(leaseSpec, "[deployment]\n", "[run]\nduration = \"30s\"\n[deployment]\nreplicas = 2\n", 1), "", "local")
	w, _ := stepWorkload("m", 1, step{"steady", 5, 30 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(3*time.Second, cancel)
	cfg := exp.Plan.Tasks[0].Config
	start := time.Now()
	sum, err := deploy.RunTask(ctx, &cfg, w, taskOptions(exp))
	if !errors.Is(err, context.Canceled) || sum == nil || sum.Status != loadgen.StatusInterrupted {
		t.Fatalf("err %v summary %+v", err, sum)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the interrupted run took %s to stop", took)
	}
	noProcessesLeft(t, exp)
	d := deployment(t, exp)
	n := 0
	for _, e := range d.Events {
		if e.Event == "stopped" && e.Reason == "the run was interrupted" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d replicas stopped at the interrupt, want 2: %+v", n, d.Events)
	}

	w, _ = stepWorkload("m", 2, step{"steady", 5, 2 * time.Second})
	cfg.Duration = loadgen.Duration(2 * time.Second)
	sum, err = deploy.RunTask(context.Background(), &cfg, w, taskOptions(exp))
	if err != nil || sum.Status != loadgen.StatusCompleted || sum.Total.Completed != sum.Total.Offered {
		t.Fatalf("the run again: %v %+v", err, sum)
	}
	noProcessesLeft(t, exp)
}
