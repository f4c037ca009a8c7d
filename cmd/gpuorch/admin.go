package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/errkind"
)

func init() {
	register(&cli.Command{
		Name:  "admin",
		Usage: "turn a GPU pools model (pools.toml) into Slurm QOS and partitions",
		Description: `A pools file describes GPU pools (one Slurm partition each), the QoS levels
low < medium < high < critical (one Slurm QOS each; a level preempts every
lower one, with requeue and a grace time) and workload profiles. See
docs/gpu-slicing.md and examples/pools.toml.

  gpuorch admin plan examples/pools.toml    # what differs from the running cluster
  gpuorch admin apply examples/pools.toml   # make it so; a second apply does nothing

gpuorch changes only: QOS named with the model's [slurm] prefix (sacctmgr),
the partitions include file ([slurm] include_file, which slurm.conf must
Include), with [mps] the MPS hook. Node Gres lines, Prolog/Epilog: reported.`,
		Subcommands: []*cli.Command{
			{
				Name:      "plan",
				Usage:     "show what apply would change: QOS, partitions, gres/shard lines",
				ArgsUsage: "POOLS.toml",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the plan as JSON"}},
				Action:    adminPlan,
			},
			{
				Name:      "apply",
				Usage:     "create/modify the QOS, write the partitions include file, reconfigure, verify",
				ArgsUsage: "POOLS.toml",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the actions performed as JSON"}},
				Action:    adminApply,
			},
			{
				Name:      "remove",
				Usage:     "take the model out: its partitions from the include file, reconfigure, delete its QOS",
				ArgsUsage: "POOLS.toml",
				Description: `Removes only what the model manages (partitions and QOS named with its
[slurm] prefix); other lines of the include file and other QOS stay. Jobs
still queued in its partitions or QOS should be cancelled first.`,
				Action: adminRemove,
			},
		},
	})
}

func loadPools(c *cli.Context) (*gpuslice.Model, error) {
	if c.NArg() != 1 {
		return nil, errkind.Invalidf("want one argument: the pools file (e.g. examples/pools.toml)")
	}
	m, err := gpuslice.LoadModel(c.Args().First())
	return m, errkind.Invalid(err)
}

// slurmErr gives an error from Slurm its kind: an unreachable Slurm is
// errkind.ErrUnavailable, with the hint how to start the test cluster.
func slurmErr(err error) error {
	if errors.Is(err, errkind.ErrUnavailable) {
		return errkind.Unavailablef("%w\n(is Slurm running? for the test cluster: bash test/slurm/up.sh)", err)
	}
	return err
}

func adminPlan(c *cli.Context) error {
	m, err := loadPools(c)
	if err != nil {
		return err
	}
	p, err := (&gpuslice.Admin{}).Plan(c.Context, m)
	if err != nil {
		return slurmErr(err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, p)
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(c.App.ErrWriter, "warning:", w)
	}
	return p.WriteText(c.App.Writer, m.Path())
}

func adminApply(c *cli.Context) error {
	m, err := loadPools(c)
	if err != nil {
		return err
	}
	done, err := (&gpuslice.Admin{}).Apply(c.Context, m)
	if done == nil {
		done = []gpuslice.Action{}
	}
	if werr := printJSONOrText(c, done, func(w io.Writer) error { return gpuslice.WriteApplied(w, done, m.Path(), err == nil) }); werr != nil {
		return werr
	}
	return slurmErr(err)
}

func adminRemove(c *cli.Context) error {
	m, err := loadPools(c)
	if err != nil {
		return err
	}
	done, err := (&gpuslice.Admin{}).Remove(c.Context, m)
	if werr := gpuslice.WriteRemoved(c.App.Writer, done, err == nil); werr != nil {
		return werr
	}
	return slurmErr(err)
}
