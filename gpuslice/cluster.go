package gpuslice

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gpuorch/gpuorch/sbatch"
)

// ClusterNodes lists the cluster's nodes from `scontrol show node -o` in
// the node shape: status Ready unless Slurm has the node down, drained or
// failing; GPUs from the node's Gres (named by the pool that holds the node
// when a model is given, with its peak FP16), available_count = GPUs not
// allocated; the CPU from CPUTot/CPUAlloc.
func ClusterNodes(ctx context.Context, r Runner, m *Model) ([]Node, error) {
	r = runner(r)
	out, err := r.Run(ctx, "scontrol", "show", "node", "-o")
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	poolOf := map[string]*Pool{}
	if m != nil {
		for _, name := range m.PoolNames() {
			hosts, err := r.Run(ctx, "scontrol", "show", "hostnames", m.Pools[name].Nodes)
			if err != nil {
				return nil, fmt.Errorf("expand pools.%s.nodes: %w", name, err)
			}
			for _, h := range strings.Fields(string(hosts)) {
				poolOf[h] = m.Pools[name]
			}
		}
	}
	var nodes []Node
	for _, kv := range sbatch.ParseOneliners(string(out)) {
		n := Node{Hostname: kv["NodeName"], SlurmState: kv["State"], Partitions: kv["Partitions"], Gres: kv["Gres"], Status: "Ready"}
		st := strings.ToUpper(n.SlurmState)
		for _, bad := range []string{"DOWN", "DRAIN", "FAIL", "NOT_RESPONDING", "UNKNOWN", "FUTURE", "POWERED_DOWN"} {
			if strings.Contains(st, bad) {
				n.Status = "NotReady"
			}
		}
		if gpus := GresCount(n.Gres, "gpu"); gpus > 0 {
			alloc := tresCount(kv["AllocTRES"], "gres/gpu")
			// Shard jobs hold GPUs too: a GPU with any shard allocated is
			// not free for a whole-GPU job, but still takes slices.
			d := NodeDevice{Name: gresType(n.Gres), Type: "gpu", AvailableCount: max(gpus-alloc, 0), DeviceInfo: map[string]any{
				"count": gpus, "shards": GresCount(n.Gres, "shard"), "shards_allocated": tresCount(kv["AllocTRES"], "gres/shard"),
			}}
			if p := poolOf[n.Hostname]; p != nil {
				d.Name = p.GPU.Name
				peak := p.GPU.PeakFP16
				d.DeviceConfig.PeakFP16TFLOPS = &peak
				d.DeviceInfo["pool"] = p.Name
				d.DeviceInfo["memory_total_bytes"] = uint64(p.GPU.Memory)
			}
			n.Devices = append(n.Devices, d)
		}
		cpus, _ := strconv.Atoi(kv["CPUTot"])
		calloc, _ := strconv.Atoi(kv["CPUAlloc"])
		cpu := NodeDevice{Name: "cpu", Type: "cpu", AvailableCount: max(cpus-calloc, 0),
			DeviceInfo: map[string]any{"num_virtual_cores": cpus, "real_memory_mb": kv["RealMemory"], "arch": kv["Arch"]}}
		// Slurm names no CPU model (gpuorch nodes probe does), so no peak;
		// its memory (MiB) and sockets serve simulate.
		if mb, err := strconv.ParseUint(kv["RealMemory"], 10, 64); err == nil && mb > 0 {
			cpu.DeviceInfo["memory_total_bytes"] = mb * uint64(MiB)
		}
		if sk, err := strconv.Atoi(kv["Sockets"]); err == nil && sk > 0 {
			cpu.DeviceInfo["sockets"] = sk
		}
		n.Devices = append(n.Devices, cpu)
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// gresType is the GPU type in a Gres string ("gpu:a100:4" → "a100"), or "gpu".
func gresType(gres string) string {
	for _, item := range strings.Split(gres, ",") {
		item, _, _ = strings.Cut(item, "(")
		f := strings.Split(item, ":")
		if f[0] == "gpu" && len(f) == 3 {
			return f[1]
		}
	}
	return "gpu"
}

// tresCount reads "cpu=2,mem=200M,gres/gpu=1" → the count of name.
func tresCount(tres, name string) int {
	for _, kv := range strings.Split(tres, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// ProbeNode runs `BINARY nodes probe --json` on one node through srun and
// decodes its answer.
func ProbeNode(ctx context.Context, r Runner, node, binary string, srunArgs ...string) (Node, error) {
	r = runner(r)
	args := append([]string{"-N1", "-n1", "-w", node, "--quiet"}, srunArgs...)
	args = append(args, binary, "nodes", "probe", "--json")
	out, err := r.Run(ctx, "srun", args...)
	if err != nil {
		return Node{}, fmt.Errorf("probe %s: %w", node, err)
	}
	var n Node
	if err := json.Unmarshal(out, &n); err != nil {
		return Node{}, fmt.Errorf("probe %s: bad answer %q: %w", node, out, err)
	}
	return n, nil
}
