package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/gpuslice/nvmlx"
)

func init() {
	register(&cli.Command{
		Name:  "nodes",
		Usage: "GPU inventory: the cluster's nodes from Slurm, or this node's GPUs through NVML",
		Description: `Without a subcommand, lists the Slurm cluster's nodes (scontrol show node):
state, GPUs and shards from their Gres, free GPUs and CPUs. --pools names the
GPU model and peak FP16 TFLOPS of each pool's nodes; --probe also runs
'gpuorch nodes probe' on every node through srun and shows what NVML sees.

JSON output uses the node shape {hostname, status, devices: [{name, type,
device_info, device_config: {peak_fp16_TFLOPS}, available_count}]}.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print nodes as JSON"},
			&cli.StringFlag{Name: "pools", Usage: "pools `FILE` naming the GPU model of each pool's nodes"},
			&cli.BoolFlag{Name: "probe", Usage: "run `gpuorch nodes probe` on each node with srun (replaces Slurm's GPU view with NVML's)"},
			&cli.StringFlag{Name: "binary", Usage: "gpuorch `PATH` on the nodes for --probe (default: this binary)"},
			&cli.StringSliceFlag{Name: "srun-arg", Usage: "extra srun argument for --probe, e.g. --srun-arg=--partition=debug (repeatable)"},
		},
		Action: nodesList,
		Subcommands: []*cli.Command{{
			Name:  "probe",
			Usage: "this node's GPUs through NVML: name, memory, MIG mode, driver, peak FP16 TFLOPS",
			Description: `Reads the GPUs through NVML and prints them grouped by model. On a machine
without an NVIDIA driver it says so, describes the CPU, and exits 0 (use
--require-gpu to exit 3 instead).`,
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "json", Usage: "print the node as JSON"},
				&cli.StringFlag{Name: "pools", Usage: "pools `FILE` whose [gpu_models] override the peak table"},
				&cli.BoolFlag{Name: "require-gpu", Usage: "exit 3 when no GPU is found"},
			},
			Action: nodesProbe,
		}},
	})
}

func nodesProbe(c *cli.Context) error {
	var overrides map[string]gpuslice.GPUSpec
	if p := c.String("pools"); p != "" {
		m, err := gpuslice.LoadModel(p)
		if err != nil {
			return cli.Exit(err.Error(), exitUsage)
		}
		overrides = m.GPUModels
	}
	n := nvmlx.Probe(nvmlx.Default(), overrides)
	if c.Bool("json") {
		if err := gsPrintJSON(n); err != nil {
			return err
		}
	} else {
		printNodes([]gpuslice.Node{n})
	}
	hasGPU := false
	for _, d := range n.Devices {
		hasGPU = hasGPU || d.Type == "gpu"
	}
	if !hasGPU && c.Bool("require-gpu") {
		return cli.Exit(n.Note, exitUnavailable)
	}
	return nil
}

func nodesList(c *cli.Context) error {
	var m *gpuslice.Model
	if p := c.String("pools"); p != "" {
		var err error
		if m, err = gpuslice.LoadModel(p); err != nil {
			return cli.Exit(err.Error(), exitUsage)
		}
	}
	nodes, err := gpuslice.ClusterNodes(c.Context, nil, m)
	if err != nil {
		return slurmExit(err)
	}
	if c.Bool("probe") {
		bin := c.String("binary")
		if bin == "" {
			if bin, err = os.Executable(); err != nil {
				return cli.Exit("cannot find this binary for --probe: "+err.Error()+" (give --binary)", exitUsage)
			}
		}
		for i := range nodes {
			if nodes[i].Status != "Ready" {
				continue
			}
			fmt.Fprintf(os.Stderr, "probing %s (%d/%d)…\n", nodes[i].Hostname, i+1, len(nodes))
			p, err := gpuslice.ProbeNode(c.Context, nil, nodes[i].Hostname, bin, c.StringSlice("srun-arg")...)
			if err != nil {
				nodes[i].Note = err.Error()
				continue
			}
			// NVML's view of the devices replaces Slurm's; Slurm's state stays.
			nodes[i].Devices, nodes[i].Driver, nodes[i].CUDA, nodes[i].Note = p.Devices, p.Driver, p.CUDA, p.Note
		}
	}
	if c.Bool("json") {
		if nodes == nil {
			nodes = []gpuslice.Node{}
		}
		return gsPrintJSON(nodes)
	}
	printNodes(nodes)
	return nil
}

func printNodes(nodes []gpuslice.Node) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATUS\tTYPE\tDEVICE\tAVAILABLE\tPEAK FP16 TFLOPS\tDETAIL")
	for _, n := range nodes {
		status := n.Status
		if n.SlurmState != "" {
			status += " (" + strings.ToLower(n.SlurmState) + ")"
		}
		for _, d := range n.Devices {
			peak := "-"
			if d.DeviceConfig.PeakFP16TFLOPS != nil {
				peak = fmt.Sprintf("%g", *d.DeviceConfig.PeakFP16TFLOPS)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", n.Hostname, status, d.Type, d.Name, d.AvailableCount, peak, deviceDetail(n, d))
		}
		if n.Note != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\tnote: %s\n", n.Hostname, status, n.Note)
		}
	}
	tw.Flush()
}

func deviceDetail(n gpuslice.Node, d gpuslice.NodeDevice) string {
	var parts []string
	if v, ok := asInt(d.DeviceInfo["memory_total_bytes"]); ok {
		parts = append(parts, "mem "+gpuslice.Bytes(v).String())
	}
	switch v := d.DeviceInfo["mig_mode"].(type) {
	case []string:
		parts = append(parts, "MIG "+strings.Join(v, ","))
	case []any: // after a JSON round trip (--probe)
		parts = append(parts, fmt.Sprintf("MIG %v", v))
	}
	if v, ok := asInt(d.DeviceInfo["shards"]); ok && d.Type == "gpu" {
		parts = append(parts, fmt.Sprintf("shards %v/%d used", d.DeviceInfo["shards_allocated"], v))
	}
	if v, ok := asInt(d.DeviceInfo["num_virtual_cores"]); ok {
		parts = append(parts, fmt.Sprintf("%d cores", v))
	}
	if d.Type == "gpu" && n.Driver != "" {
		parts = append(parts, "driver "+n.Driver)
	}
	return strings.Join(parts, ", ")
}

// asInt reads a number from device_info, which holds Go ints locally and
// float64s after a JSON round trip.
func asInt(v any) (uint64, bool) {
	switch x := v.(type) {
	case int:
		return uint64(x), true
	case uint64:
		return x, true
	case float64:
		return uint64(x), true
	}
	return 0, false
}
