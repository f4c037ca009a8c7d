package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

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
					&cli.IntFlag{Name: "functions", Value: 200, Usage: "functions (rows) per day"},
					&cli.IntFlag{Name: "days", Value: 1, Usage: "days d01 … dNN to write (1-14)"},
					&cli.Int64Flag{Name: "seed", Value: 1, Usage: "random seed (same seed, same files)"},
					&cli.Float64Flag{Name: "mean-rate", Value: 0.5, Usage: "median function's invocations per minute"},
					&cli.Float64Flag{Name: "sigma", Value: 2.5, Usage: "log-normal spread of popularity"},
				},
				Action: func(c *cli.Context) error {
					days := c.Int("days")
					if days < 1 || days > 14 || c.Int("functions") < 1 {
						return cli.Exit("--days must be 1-14 and --functions ≥ 1", exitUsage)
					}
					dir := c.String("dir")
					if err := os.MkdirAll(dir, 0o755); err != nil {
						return cli.Exit(err.Error(), exitFailure)
					}
					for d := 1; d <= days; d++ {
						fns := loadgen.GenerateAzureTrace(loadgen.AzureGenOptions{
							Functions: c.Int("functions"), Seed: c.Int64("seed"), Day: d,
							MeanRate: c.Float64("mean-rate"), Sigma: c.Float64("sigma"),
						})
						path := filepath.Join(dir, fmt.Sprintf("invocations_per_function_md.anon.d%02d.csv", d))
						f, err := os.Create(path)
						if err != nil {
							return cli.Exit(err.Error(), exitFailure)
						}
						err = loadgen.WriteAzureTrace(f, fns)
						if cerr := f.Close(); err == nil {
							err = cerr
						}
						if err != nil {
							return cli.Exit(fmt.Sprintf("write %s: %v", path, err), exitFailure)
						}
						var total uint64
						for _, fn := range fns {
							total += fn.Total
						}
						fmt.Fprintf(c.App.Writer, "%s: %d functions, %d invocations (%.1f/s over the day)\n", path, len(fns), total, float64(total)/86400)
					}
					return nil
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
						return cli.Exit("usage: gpuorch loadgen azure-trace stats FILE", exitUsage)
					}
					t, err := loadgen.ReadAzureTrace(c.Args().First())
					if err != nil {
						return cli.Exit(err.Error(), exitUsage)
					}
					fns := t.ByPopularity()
					var total uint64
					peak := make([]uint64, loadgen.AzureMinutes)
					for _, f := range fns {
						total += f.Total
						for m, v := range f.Counts {
							peak[m] += uint64(v)
						}
					}
					var pk uint64
					for _, v := range peak {
						pk = max(pk, v)
					}
					top := min(10, len(fns))
					var topShare uint64
					for _, f := range fns[:top] {
						topShare += f.Total
					}
					out := map[string]any{
						"file": t.File, "functions": len(fns), "invocations": total,
						"mean_per_s": float64(total) / 86400, "peak_minute_per_s": float64(pk) / 60,
						"top10_share":                 float64(topShare) / float64(max(total, 1)),
						"azure_rate_per_s_at_scale_1": float64(total) / 86400,
					}
					if c.Bool("json") {
						enc := json.NewEncoder(c.App.Writer)
						enc.SetIndent("", "  ")
						return enc.Encode(out)
					}
					fmt.Fprintf(c.App.Writer, "%s: %d functions, %d invocations; mean %.1f/s, peak minute %.1f/s; top 10 functions %.1f%% of invocations\n",
						t.File, len(fns), total, out["mean_per_s"], out["peak_minute_per_s"], 100*out["top10_share"].(float64))
					fmt.Fprintf(c.App.Writer, "azure offers about %.1f/s × load_factor × 0.125 × num_workers (any interval: it compresses time, not counts per second)\n", float64(total)/86400)
					return nil
				},
			},
		},
	})
}
