package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/loadgen/simserver"
	"github.com/gpuorch/gpuorch/loadgen/simserver/simtest"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/taskrun"
)

// shardSpec is a Poisson task run as 4 shards on the 4-node test cluster,
// against a sim-server, writing to InfluxDB too; every shard keeps its
// per-request rows (GPUORCH_PER_REQUEST), for the union-of-samples check.
const shardSpec = `[experiment]
name = "shards"
[target]
url = "%s"
protocol = "kserve"
models = ["resnet50_v2-0"]
timeout = "5s"
[[workload]]
arrival = "poisson"
rate = 600
[run]
duration = "%s"
seed = 42
shards = 4
[slurm]
time = "5:00"
env = {GPUORCH_PER_REQUEST = "1"}
[output.influxdb]
url = "%s"
bucket = "%s"
`

// shardsServer is the sim-server the sharded tasks load.
func shardsServer(t *testing.T) string {
	return simtest.Start(t, simserver.Config{DNN: []simserver.DNNModel{{Name: "resnet50_v2", Copies: 1, B1: simserver.Duration(2 * time.Millisecond)}}})
}

// unshardedPlan is how many arrivals task's workload schedules when it runs
// unsharded, from its manifest and seed.
func unshardedPlan(t *testing.T, task layout.Task) int64 {
	t.Helper()
	cfg, err := taskrun.ReadManifest(task.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shards = 0
	w, err := loadgen.BuildWorkload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := loadgen.Plan(context.Background(), w, cfg.Duration.D(), nil, func(loadgen.Arrival) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	return st.Arrivals
}

// influxDatabase creates a database on the shared InfluxDB for the test.
func influxDatabase(t *testing.T, base string) string {
	t.Helper()
	db := fmt.Sprintf("gpuorch_shards_%d_%d", os.Getpid(), time.Now().UnixNano())
	q := func(stmt string) error {
		resp, err := http.PostForm(base+"/query", url.Values{"q": {stmt}})
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s: HTTP %d", stmt, resp.StatusCode)
		}
		return nil
	}
	if err := q("CREATE DATABASE " + db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q("DROP DATABASE " + db) })
	return db
}

// quantileUS is the sorted samples' value at percentile p, ranked as HDR
// ranks it: the sample of rank ⌊p/100·n + ½⌋ (at least 1, at most n).
func quantileUS(sorted []int64, p float64) int64 {
	r := int(p/100*float64(len(sorted)) + 0.5)
	return sorted[min(max(r, 1), len(sorted))-1]
}

// shardRows reads every shard's per-request rows: service (answer − send)
// and latency (answer − intended send) of the completed requests, in µs.
func shardRows(t *testing.T, task layout.Task, k int) (service, latency []int64) {
	t.Helper()
	for s := range k {
		rows, err := taskrun.ReadRequestRows(context.Background(), task.Shard(s).Requests())
		if err != nil {
			t.Fatalf("shard %d: %v", s, err)
		}
		for _, r := range rows {
			if r.Outcome != "ok" {
				continue
			}
			us := func(ms float64) int64 { return int64(math.Round(ms*1e6)) / 1000 }
			service = append(service, us(r.E2ELMS))
			latency = append(latency, us(r.SentMS+r.E2ELMS-r.IntendedMS))
		}
	}
	slices.Sort(service)
	slices.Sort(latency)
	return service, latency
}

// withinHDR: a merged quantile (ms) and a quantile of the samples (µs)
// agree within HDR's 3 significant digits (and the µs the rows round to).
func withinHDR(mergedMS float64, sampleUS int64) bool {
	return math.Abs(mergedMS*1000-float64(sampleUS)) <= float64(sampleUS)*1e-3+2
}

