package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
	"github.com/urfave/cli/v2"
)

func init() {
	resultsCmd.Subcommands = append(resultsCmd.Subcommands, resultsPingCmd, resultsPushCmd, resultsReportCmd)
}

var resultsReportCmd = &cli.Command{
	Name:      "report",
	Usage:     "write a self-contained HTML report with charts for an experiment",
	ArgsUsage: "EXP",
	Description: `Writes one HTML page (no network needed: the charting library is inlined)
with the experiment's task table and five charts:

   latency percentiles (p50, p90, p99, p99.9) against offered rate
   throughput over time, per task
   p99 latency over time, per task
   SLO attainment against SLO factor, per task
   latency CDF per task (from the recorded percentiles)

For a training run (gpuorch train submit; measurement training) it has a
table of runs (updates, last training and validation loss, DIVERGED at the
update where the loss became inf or NaN) and two charts against the update:
training loss with each validation subset's loss (a divergence marked), and
words/s.

Points come from InfluxDB when it is configured (GPUORCH_INFLUX_URL), else
from the experiment's local store; GPUORCH_RESULTS_SOURCE=local forces the
local store. EXP is resolved as for ` + "`gpuorch results show`" + `.

Example:
   gpuorch results report -o report.html quickstart
   xdg-open report.html`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "report.html", Usage: "where to write the HTML page (- for stdout)"},
		&cli.StringFlag{Name: "home", Usage: "directory holding experiment directories", EnvVars: []string{"GPUORCH_HOME"}, Value: "gpuorch-runs"},
	},
	Action: func(c *cli.Context) error {
		out := c.String("output")
		if c.NArg() != 1 {
			return errkind.Invalidf("usage: gpuorch results report [-o report.html] EXP")
		}
		e, sel, bad, err := reviewSource(c, c.Args().First())
		if err != nil {
			return err
		}
		d, err := results.LoadReport(c.Context, sel.Source, sel.Experiment, sel.Name)
		bad.WriteText(c.App.ErrWriter)
		if err != nil {
			return fmt.Errorf("results of %s: %w", e.Label, err)
		}
		d.Experiment = e.Label
		if out == "-" {
			return results.WriteReport(c.App.Writer, d)
		}
		if err := atomicfile.Write(out, 0o644, func(w io.Writer) error { return results.WriteReport(w, d) }); err != nil {
			return fmt.Errorf("report of %s: %w", e.Label, err)
		}
		what := fmt.Sprintf("%d tasks", len(d.Results.Tasks))
		if len(d.Results.Tasks) == 0 && len(d.Training) > 0 {
			what = fmt.Sprintf("%d training points", len(d.Training))
		}
		fmt.Fprintf(c.App.ErrWriter, "wrote %s (%s, from %s)\n", out, what, d.Source)
		return nil
	},
}

const influxConfigHelp = `InfluxDB is configured by environment variables or the [influxdb] table of
$GPUORCH_CONFIG (default ~/.config/gpuorch/config.toml); see docs/influxdb.md:

   GPUORCH_INFLUX_URL         e.g. http://127.0.0.1:8086
   GPUORCH_INFLUX_BUCKET      database, or database/retention-policy (default gpuorch)
   GPUORCH_INFLUX_TOKEN       user:password on InfluxDB 1.8 with auth (or a token)
   GPUORCH_INFLUX_TOKEN_FILE  a file holding the token, mode 0600

The token is never accepted on the command line.`

// loadInflux loads the InfluxDB settings and insists they exist.
func loadInflux() (results.InfluxConfig, error) {
	cfg, err := results.LoadInfluxConfig(os.Getenv)
	if err != nil {
		return cfg, errkind.Invalidf("influxdb configuration: %w", err)
	}
	if !cfg.Configured() {
		return cfg, errkind.Invalidf("InfluxDB is not configured: set GPUORCH_INFLUX_URL (see `gpuorch results ping --help`)")
	}
	return cfg, nil
}

