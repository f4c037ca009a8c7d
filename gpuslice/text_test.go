package gpuslice

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// render runs a text renderer into a string.
func render(t *testing.T, write func(io.Writer) error) string {
	t.Helper()
	var b bytes.Buffer
	if err := write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestWriteNodes(t *testing.T) {
	peak := 312.0
	probed := Node{Hostname: "gpu1", Status: "Ready", Driver: "550.54", Devices: []NodeDevice{
		{Name: "NVIDIA A100-SXM4-80GB", Type: "gpu", AvailableCount: 2, DeviceConfig: DeviceConfig{PeakFP16TFLOPS: &peak},
			DeviceInfo: map[string]any{"memory_total_bytes": uint64(80 * GiB), "mig_mode": []string{"disabled", "enabled"}}},
		{Name: "Xeon", Type: "cpu", AvailableCount: 2, DeviceInfo: map[string]any{"num_virtual_cores": 64}},
	}}
	// Through JSON (what `nodes --probe` gets back from srun), numbers are
	// float64 and lists []any; the text stays the same but for the MIG list.
	b, _ := json.Marshal(probed)
	var roundTrip Node
	if err := json.Unmarshal(b, &roundTrip); err != nil {
		t.Fatal(err)
	}
	slurm := Node{Hostname: "node3", Status: "NotReady", SlurmState: "DOWN+DRAIN", Note: "Not responding", Devices: []NodeDevice{
		{Name: "NVIDIA H100 80GB HBM3", Type: "gpu", AvailableCount: 4, DeviceInfo: map[string]any{"count": 4, "shards": 32, "shards_allocated": 3}},
	}}
	cases := []struct {
		name  string
		nodes []Node
		want  string
	}{
		{"none", nil, "HOST  STATUS  TYPE  DEVICE  AVAILABLE  PEAK FP16 TFLOPS  DETAIL\n"},
		{"probed and slurm", []Node{probed, slurm}, "" +
			"HOST   STATUS                 TYPE  DEVICE                 AVAILABLE  PEAK FP16 TFLOPS  DETAIL\n" +
			"gpu1   Ready                  gpu   NVIDIA A100-SXM4-80GB  2          312               mem 80Gi, MIG disabled,enabled, driver 550.54\n" +
			"gpu1   Ready                  cpu   Xeon                   2          -                 64 cores\n" +
			"node3  NotReady (down+drain)  gpu   NVIDIA H100 80GB HBM3  4          -                 shards 3/32 used\n" +
			"node3  NotReady (down+drain)                                                            note: Not responding\n"},
		{"after JSON", []Node{roundTrip}, "" +
			"HOST  STATUS  TYPE  DEVICE                 AVAILABLE  PEAK FP16 TFLOPS  DETAIL\n" +
			"gpu1  Ready   gpu   NVIDIA A100-SXM4-80GB  2          312               mem 80Gi, MIG [disabled enabled], driver 550.54\n" +
			"gpu1  Ready   cpu   Xeon                   2          -                 64 cores\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := render(t, func(w io.Writer) error { return WriteNodes(w, c.nodes) })
			if got != c.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

func TestAdminText(t *testing.T) {
	add := Action{Kind: KindAddQoS, Target: "gs_high", Detail: "priority 300", Cmd: []string{"sacctmgr", "-i", "add", "qos", "gs_high", "Description=preempts medium and low"}}
	manual := Action{Kind: KindManual, Target: "node1", Detail: "Gres gpu:4 → gpu:4,shard:32"}
	plan := &AdminPlan{Actions: []Action{add, manual}}
	want := "" +
		"add-qos       gs_high          priority 300\n" +
		"                               $ sacctmgr -i add qos gs_high 'Description=preempts medium and low'\n" +
		"manual        node1            Gres gpu:4 → gpu:4,shard:32\n" +
		"\n1 change(s) for `gpuorch admin apply`, 1 manual\n"
	cases := []struct {
		name  string
		write func(io.Writer) error
		want  string
	}{
		{"plan", func(w io.Writer) error { return plan.WriteText(w, "pools.toml") }, want},
		{"plan no manual", func(w io.Writer) error { return (&AdminPlan{Actions: []Action{add}}).WriteText(w, "pools.toml") }, "" +
			"add-qos       gs_high          priority 300\n" +
			"                               $ sacctmgr -i add qos gs_high 'Description=preempts medium and low'\n" +
			"\n1 change(s) for `gpuorch admin apply`\n"},
		{"plan up to date", func(w io.Writer) error { return (&AdminPlan{}).WriteText(w, "pools.toml") }, "up to date: the cluster matches pools.toml\n"},
		{"applied", func(w io.Writer) error { return WriteApplied(w, []Action{add}, "pools.toml", true) }, "" +
			"done: add-qos       gs_high          priority 300\n" +
			"                               $ sacctmgr -i add qos gs_high 'Description=preempts medium and low'\n" +
			"applied 1 change(s); verified\n"},
		{"applied, then failed", func(w io.Writer) error { return WriteApplied(w, []Action{manual}, "pools.toml", false) },
			"done: manual        node1            Gres gpu:4 → gpu:4,shard:32\n"},
		{"nothing to apply", func(w io.Writer) error { return WriteApplied(w, nil, "pools.toml", true) }, "nothing to do: the cluster matches pools.toml\n"},
		{"failed before anything", func(w io.Writer) error { return WriteApplied(w, nil, "pools.toml", false) }, ""},
		{"removed", func(w io.Writer) error { return WriteRemoved(w, []Action{manual}, true) },
			"done: manual        node1            Gres gpu:4 → gpu:4,shard:32\n"},
		{"nothing to remove", func(w io.Writer) error { return WriteRemoved(w, nil, true) }, "nothing to remove\n"},
		{"remove failed", func(w io.Writer) error { return WriteRemoved(w, nil, false) }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := render(t, c.write); got != c.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

// TestSliceWriteText renders the slice docs/gpu-slicing.md shows for the
// small-infer profile of examples/pools.toml.
func TestSliceWriteText(t *testing.T) {
	m, err := LoadModel("../examples/pools.toml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.PlanOverride(Override{Profile: "small-infer"})
	if err != nil {
		t.Fatal(err)
	}
	want := `workload   pool a100, qos medium (profile), profile small-infer, replicas 1, local GPU true
request    5 TFLOPS, 3Gi VRAM
limit      15 TFLOPS, 3Gi VRAM
gpu        NVIDIA A100-SXM4-80GB: 312 TFLOPS peak FP16, 80Gi (A100)
shards     1 of 8 per GPU (compute 1, vram 1)
sbatch     --partition=gs_a100 --qos=gs_medium --gres=shard:1 --requeue
env        CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=5
env        CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=3072M
env        GPUORCH_SLICE_COMPUTE_PERCENT=5
env        GPUORCH_SLICE_GRACE=30s
env        GPUORCH_SLICE_ON_OVERRUN=requeue
env        GPUORCH_SLICE_QOS=medium
env        GPUORCH_SLICE_TFLOPS_LIMIT=15
env        GPUORCH_SLICE_VRAM_LIMIT=3221225472
overrun    requeue (grace 30s)
`
	if got := render(t, s.WriteText); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	// Without a profile or a VRAM limit: no profile part, no VRAM variables.
	s, err = m.PlanOverride(Override{Pool: "a100", QoS: "low", TFLOPSRequest: 10})
	if err != nil {
		t.Fatal(err)
	}
	want = `workload   pool a100, qos low (explicit), replicas 1, local GPU false
request    10 TFLOPS, 0 VRAM
limit      10 TFLOPS, 0 VRAM
gpu        NVIDIA A100-SXM4-80GB: 312 TFLOPS peak FP16, 80Gi (A100)
shards     1 of 8 per GPU (compute 1, vram 0)
sbatch     --partition=gs_a100 --qos=gs_low --gres=shard:1 --requeue
env        CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=4
env        GPUORCH_SLICE_COMPUTE_PERCENT=4
env        GPUORCH_SLICE_GRACE=10s
env        GPUORCH_SLICE_ON_OVERRUN=requeue
env        GPUORCH_SLICE_QOS=low
env        GPUORCH_SLICE_TFLOPS_LIMIT=10
overrun    requeue (grace 10s)
`
	if got := render(t, s.WriteText); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestEventWriteText(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 500, time.UTC)
	cases := []struct {
		ev   Event
		want string
	}{
		{Event{Time: at, Job: "42", QoS: "low", Kind: "vram", Action: ActionRequeue, PIDs: []int{100, 101}, Used: 3 << 30, Limit: 2 << 30},
			"2026-03-01T12:00:00.0000005Z job 42 qos low vram over limit (3221225472 > 2147483648): requeue pids [100 101]\n"},
		{Event{Time: at, Job: "7", QoS: "high", Kind: "vram", Action: "sigterm", PIDs: []int{9}, Used: 5, Limit: 4, Err: "operation not permitted"},
			"2026-03-01T12:00:00.0000005Z job 7 qos high vram over limit (5 > 4): sigterm pids [9] (operation not permitted)\n"},
	}
	for _, c := range cases {
		if got := render(t, c.ev.WriteText); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}
