package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/deploy"
	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/sbatch"
)

// applyPools applies a pools model with a unique prefix to the test
// cluster (a pool over all four nodes, 2 shards per fake GPU, and a
// profile whose replicas autoscale from 1 to 3) and removes exactly it when
// the test ends. It returns the pools file and the prefix.
func applyPools(t *testing.T, ctx context.Context) (string, string) {
	t.Helper()
	prefix := fmt.Sprintf("gdp%d_", os.Getpid()%100000)
	pools := fmt.Sprintf(`[slurm]
prefix = %q
users = ["root"]
[pools.dp]
nodes = "node[1-4]"
gpu_model = "NVIDIA A100-SXM4-40GB"
gpus_per_node = 4
shards_per_gpu = 2
[qos.medium]
[qos.high]
[profiles.replica]
pool = "dp"
qos = "medium"
is_local_gpu = false
replicas = 1
requests = { tflops = 10, vram = "4Gi" }
limits = { tflops = 20, vram = "8Gi" }
autoscaling = { enabled = true, min_replicas = 1, max_replicas = 3 }
`, prefix)
	path := filepath.Join(t.TempDir(), "pools.toml")
	if err := os.WriteFile(path, []byte(pools), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := gpuslice.LoadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	admin := &gpuslice.Admin{}
	t.Cleanup(func() {
		if done, err := admin.Remove(context.Background(), m); err != nil {
			t.Errorf("remove the %s model: %v (did %v)", prefix, err, done)
		}
	})
	if done, err := admin.Apply(ctx, m); err != nil {
		t.Fatalf("apply: %v (did %v)", err, done)
	}
	return pools, prefix
}

// reactionBound is the documented reaction time on the test cluster, from
// the breach the controller saw to a new replica answering, Slurm's
// scheduling included (docs/deployments.md, "Reaction time").
const reactionBound = 15 * time.Second

// replicaJobs are the Slurm job ids the deployment of task 0 recorded.
func replicaJobs(t *testing.T, exp *orchestrator.Experiment) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(exp.TaskDir(0), layout.ReplicasDir, "*", layout.JobFile))
	out := map[string]string{}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		var rec deploy.JobRecord
		if err := json.Unmarshal(b, &rec); err != nil || rec.Job == "" {
			t.Fatalf("%s: %s (%v)", f, b, err)
		}
		out[filepath.Base(filepath.Dir(f))] = rec.Job
	}
	return out
}

// noJobsLeft checks that squeue lists none of the deployment's jobs, and
// no job named after the experiment, as queued, running or completing.
func noJobsLeft(t *testing.T, exp *orchestrator.Experiment) {
	t.Helper()
	jobs := replicaJobs(t, exp)
	var ids []string
	for _, id := range jobs {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		t.Fatal("no replica job was recorded")
	}
	q, err := (&sbatch.Client{}).Queue(context.Background(), strings.Join(ids, ","))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range q {
		if task.InQueue {
			t.Errorf("replica job %s still %s", task.JobID, task.State)
		}
	}
	out, err := exec.Command("squeue", "-h", "-o", "%i %j").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, exp.ID()) {
			t.Errorf("squeue still lists %q", l)
		}
	}
}