// TestShardedTaskOnSlurm: one Poisson task as 4 shards, one per node of
// the test cluster, in one job step. The shards together offer exactly the
// unsharded plan's count for the seed; the merged percentiles, from the
// local store and from InfluxDB, equal those of the union of every shard's
// samples; each shard recorded its start offset and clock offset. Then a
// shard killed in the middle of its run fails the task, named by status and
// by results show, which keep the other shards' results.
func TestShardedTaskOnSlurm(t *testing.T) {
	testgate.Slurm(t)
	influxURL := testgate.InfluxDB(t)
	t.Parallel()
	target := shardsServer(t)
	db := influxDatabase(t, influxURL)
	e := newCLIEnv(t)
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	write := func(duration string) {
		if err := os.WriteFile(e.spec, []byte(fmt.Sprintf(shardSpec, target, duration, influxURL, db)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("4s")
	out, errOut, code := e.run(nil, "run", "--executor", "slurm", "--wait", "--interval", "500ms", "--binary", self, e.spec)
	id := strings.Fields(out + " x")[0]
	if code != 0 {
		t.Fatalf("sharded run: exit %d\n%s\n%s", code, out, errOut)
	}
	exp, err := orchestrator.Open(e.home, id)
	if err != nil {
		t.Fatal(err)
	}
	task := layout.Experiment(exp.Dir).Task(0)
	script := readFile(filepath.Join(exp.Dir, "slurm", "submit-1.sbatch"))
	for _, want := range []string{"#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "srun '--nodes=4' '--ntasks=4'", "--shard slurm", "--shard merge"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}

	// The unsharded plan for the same seed.
	planned := unshardedPlan(t, task)

	var merged loadgen.Summary
	if err := json.Unmarshal([]byte(readFile(task.Summary())), &merged); err != nil {
		t.Fatal(err)
	}
	if merged.Total.Offered != planned || merged.Status != loadgen.StatusCompleted || len(merged.Shards) != 4 {
		t.Fatalf("merged summary: offered %d, planned %d; status %s; %d shards", merged.Total.Offered, planned, merged.Status, len(merged.Shards))
	}
	nodes := map[string]bool{}
	for _, sh := range merged.Shards {
		nodes[sh.Host] = true
		// Everyone on one machine: started within the margin, clocks within
		// the filesystem's timestamp granularity.
		if sh.Start.IsZero() || sh.StartOffset > 0 || sh.StartOffset < -5*time.Second || sh.ClockOffset.Abs() > sh.ClockUncertainty+2*time.Millisecond {
			t.Errorf("%s: start offset %v, clock offset %v ± %v", sh.Name(), sh.StartOffset, sh.ClockOffset, sh.ClockUncertainty)
		}
	}
	if len(nodes) != 4 {
		t.Errorf("shards ran on %v, want 4 nodes", nodes)
	}
	service, latency := shardRows(t, task, 4)
	if int64(len(service)) != merged.Total.Completed {
		t.Fatalf("%d completed rows, merged summary %d", len(service), merged.Total.Completed)
	}

	// Review, from the local store and from InfluxDB.
	for _, src := range []string{"local", "influxdb"} {
		out, errOut, code := e.run([]string{results.EnvSource + "=" + src, "GPUORCH_INFLUX_URL=" + influxURL, "GPUORCH_INFLUX_BUCKET=" + db},
			"results", "show", "--json", id)
		var rows []results.Row
		if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 {
			t.Fatalf("%s: results show: exit %d\n%s\n%s", src, code, out, errOut)
		}
		r := rows[0]
		t.Logf("%s: offered %d (planned %d), latency p99 %.3f ms (samples: %d µs), service p99 %.3f ms (samples: %d µs)",
			src, r.Offered, planned, r.Latency.P99, quantileUS(latency, 99), r.Service.P99, quantileUS(service, 99))
		if r.Offered != planned || r.Status != loadgen.StatusCompleted || r.Latency == nil || r.Service == nil {
			t.Fatalf("%s: row %+v, planned %d", src, r, planned)
		}
		for _, c := range []struct {
			name   string
			merged []float64
			sample []int64
		}{{"service", []float64{r.Service.P50, r.Service.P90, r.Service.P99, r.Service.P999}, service},
			{"latency", []float64{r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999}, latency}} {
			for i, p := range []float64{50, 90, 99, 99.9} {
				if want := quantileUS(c.sample, p); !withinHDR(c.merged[i], want) {
					t.Errorf("%s: %s p%g merged %.3f ms, union of the shards' samples %d µs", src, c.name, p, c.merged[i], want)
				}
			}
		}
	}

	// Again, two shards to a node (run.shards_per_node), and kill shard 2
	// once all four have started.
	write("12s")
	out, errOut, code = e.run(nil, "run", "--executor", "slurm", "--binary", self, "--set", "run.shards_per_node=2", e.spec)
	id = strings.TrimSpace(out)
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, errOut)
	}
	defer e.run(nil, "cancel", id)
	exp, err = orchestrator.Open(e.home, id)
	if err != nil {
		t.Fatal(err)
	}
	task = layout.Experiment(exp.Dir).Task(0)
	var victim struct {
		PID  int    `json:"pid"`
		Host string `json:"host"`
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if ready, _ := filepath.Glob(filepath.Join(string(task), "shards", "start", "*", "*.ready.json")); len(ready) == 4 {
			if json.Unmarshal([]byte(readFile(filepath.Join(filepath.Dir(ready[0]), "2.ready.json"))), &victim) == nil && victim.PID > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shards never all got ready:\n%s", readFile(task.Log()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	hosts := map[string]bool{}
	for sh := range 4 {
		var r struct{ Host string }
		ready, _ := filepath.Glob(filepath.Join(string(task), "shards", "start", "*", fmt.Sprintf("%d.ready.json", sh)))
		if len(ready) == 1 && json.Unmarshal([]byte(readFile(ready[0])), &r) == nil {
			hosts[r.Host] = true
		}
	}
	if len(hosts) != 2 {
		t.Errorf("4 shards at 2 per node ran on %v, want 2 nodes", hosts)
	}
	time.Sleep(5 * time.Second) // the start margin, then some of the run
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill shard 2 (pid %d): %v", victim.PID, err)
	}
	status, _, code := e.run(nil, "status", "--watch", "--interval", "500ms", id)
	if code != exitFailure || !strings.Contains(status, "shard 2 of 4 ("+victim.Host+") wrote no summary") {
		t.Fatalf("status after a killed shard: exit %d\n%s\nlog:\n%s", code, status, readFile(task.Log()))
	}
	out, errOut, code = e.run([]string{results.EnvSource + "=local"}, "results", "show", "--json", id)
	var rows []results.Row
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 {
		t.Fatalf("results show: exit %d\n%s\n%s", code, out, errOut)
	}
	var kept int64
	for _, s := range []int{0, 1, 3} {
		var sum loadgen.Summary
		if err := json.Unmarshal([]byte(readFile(task.Shard(s).Summary())), &sum); err != nil || sum.Status != loadgen.StatusCompleted {
			t.Fatalf("shard %d: %v %s", s, err, sum.Status)
		}
		kept += sum.Total.Offered
	}
	t.Logf("after killing shard 2:\n%s\nresults show: %s: %s, offered %d", status, rows[0].Status, rows[0].Error, rows[0].Offered)
	if r := rows[0]; r.Status != loadgen.StatusFailed || !strings.Contains(r.Error, "shard 2 of 4 wrote no summary") || r.Offered != kept || r.Latency == nil {
		t.Errorf("row after a killed shard: status %s, error %q, offered %d (the other shards offered %d)", r.Status, r.Error, r.Offered, kept)
	}
}

// TestShardedTaskLocal: the local executor runs a sharded task as a Slurm
// job step would — its shards as processes (SLURM_PROCID 0…k-1, log lines
// labelled), then the merge — and review merges their points.
func TestShardedTaskLocal(t *testing.T) {
	t.Parallel()
	target := shardsServer(t)
	e := newCLIEnv(t)
	spec := strings.Replace(fmt.Sprintf(shardSpec, target, "2s", "", ""), "[output.influxdb]\nurl = \"\"\nbucket = \"\"\n", "", 1)
	spec = strings.Replace(spec, "shards = 4", "shards = 3", 1)
	if err := os.WriteFile(e.spec, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := e.run(nil, "run", "--binary", self, e.spec)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	id := strings.Fields(out + " x")[0]
	exp, err := orchestrator.Open(e.home, id)
	if err != nil {
		t.Fatal(err)
	}
	task := layout.Experiment(exp.Dir).Task(0)
	planned := unshardedPlan(t, task)
	log := readFile(task.Log())
	for s := range 3 {
		if !strings.Contains(log, fmt.Sprintf("\n%d: completed", s)) && !strings.HasPrefix(log, fmt.Sprintf("%d: completed", s)) {
			t.Errorf("log has no labelled summary of shard %d:\n%s", s, log)
		}
	}
	out, errOut, code = e.run(nil, "results", "show", "--json", id)
	var rows []results.Row
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 {
		t.Fatalf("results show: exit %d\n%s\n%s", code, out, errOut)
	}
	if r := rows[0]; r.Offered != planned || r.Status != loadgen.StatusCompleted || r.Latency == nil {
		t.Errorf("row %+v, planned %d", r, planned)
	}
}
