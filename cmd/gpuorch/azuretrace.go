package main

import (
	"fmt"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/urfave/cli/v2"
)

// `gpuorch loadgen azure-trace`: make and inspect files in the Azure
// Functions 2019 trace format (the real trace cannot be downloaded here).

func init() {
	loadgenCmd.Subcommands = append(loadgenCmd.Subcommands, &cli.Command{
		Name:  "azure-trace",
		Usage: "generate or inspect Azure Functions 2019 trace files (invocations_per_function_md.anon.dNN.csv)",
		Description: `The azure workload replays the Azure Functions 2019 invocation trace from
the directory in AZURE_TRACE_DIR (or trace_dir=DIR). When the real trace is not
at hand, generate a synthetic one of the same format:

  gpuorch loadgen azure-trace generate --dir /tmp/azure --functions 2000 --days 1
  AZURE_TRACE_DIR=/tmp/azure gpuorch loadgen plan --duration 10m azure

A small generated day ships in loadgen/testdata/azure.`,
		Subcommands: []*cli.Command{
			{
				Name:  "generate",
				Usage: "write synthetic trace days (seeded: heavy-tailed popularity, diurnal cycle, timers, bursts)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dir", Required: true, Usage: "output `DIR` (created)"},
					&cli.IntFlag{Name: "functions", Value: 200, Usage: "functions (rows) per day, 1 to 100000"},
					&cli.IntFlag{Name: "days", Value: 1, Usage: "days d01 … dNN to write (1-14)"},
					&cli.Int64Flag{Name: "seed", Value: 1, Usage: "random seed (same seed, same files)"},
					&cli.Float64Flag{Name: "mean-rate", Value: 0.5, Usage: "median function's invocations per minute"},
					&cli.Float64Flag{Name: "sigma", Value: 2.5, Usage: "log-normal spread of popularity"},
				},
				Action: func(c *cli.Context) error {
					days, err := loadgen.GenerateAzureTraceDays(c.Context, c.String("dir"), c.Int("days"), loadgen.AzureGenOptions{
						Functions: c.Int("functions"), Seed: c.Int64("seed"),
						MeanRate: c.Float64("mean-rate"), Sigma: c.Float64("sigma"),
					})
					for _, d := range days {
						fmt.Fprintf(c.App.Writer, "%s: %d functions, %d invocations (%.1f/s over the day)\n", d.Path, d.Functions, d.Invocations, float64(d.Invocations)/86400)
					}
					return asFlagError(err, map[string]string{"functions": "--functions", "days": "--days", "mean-rate": "--mean-rate", "sigma": "--sigma"})
				},
			},
			{
				Name:      "stats",
				Usage:     "summarise a trace file: functions, invocations, busiest functions, the rate the azure workload would offer",
				ArgsUsage: "FILE",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "JSON output"},
				},
				Action: func(c *cli.Context) error {
					if c.Args().Len() != 1 {
						return errkind.Invalidf("usage: gpuorch loadgen azure-trace stats FILE")
					}
					t, err := loadgen.ReadAzureTraceContext(c.Context, c.Args().First())
					if err != nil {
						return errkind.Invalid(err)
					}
					st := t.Stats()
					if c.Bool("json") {
						return printJSON(c.App.Writer, st)
					}
					fmt.Fprintf(c.App.Writer, "%s: %d functions, %d invocations; mean %.1f/s, peak minute %.1f/s; top 10 functions %.1f%% of invocations\n",
						st.File, st.Functions, st.Invocations, st.MeanPerS, st.PeakMinute, 100*st.Top10Share)
					fmt.Fprintf(c.App.Writer, "azure offers about %.1f/s × load_factor × 0.125 × num_workers (any interval: it compresses time, not counts per second)\n", st.RateAtScale1)
					return nil
				},
			},
		},
	})
}