// TestDeploymentStepLoadOnCluster is the deployment on the real test
// cluster: sim-server replicas as Slurm jobs in a slice (partition, QOS,
// one shard each), min 1, max 3, autoscaling on p99 against a 1 s SLO,
// under a step load of 4 → 22 → 4 requests/s (one replica serves 10).
// It checks that a replica is added within the reaction bound of
// docs/deployments.md after the breach, that p99 is back under the SLO
// before the high phase ends, that the low phase scales back to one replica
// with no failed request in the whole run, that Slurm recorded each replica
// in its slice, and that no job of the experiment is left in squeue.
func TestDeploymentStepLoadOnCluster(t *testing.T) {
	testgate.SlurmAdmin(t, gpuslice.DefaultIncludeFile)
	testgate.Slow(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	pools, prefix := applyPools(t, ctx)
	exp := experiment(t, `[experiment]
name = "cluster-step"
[target]
protocol = "kserve"
models = ["m"]
[[workload]]
arrival = "poisson"
rate = 1
[slo]
deadline = "1s"
[run]
duration = "90s"
[deployment]
sim_server = `+simModel+`
executor = "slurm"
ready_timeout = "2m"
[deployment.autoscaling]
signal = "p99"
window = "3s"
up_cooldown = "3s"
down_cooldown = "9s"
[slice]
pools = "pools.toml"
profile = "replica"
`, pools, "local")
	const slo = time.Second
	lowEnd, highEnd := 15*time.Second, 55*time.Second
	w, dur := stepWorkload("m", 7, step{"low", 4, lowEnd}, step{"high", 22, highEnd - lowEnd}, step{"low", 4, 35 * time.Second})
	start := time.Now()
	sum := run(t, ctx, exp, w, dur)
	t.Logf("run of %s ended after %s", dur, time.Since(start).Round(time.Millisecond))
	d := deployment(t, exp)
	var text strings.Builder
	d.WriteText(&text)
	t.Log(text.String())
	noJobsLeft(t, exp)

	if f := failed(sum.Total); f != 0 || sum.Total.Completed != sum.Total.Offered {
		t.Errorf("%d of %d requests failed: %v", f, sum.Total.Offered, sum.ErrorKinds)
	}
	// The first scale-up's replica: ready within the bound after the breach.
	var firstUp *results.ReplicaEvent
	for i, e := range d.Events {
		if e.Event == "ready" && e.SinceBreachMS != nil {
			firstUp = &d.Events[i]
			break
		}
	}
	if firstUp == nil {
		t.Fatal("no replica was added after a breach")
	}
	reaction := time.Duration(*firstUp.SinceBreachMS * float64(time.Millisecond))
	t.Logf("reaction: breach → %s ready in %s (decision → ready %.0f ms, Slurm scheduling %.0f ms, start-up %.0f ms)",
		firstUp.Replica, reaction, *firstUp.SinceDecisionMS, *firstUp.SchedulingMS, *firstUp.StartupMS)
	if reaction > reactionBound {
		t.Errorf("breach → ready took %s, more than the documented %s", reaction, reactionBound)
	}
	if d.Summary.MaxReady != 3 || d.Summary.ScaleDowns < 2 {
		t.Errorf("summary %+v: want 3 replicas at the peak and two scale-downs", d.Summary)
	}
	// p99 back under the SLO: every interval of the high phase's last 10 s.
	// And the reaction from the end of the first interval over the SLO (the
	// breach as the serving points show it) to the new replica answering.
	runStart := sum.Started
	var firstOver time.Time
	for _, p := range points(t, exp, results.MeasServing) {
		if p.Tags[results.TagClass] != "" || p.Tags[results.TagModel] != "" {
			continue
		}
		at := p.Time.Sub(runStart)
		p99, _ := p.Fields["latency_p99"].(float64)
		over := p99 > float64(slo/time.Millisecond)
		if over && at >= lowEnd-time.Second && firstOver.IsZero() {
			firstOver = p.Time.Add(time.Second)
		}
		if at >= highEnd-10*time.Second && at < highEnd-time.Second && over {
			t.Errorf("interval at %s: p99 %.0f ms over the SLO %s", at.Round(time.Second), p99, slo)
		}
	}
	if !firstOver.IsZero() {
		t.Logf("reaction: first interval over the SLO ended %s after the high phase began; %s ready %s after that",
			firstOver.Sub(runStart.Add(lowEnd)).Round(10*time.Millisecond), firstUp.Replica, firstUp.Time.Sub(firstOver).Round(10*time.Millisecond))
	}
	// One replica at the end of the low phase.
	var last results.DeployDecision
	for _, x := range d.Decisions {
		if x.Action != "stop" {
			last = x
		}
	}
	if last.Ready != 1 || last.Desired != 1 {
		t.Errorf("at the end: %+v, want 1 replica", last)
	}
	// Slurm's record: every replica in the slice.
	jobs := replicaJobs(t, exp)
	var ids []string
	for _, id := range jobs {
		ids = append(ids, id)
	}
	out, err := exec.Command("sacct", "-n", "-P", "-X", "-j", strings.Join(ids, ","), "--format=JobID,Partition,QOS,AllocTRES").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.Contains(l, "|"+prefix+"dp|"+prefix+"medium|") || !strings.Contains(l, "gres/shard=1") {
			t.Errorf("sacct: %q, want partition %sdp, QOS %smedium, gres/shard=1", l, prefix, prefix)
		}
	}
	if len(jobs) < 3 {
		t.Errorf("replica jobs %v", jobs)
	}
}

