package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/gpuslice"
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
and the partitions include file ([slurm] include_file, which slurm.conf must
Include). Node Gres lines it only reports.`,
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
		return nil, cli.Exit("want one argument: the pools file (e.g. examples/pools.toml)", exitUsage)
	}
	m, err := gpuslice.LoadModel(c.Args().First())
	if err != nil {
		return nil, cli.Exit(err.Error(), exitUsage)
	}
	return m, nil
}

func slurmExit(err error) error {
	if errors.Is(err, gpuslice.ErrNoSlurm) {
		return cli.Exit(err.Error()+"\n(is Slurm running? for the test cluster: bash test/slurm/up.sh)", exitUnavailable)
	}
	return cli.Exit(err.Error(), exitFailure)
}

func adminPlan(c *cli.Context) error {
	m, err := loadPools(c)
	if err != nil {
		return err
	}
	p, err := (&gpuslice.Admin{}).Plan(c.Context, m)
	if err != nil {
		return slurmExit(err)
	}
	if c.Bool("json") {
		return gsPrintJSON(p)
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	if len(p.Actions) == 0 {
		fmt.Println("up to date: the cluster matches", m.Path())
		return nil
	}
	for _, a := range p.Actions {
		fmt.Println(a.String())
	}
	fmt.Printf("\n%d change(s) for `gpuorch admin apply`", p.Changes())
	if n := len(p.Actions) - p.Changes(); n > 0 {
		fmt.Printf(", %d manual", n)
	}
	fmt.Println()
	return nil
}

func adminApply(c *cli.Context) error {
	m, err := loadPools(c)
	if err != nil {
		return err
	}
	done, err := (&gpuslice.Admin{}).Apply(c.Context, m)
	if c.Bool("json") {
		if done == nil {
			done = []gpuslice.Action{}
		}
		if perr := gsPrintJSON(done); perr != nil {
			return perr
		}
	} else {
		for _, a := range done {
			fmt.Println("done:", a.String())
		}
	}
	if err != nil {
		return slurmExit(err)
	}
	if !c.Bool("json") {
		if len(done) == 0 {
			fmt.Println("nothing to do: the cluster matches", m.Path())
		} else {
			fmt.Printf("applied %d change(s); verified\n", len(done))
		}
	}
	return nil
}

func gsPrintJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func adminRemove(c *cli.Context) error {
	m, err := loadPools(c)
	if err != nil {
		return err
	}
	done, err := (&gpuslice.Admin{}).Remove(c.Context, m)
	for _, a := range done {
		fmt.Println("done:", a.String())
	}
	if err != nil {
		return slurmExit(err)
	}
	if len(done) == 0 {
		fmt.Println("nothing to remove")
	}
	return nil
}
