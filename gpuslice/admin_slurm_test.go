package gpuslice

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sbatch"
)

// TestAdminApplyOnCluster applies a model with a unique prefix to the real
// test cluster, checks Slurm shows it, checks a second apply changes nothing,
// changes the model and re-applies, and removes everything at the end.
func TestAdminApplyOnCluster(t *testing.T) {
	testgate.SlurmAdmin(t, DefaultIncludeFile)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("gst%d_", os.Getpid()%100000)
	user := os.Getenv("USER")
	if user == "" {
		user = "root"
	}
	doc := func(extra string) string {
		return fmt.Sprintf(`
[slurm]
prefix = %q
users = [%q]
[pools.small]
nodes = "node4"
gpu_model = "NVIDIA A100-SXM4-40GB"
gpus_per_node = 4
shards_per_gpu = 2
max_time = "00:30:00"
[pools.big]
nodes = "node[1-2]"
gpu_model = "NVIDIA H100 80GB HBM3"
gpus_per_node = 4
shards_per_gpu = 8
[qos.low]
grace_time = "5s"
[qos.medium]
[qos.high]
description = "preempts medium and low"
%s`, prefix, user, extra)
	}
	m := mustModel(t, doc(""))
	a := &Admin{}
	t.Cleanup(func() {
		// Remove only this run's partitions and QOS: other runs (a
		// concurrent `go test ./...`) may be applying their own.
		done, err := a.Remove(context.Background(), mustModel(t, doc("[qos.critical]\n")))
		if err != nil {
			t.Errorf("remove: %v (did %v)", err, done)
		}
		b, _ := os.ReadFile(DefaultIncludeFile)
		st, err := (sbatch.Runner{}).Run(context.Background(), "sacctmgr", "-n", "-P", "show", "qos", "format=name")
		if strings.Contains(string(b), prefix) || (err == nil && strings.Contains(string(st), prefix)) {
			t.Errorf("prefix %s left behind:\n%s\n%s", prefix, b, st)
		}
	})

	plan, err := a.Plan(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, x := range plan.Actions {
		kinds[x.Kind]++
	}
	if kinds[KindAddQoS] != 3 || kinds[KindGrantQoS] != 1 || kinds[KindWrite] != 1 || kinds[KindReconfigure] != 1 || kinds[KindManual] != 2 {
		t.Fatalf("first plan: %v\n%v", kinds, plan.Actions)
	}
	// The 8-shards pool disagrees with the cluster's gres (2 per GPU), which
	// gpuorch reports but cannot change.
	for _, x := range plan.Actions {
		if x.Kind == KindManual && !strings.Contains(x.Detail, "shard:32") {
			t.Errorf("manual action without the wanted gres: %s", x.Detail)
		}
	}

	done, err := a.Apply(ctx, m)
	if err != nil {
		t.Fatalf("apply: %v (did: %v)", err, done)
	}
	st, err := a.ReadState(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	hi := st.QoS[prefix+"high"]
	if hi.Priority != 60 || strings.Join(hi.Preempt, ",") != prefix+"low,"+prefix+"medium" || hi.PreemptMode != "requeue" || hi.GraceTime != 30*time.Second {
		t.Errorf("QOS high in Slurm: %+v", hi)
	}
	if lo := st.QoS[prefix+"low"]; len(lo.Preempt) != 0 || lo.GraceTime != 5*time.Second {
		t.Errorf("QOS low in Slurm: %+v", lo)
	}
	p, ok := st.Partitions[prefix+"small"]
	if !ok || p.Nodes != "node4" || strings.Join(p.AllowQoS, ",") != prefix+"low,"+prefix+"medium,"+prefix+"high" {
		t.Errorf("partition small in Slurm: %+v (present %v)", p, ok)
	}
	for _, keep := range []string{"debug", "gpu"} {
		if _, ok := st.Partitions[keep]; !ok {
			t.Errorf("partition %s disappeared", keep)
		}
	}
	for _, keep := range []string{"high", "low"} {
		if _, ok := st.QoS[keep]; !ok {
			t.Errorf("QOS %s disappeared", keep)
		}
	}

	// Idempotent: a second apply performs nothing.
	again, err := a.Apply(ctx, m)
	if err != nil || len(again) != 0 {
		t.Fatalf("second apply did %v, %v", again, err)
	}

	// The QOS really preempt: high jobs requeue low ones. Slurm takes 4–25 s
	// to preempt here, so go test -short leaves this out.
	t.Run("preemption", func(t *testing.T) {
		testgate.Slow(t)
		checkPreemption(ctx, t, a, prefix+"small", prefix+"low", prefix+"high")
	})

	// Change the model: add critical, drop low, change a grace time.
	m2 := mustModel(t, strings.Replace(strings.Replace(doc("[qos.critical]\n"), "[qos.low]\ngrace_time = \"5s\"\n", "", 1), "[qos.medium]", "[qos.medium]\ngrace_time = \"45s\"", 1))
	plan2, err := a.Plan(ctx, m2)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{KindAddQoS + " " + prefix + "critical": false, KindDeleteQoS + " " + prefix + "low": false, KindModifyQoS + " " + prefix + "medium": false, KindWrite + " gpuorch-pools.conf": false}
	for _, x := range plan2.Actions {
		if _, ok := want[x.Kind+" "+x.Target]; ok {
			want[x.Kind+" "+x.Target] = true
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("second model plan lacks %s: %v", k, plan2.Actions)
		}
	}
	if _, err := a.Apply(ctx, m2); err != nil {
		t.Fatalf("apply changed model: %v", err)
	}
	st, err = a.ReadState(ctx, m2)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.QoS[prefix+"low"]; ok {
		t.Errorf("QOS %slow still present", prefix)
	}
	if c := st.QoS[prefix+"critical"]; strings.Join(c.Preempt, ",") != prefix+"high,"+prefix+"medium" {
		t.Errorf("critical preempts %v", c.Preempt)
	}
}

// checkPreemption fills the one-node partition's shards (4 GPUs × 2) with
// jobs at QOS low, submits one at QOS high, and checks Slurm requeues a low
// job to run it: the QOS gpuorch writes make a higher level preempt a lower
// one. It cancels its jobs and waits for them to leave before returning.
func checkPreemption(ctx context.Context, t *testing.T, a *Admin, partition, lowQoS, highQoS string) {
	t.Helper()
	var jobs []string
	defer func() {
		ctx := context.Background()
		if len(jobs) > 0 {
			a.run(ctx, append([]string{"scancel"}, jobs...)...) //nolint:errcheck
		}
		for i := 0; i < 50; i++ {
			out, _ := a.run(ctx, "squeue", "-h", "-p", partition)
			if strings.TrimSpace(string(out)) == "" {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	submit := func(qos string) string {
		out, err := a.run(ctx, "sbatch", "--parsable", "--requeue", "-p", partition, "--qos="+qos, "--gres=shard:2",
			"-n1", "--mem=50", "-o", "/dev/null", "--job-name=gpuslice-preempt", "--wrap", "exec sleep 300")
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimSpace(string(out))
		jobs = append(jobs, id)
		return id
	}
	state := func(id string) (string, string) {
		out, err := a.run(ctx, "scontrol", "show", "job", id)
		if err != nil {
			return "", ""
		}
		kv := sbatch.ParseOneliners(strings.ReplaceAll(string(out), "\n", " "))
		if len(kv) == 0 {
			return "", ""
		}
		return kv[0]["JobState"], kv[0]["Restarts"]
	}
	t0 := time.Now()
	var low []string
	for i := 0; i < 4; i++ {
		low = append(low, submit(lowQoS))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		running := 0
		for _, id := range low {
			if s, _ := state(id); s == "RUNNING" {
				running++
			}
		}
		if running == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("SKIPPED preemption check: %s busy with other jobs (%d of 4 low jobs running)", partition, running)
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("4 low jobs running after %s", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	high := submit(highQoS)
	deadline = time.Now().Add(60 * time.Second)
	for {
		hs, _ := state(high)
		requeued := 0
		for _, id := range low {
			if s, r := state(id); (r != "0" && r != "") || s == "PENDING" || s == "REQUEUED" {
				requeued++
			}
		}
		if hs == "RUNNING" && requeued >= 1 {
			t.Logf("high job %s running %s after submission; %d low job(s) requeued", high, time.Since(t0).Round(time.Millisecond), requeued)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("high job %s is %s; low jobs requeued: %d", high, hs, requeued)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func TestClusterNodesOnCluster(t *testing.T) {
	testgate.SlurmAdmin(t, DefaultIncludeFile)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := mustModel(t, testModel) // a100 pool on node[1-2], h100 on node[3-4]
	nodes, err := ClusterNodes(ctx, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		seen[n.Hostname] = true
		if n.Hostname == "node3" {
			if len(n.Devices) != 2 || n.Devices[0].Type != "gpu" || n.Devices[0].Name != "NVIDIA H100 80GB HBM3" ||
				n.Devices[0].DeviceInfo["count"] != 4 || *n.Devices[0].DeviceConfig.PeakFP16TFLOPS != 989 || n.Devices[1].Type != "cpu" {
				t.Errorf("node3: %+v", n)
			}
			// The CPU's memory and sockets, from RealMemory and Sockets.
			if cpu := n.Devices[len(n.Devices)-1]; cpu.DeviceInfo["memory_total_bytes"] == nil || cpu.DeviceInfo["sockets"] == nil {
				t.Errorf("node3 CPU: %+v", cpu)
			}
		}
	}
	for _, want := range []string{"node1", "node2", "node3", "node4"} {
		if !seen[want] {
			t.Errorf("%s missing from %v", want, seen)
		}
	}
}
