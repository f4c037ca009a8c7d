package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/urfave/cli/v2"
)

// `gpuorch loadgen workloads` and `gpuorch loadgen plan`: the Clockwork
// catalogue (the client's -h) and virtual-clock schedules.

func init() {
	loadgenCmd.Subcommands = append(loadgenCmd.Subcommands, loadgenWorkloadsCmd, loadgenPlanCmd)
}

var loadgenWorkloadsCmd = &cli.Command{
	Name:  "workloads",
	Usage: "list the Clockwork workloads with their parameters and defaults",
	Description: `The catalogue of Clockwork's serving client, with the same names and
parameter order. Run one with

  gpuorch loadgen run --target URL --protocol kserve --duration 60s WORKLOAD [PARAMS...] [NAME=VALUE...]

or in an experiment spec: arrival = "slo-exp-1", args = [...] or params = {...}.
Check its schedule first with gpuorch loadgen plan. Details: docs/workloads.md.`,
	Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the catalogue as JSON"}},
	Action: func(c *cli.Context) error {
		if c.Args().Len() > 0 {
			return errkind.Invalidf("usage: gpuorch loadgen workloads [--json]")
		}
		cat := loadgen.ClockworkCatalogue()
		if c.Bool("json") {
			type entry struct {
				*loadgen.ClockworkSpec
				Usage string `json:"usage"`
			}
			out := struct {
				Workloads []entry                   `json:"workloads"`
				Options   []loadgen.ClockworkOption `json:"options"`
				Builtin   []string                  `json:"builtin_arrivals"`
			}{Options: loadgen.ClockworkOptions, Builtin: []string{"poisson", "fixed", "gamma", "closed"}}
			for _, s := range cat {
				out.Workloads = append(out.Workloads, entry{s, s.Usage()})
			}
			return printJSON(c.App.Writer, out)
		}
		writeCatalogue(c.App.Writer, cat)
		return nil
	},
}

func writeCatalogue(w io.Writer, cat []*loadgen.ClockworkSpec) {
	fmt.Fprintln(w, "Clockwork workloads (gpuorch loadgen run --target URL WORKLOAD [PARAMS...] [NAME=VALUE...]):")
	for _, s := range cat {
		fmt.Fprintf(w, "\n%s\n    %s\n", s.Usage(), s.Summary)
		for _, p := range s.Params {
			def := "required"
			if p.Default != "" {
				def = "default " + p.Default
			}
			typ := p.Type
			if p.Type == "enum" {
				typ = strings.Join(p.Choices, "|")
			}
			if r := p.Range(); r != "" {
				typ += " " + r
			}
			fmt.Fprintf(w, "    %-20s (%s, %s) %s\n", p.Name, typ, def, p.Help)
		}
		var notes []string
		if s.OpenEnded {
			notes = append(notes, "never ends by itself: needs --duration")
		}
		if s.Closed {
			notes = append(notes, "closed loop")
		}
		if len(s.Options) > 0 {
			notes = append(notes, "options: "+strings.Join(s.Options, ", "))
		}
		fmt.Fprintf(w, "    [%s]\n", strings.Join(notes, "; "))
	}
	fmt.Fprintln(w, "\nOptions (NAME=VALUE after the parameters, or workload.params in a spec):")
	for _, o := range loadgen.ClockworkOptions {
		fmt.Fprintf(w, "  %-10s default %s: %s\n", o.Name, o.Default, o.Help)
	}
	fmt.Fprintln(w, "\nEvery request without an SLO factor has Clockwork's 100 ms default deadline. Differences from the original: docs/workloads.md.")
}

// loadgenPlanFlags names the flag of each key a plan's errors name.
var loadgenPlanFlags = map[string]string{
	"duration": "--duration", "interval": "--interval", "service": "--service",
	"workload.rate": "--rate", "workload.concurrency": "--concurrency",
}

var loadgenPlanCmd = &cli.Command{
	Name:      "plan",
	Usage:     "compute a workload's arrival schedule on a virtual clock, without sending anything",
	ArgsUsage: "WORKLOAD [PARAMS...] [NAME=VALUE...]",
	Description: `Runs the workload's sources and timers on a virtual clock and prints what
would be sent: requests in total, per model, per class (e.g. fg/bg), per
interval, and the SLO factor in force at each step. Use it to check an
experiment before spending GPU time.

  gpuorch loadgen plan slo-exp-1 resnet50_v2 4 poisson 100 2 32 2 mul 7
  gpuorch loadgen plan --duration 10m --interval 1m azure 1 1 1.0 4 60 1 0 trace_dir=loadgen/testdata/azure
  gpuorch loadgen plan --duration 400s --interval 10s --json bursty_experiment 100

Closed-loop workloads depend on the server's answers; the plan assumes each
request completes --service after it is sent (default 3ms, resnet50_v2's
batch-1 latency on the simulated server) and says so.`,
	Flags: []cli.Flag{
		&cli.DurationFlag{Name: "duration", Usage: "plan this long (required for workloads that never end)"},
		&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "width of the per-interval counts"},
		&cli.DurationFlag{Name: "service", Value: loadgen.DefaultPlanService, Usage: "closed loop: assumed service time per request"},
		&cli.Int64Flag{Name: "seed", Usage: "random seed (as for loadgen run)"},
		&cli.StringSliceFlag{Name: "model", Usage: "the model zoo (repeatable), as --model for loadgen run"},
		&cli.Float64Flag{Name: "rate", Usage: "built-in arrivals (poisson, fixed, gamma): total requests/s"},
		&cli.IntFlag{Name: "concurrency", Usage: "built-in closed arrival: clients"},
		&cli.IntFlag{Name: "rows", Value: 60, Usage: "text output: at most this many interval rows (0 = all)"},
		&cli.BoolFlag{Name: "json", Usage: "print the full plan as JSON (durations in nanoseconds)"},
	},
	Action: func(c *cli.Context) error {
		if c.Args().Len() == 0 {
			return errkind.Invalidf("usage: gpuorch loadgen plan [--duration D] WORKLOAD [PARAMS...] (see gpuorch loadgen workloads)")
		}
		args := c.Args().Slice()
		cfg := &loadgen.Config{
			Seed: c.Int64("seed"), Duration: loadgen.Duration(c.Duration("duration")),
			Target: loadgen.TargetConfig{Models: c.StringSlice("model")},
			Workload: loadgen.WorkloadConfig{Arrival: args[0], Args: args[1:],
				Rate: c.Float64("rate"), Concurrency: c.Int("concurrency")},
		}
		opts := loadgen.PlanOptions{Duration: c.Duration("duration"), Interval: c.Duration("interval"), Service: c.Duration("service")}
		if err := opts.Validate(); err != nil {
			return asFlagError(err, loadgenPlanFlags)
		}
		w, err := loadgen.BuildWorkload(cfg)
		if err != nil {
			return asFlagError(err, loadgenPlanFlags)
		}
		rep, err := loadgen.PlanWorkload(c.Context, w, opts)
		if err != nil {
			return asFlagError(err, loadgenPlanFlags)
		}
		if c.Bool("json") {
			return printJSON(c.App.Writer, rep)
		}
		rep.WriteText(c.App.Writer, c.Int("rows"))
		return nil
	},
}