// TestDeploymentReplicaCancelledOnCluster: two replicas as Slurm jobs under
// a steady load; one is cancelled with scancel mid-run. Its requests go to
// the other, every request that failed in the switch is counted in the run
// and attributed to the replica (none lost or hidden), the controller
// starts a replacement, which then serves; and an interrupted run (Ctrl-C)
// leaves no job in squeue.
func TestDeploymentReplicaCancelledOnCluster(t *testing.T) {
	testgate.Slurm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	exp := experiment(t, `[experiment]
name = "cluster-scancel"
[target]
protocol = "kserve"
models = ["m"]
[[workload]]
arrival = "poisson"
rate = 1
[run]
duration = "40s"
[deployment]
sim_server = `+simModel+`
executor = "slurm"
replicas = 2
ready_timeout = "2m"
`, "", "local")
	w, _ := stepWorkload("m", 3, step{"steady", 8, 40 * time.Second})
	cfg := exp.Plan.Tasks[0].Config
	cfg.Duration = loadgen.Duration(40 * time.Second)
	runCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	type result struct {
		sum *loadgen.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := deploy.RunTask(runCtx, &cfg, w, taskOptions(exp))
		done <- result{sum, err}
	}()

	// Once both replicas serve, cancel r0's job as a person would.
	var r0 string
	deadline := time.Now().Add(2 * time.Minute)
	for r0 == "" {
		if time.Now().After(deadline) {
			t.Fatal("the replicas never served")
		}
		time.Sleep(500 * time.Millisecond)
		if servedBoth(t, exp) {
			r0 = replicaJobs(t, exp)["r0"]
		}
	}
	time.Sleep(3 * time.Second)
	cancelledAt := time.Now()
	if out, err := exec.Command("scancel", r0).CombinedOutput(); err != nil {
		t.Fatalf("scancel %s: %v %s", r0, err, out)
	}
	// The replacement serves; then interrupt the run.
	for {
		d := deployment(t, exp)
		if replaced(d) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replacement became ready: %+v", d.Events)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	interrupt()
	res := <-done
	if res.sum == nil || res.sum.Status != loadgen.StatusInterrupted {
		t.Fatalf("interrupted run: %v %+v", res.err, res.sum)
	}
	noJobsLeft(t, exp)
	d := deployment(t, exp)
	var text strings.Builder
	d.WriteText(&text)
	t.Log(text.String())

	// Every failed request is counted in the run and attributed to a
	// replica (or to "no ready replica"): none hidden, none lost. Requests
	// the run never sent (the interrupt) reached no replica.
	sum := res.sum
	var attributed int64
	for _, r := range d.Replicas {
		attributed += r.Failed
	}
	f := failed(sum.Total)
	neverSent := sum.ErrorKinds["not sent before end of run"] + sum.ErrorKinds["in-flight cap"]
	if sum.Total.Completed+f != sum.Total.Offered || attributed+d.Summary.Unrouted != f-neverSent {
		t.Errorf("offered %d = completed %d + failed %d (%v)? replicas' failures %d + unrouted %d", sum.Total.Offered,
			sum.Total.Completed, f, sum.ErrorKinds, attributed, d.Summary.Unrouted)
	}
	t.Logf("failed: %d (%v), of which %d cancelled by the interrupt", f, sum.ErrorKinds, sum.Total.Cancelled)
	// r0 got no request a second after it was lost; the replacement served.
	var lostAt time.Time
	for _, e := range d.Events {
		if e.Replica == "r0" && (e.Event == "lost" || e.Event == "stopped") && lostAt.IsZero() {
			lostAt = e.Time
		}
	}
	if lostAt.IsZero() || lostAt.Before(cancelledAt) {
		t.Fatalf("r0 lost at %v (cancelled at %v)", lostAt, cancelledAt)
	}
	for _, p := range points(t, exp, results.MeasDeployment) {
		if p.Tags[results.TagKind] == results.KindReplica && p.Tags[results.TagReplica] == "r0" && p.Time.After(lostAt.Add(time.Second)) {
			if n, _ := p.Fields["sent"].(int64); n > 0 {
				t.Errorf("r0 got %d requests at %s, after it was lost", n, p.Time)
			}
		}
	}
	for _, r := range d.Replicas {
		if r.Replica == "r2" && r.Completed == 0 {
			t.Error("the replacement r2 served nothing")
		}
	}
}

// servedBoth: r0 and r1 have each completed a request.
func servedBoth(t *testing.T, exp *orchestrator.Experiment) bool {
	d := results.BuildDeployments(points(t, exp, results.MeasDeployment))
	if len(d) == 0 {
		return false
	}
	n := 0
	for _, r := range d[0].Replicas {
		if (r.Replica == "r0" || r.Replica == "r1") && r.Completed > 0 {
			n++
		}
	}
	return n == 2
}

// replaced: a replace decision, and a replica started after it is ready.
func replaced(d results.Deployment) bool {
	var at time.Time
	for _, x := range d.Decisions {
		if x.Action == "replace" {
			at = x.Time
			break
		}
	}
	if at.IsZero() {
		return false
	}
	for _, e := range d.Events {
		if e.Event == "ready" && !e.Time.Before(at) {
			return true
		}
	}
	return false
}
