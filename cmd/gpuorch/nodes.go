package main

import (
	"errors"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/gpuslice/nvmlx"
	"github.com/gpuorch/gpuorch/internal/errkind"
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
			return errkind.Invalid(err)
		}
		overrides = m.GPUModels
	}
	n := nvmlx.Probe(nvmlx.Default(), overrides)
	if err := printJSONOrText(c, n, func(w io.Writer) error { return gpuslice.WriteNodes(w, []gpuslice.Node{n}) }); err != nil {
		return err
	}
	if !n.HasGPU() && c.Bool("require-gpu") {
		return errkind.Unavailable(errors.New(n.Note))
	}
	return nil
}

func nodesList(c *cli.Context) error {
	var m *gpuslice.Model
	if p := c.String("pools"); p != "" {
		var err error
		if m, err = gpuslice.LoadModel(p); err != nil {
			return errkind.Invalid(err)
		}
	}
	nodes, err := gpuslice.ClusterNodes(c.Context, nil, m)
	if err != nil {
		return slurmErr(err)
	}
	if c.Bool("probe") {
		bin := c.String("binary")
		if bin == "" {
			if bin, err = os.Executable(); err != nil {
				return errkind.Invalidf("cannot find this binary for --probe: %w (give --binary)", err)
			}
		}
		gpuslice.ProbeNodes(c.Context, nil, nodes, bin, c.StringSlice("srun-arg"), c.App.ErrWriter)
	}
	if nodes == nil {
		nodes = []gpuslice.Node{}
	}
	return printJSONOrText(c, nodes, func(w io.Writer) error { return gpuslice.WriteNodes(w, nodes) })
}