var resultsPingCmd = &cli.Command{
	Name:  "ping",
	Usage: "check the InfluxDB connection: server, token, database, Flux queries",
	Description: `Checks that InfluxDB answers, that the token is accepted and the database
exists (an empty write), and that Flux queries work (needed by show, compare
and report). Exit status: 0 all good, 1 a problem (printed), 2 bad or missing
configuration, 3 the server is unreachable.

` + influxConfigHelp,
	Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"}},
	Action: func(c *cli.Context) error {
		cfg, err := loadInflux()
		if err != nil {
			return err
		}
		rep, perr := results.Ping(c.Context, cfg)
		if c.Bool("json") {
			out := struct {
				results.PingReport
				OK    bool   `json:"ok"`
				Error string `json:"error,omitempty"`
			}{PingReport: rep, OK: perr == nil}
			if perr != nil {
				out.Error = perr.Error()
			}
			if err := printJSON(c.App.Writer, out); err != nil {
				return err
			}
		} else {
			w := c.App.Writer
			fmt.Fprintf(w, "url:      %s\n", rep.URL)
			fmt.Fprintf(w, "bucket:   %s\n", rep.Bucket)
			fmt.Fprintf(w, "config:   %s\n", rep.Source)
			tok := "none"
			if rep.TokenSet {
				tok = "set (hidden)"
			}
			fmt.Fprintf(w, "token:    %s\n", tok)
			if rep.Version != "" {
				fmt.Fprintf(w, "version:  %s\n", rep.Version)
			}
			fmt.Fprintf(w, "latency:  %s\n", rep.Latency.Round(10*time.Microsecond))
			fmt.Fprintf(w, "write:    %s\n", rep.Write)
			fmt.Fprintf(w, "query:    %s\n", rep.Query)
		}
		return perr // an unreachable server is errkind.ErrUnavailable
	},
}

var resultsPushCmd = &cli.Command{
	Name:      "push",
	Usage:     "deliver an experiment's spooled points to InfluxDB",
	ArgsUsage: "EXPERIMENT",
	Description: `When InfluxDB was down or refused writes during a run, each task kept the
points in tasks/<i>/influx-spool/ (fsync'd line protocol). push sends them,
oldest first, and deletes what was delivered. Points are idempotent (same
series and timestamp), so pushing twice never double counts.

With --all it also sends every task's local store (tasks/<i>/metrics.lp):
use it for an experiment that ran without InfluxDB configured, or whose
gpuorch process was killed (points still in memory at that moment are in
the local store but not in the spool).

EXPERIMENT is an id, a unique id prefix, a name (its latest run) or a
directory.

` + influxConfigHelp,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "all", Usage: "also send every task's local store (metrics.lp)"},
		&cli.BoolFlag{Name: "json", Usage: "print what was delivered as JSON"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return errkind.Invalidf("usage: gpuorch results push [--all] EXPERIMENT")
		}
		cfg, err := loadInflux()
		if err != nil {
			return err
		}
		exp, err := orchestrator.Open(orchestrator.Home(), c.Args().First())
		if err != nil {
			return errkind.Invalid(err)
		}
		if err := results.Check(c.Context, cfg); err != nil {
			return err
		}
		all, perr := results.PushExperiment(c.Context, cfg, exp.Dir, c.Bool("all"))
		if c.Bool("json") {
			if err := printJSON(c.App.Writer, all); err != nil {
				return err
			}
		} else {
			var delivered, rejected, pending int64
			for _, r := range all {
				rel, _ := filepath.Rel(exp.Dir, r.Path)
				fmt.Fprintf(c.App.Writer, "%-40s delivered %8d  rejected %6d  pending %8d\n", rel, r.Delivered, r.Rejected, r.Pending)
				delivered, rejected, pending = delivered+r.Delivered, rejected+r.Rejected, pending+r.Pending
			}
			if len(all) == 0 {
				fmt.Fprintln(c.App.Writer, "nothing to push: no task has a spool (use --all to send the local store)")
			} else {
				fmt.Fprintf(c.App.Writer, "total: delivered %d, rejected %d, still pending %d\n", delivered, rejected, pending)
			}
		}
		return perr
	},
}
