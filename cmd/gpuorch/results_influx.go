package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
	"github.com/urfave/cli/v2"
)

func init() {
	resultsCmd.Subcommands = append(resultsCmd.Subcommands, resultsPingCmd, resultsPushCmd, resultsReportCmd)
	// show, compare and report read from InfluxDB when it is configured
	// (same points, same output), unless GPUORCH_RESULTS_SOURCE=local.
	local := reviewSource
	reviewSource = func(ctx context.Context, e reviewExp, warn io.Writer) (results.Source, string, error) {
		switch os.Getenv("GPUORCH_RESULTS_SOURCE") {
		case "", "auto", "influxdb":
		case "local":
			return local(ctx, e, warn)
		default:
			return nil, "", fmt.Errorf("GPUORCH_RESULTS_SOURCE=%q: want local, influxdb or auto", os.Getenv("GPUORCH_RESULTS_SOURCE"))
		}
		cfg, err := results.LoadInfluxConfig(os.Getenv)
		if err != nil {
			return nil, "", fmt.Errorf("influxdb configuration: %w", err)
		}
		if !cfg.Configured() || e.ID == "" { // a bare directory has no experiment id to query by
			if os.Getenv("GPUORCH_RESULTS_SOURCE") == "influxdb" {
				return nil, "", fmt.Errorf("GPUORCH_RESULTS_SOURCE=influxdb but InfluxDB is not configured or %s has no experiment id", e.Label)
			}
			return local(ctx, e, warn)
		}
		if err := results.Check(ctx, cfg); err != nil {
			return nil, "", fmt.Errorf("%w (set GPUORCH_RESULTS_SOURCE=local to read the local store)", err)
		}
		return results.NewInfluxSource(cfg), e.ID, nil
	}
}

func sourceName(src results.Source, e reviewExp) string {
	if is, ok := src.(*results.InfluxSource); ok {
		return fmt.Sprintf("InfluxDB %s, bucket %s", is.Cfg.URL, is.Cfg.Bucket)
	}
	return "local store " + e.Dir
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
		// urfave/cli stops parsing flags at the first argument; accept the
		// natural `report EXP -o file.html` too.
		args, out := c.Args().Slice(), c.String("output")
		if len(args) == 3 && (args[1] == "-o" || args[1] == "--output") {
			args, out = args[:1], args[2]
		} else if len(args) == 2 && (strings.HasPrefix(args[1], "-o=") || strings.HasPrefix(args[1], "--output=")) {
			_, v, _ := strings.Cut(args[1], "=")
			args, out = args[:1], v
		}
		if len(args) != 1 {
			return cli.Exit("usage: gpuorch results report [-o report.html] EXP", exitUsage)
		}
		e, err := resolveExperiment(c.String("home"), args[0])
		if err != nil {
			return err
		}
		src, id, err := reviewSource(c.Context, e, c.App.ErrWriter)
		if err != nil {
			if results.IsUnreachable(err) {
				return cli.Exit(fmt.Sprintf("results of %s: %v", e.Label, err), exitUnavailable)
			}
			return cli.Exit(fmt.Sprintf("results of %s: %v", e.Label, err), exitFailure)
		}
		d, err := results.LoadReport(c.Context, src, id, sourceName(src, e))
		if err != nil {
			return cli.Exit(fmt.Sprintf("results of %s: %v", e.Label, err), exitFailure)
		}
		d.Experiment = e.Label
		if out == "-" {
			return results.WriteReport(c.App.Writer, d)
		}
		tmp := out + ".tmp"
		f, err := os.Create(tmp)
		if err != nil {
			return cli.Exit(err.Error(), exitFailure)
		}
		if err := results.WriteReport(f, d); err != nil {
			f.Close()
			os.Remove(tmp)
			return cli.Exit(fmt.Sprintf("report of %s: %v", e.Label, err), exitFailure)
		}
		if err := f.Close(); err != nil {
			return cli.Exit(err.Error(), exitFailure)
		}
		if err := os.Rename(tmp, out); err != nil {
			return cli.Exit(err.Error(), exitFailure)
		}
		fmt.Fprintf(c.App.ErrWriter, "wrote %s (%d tasks, from %s)\n", out, len(d.Results.Tasks), d.Source)
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

// loadInfluxOrExit loads the InfluxDB settings and insists they exist.
func loadInfluxOrExit() (results.InfluxConfig, error) {
	cfg, err := results.LoadInfluxConfig(os.Getenv)
	if err != nil {
		return cfg, cli.Exit(fmt.Sprintf("influxdb configuration: %v", err), exitUsage)
	}
	if !cfg.Configured() {
		return cfg, cli.Exit("InfluxDB is not configured: set GPUORCH_INFLUX_URL (see `gpuorch results ping --help`)", exitUsage)
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
		cfg, err := loadInfluxOrExit()
		if err != nil {
			return err
		}
		rep, perr := results.Ping(c.Context, cfg)
		if c.Bool("json") {
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			out := struct {
				results.PingReport
				OK    bool   `json:"ok"`
				Error string `json:"error,omitempty"`
			}{PingReport: rep, OK: perr == nil}
			if perr != nil {
				out.Error = perr.Error()
			}
			if err := enc.Encode(out); err != nil {
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
		switch {
		case perr == nil:
			return nil
		case results.IsUnreachable(perr):
			return cli.Exit(perr.Error(), exitUnavailable)
		default:
			return cli.Exit(perr.Error(), exitFailure)
		}
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
			return cli.Exit("usage: gpuorch results push [--all] EXPERIMENT", exitUsage)
		}
		cfg, err := loadInfluxOrExit()
		if err != nil {
			return err
		}
		exp, err := orchestrator.Open(orchestrator.Home(), c.Args().First())
		if err != nil {
			return cli.Exit(err.Error(), exitUsage)
		}
		if err := results.Check(c.Context, cfg); err != nil {
			if results.IsUnreachable(err) {
				return cli.Exit(err.Error(), exitUnavailable)
			}
			return cli.Exit(err.Error(), exitFailure)
		}
		spools, _ := filepath.Glob(filepath.Join(layout.Experiment(exp.Dir).TaskGlob(), layout.InfluxSpoolDir))
		var stores []string
		if c.Bool("all") {
			stores, _ = filepath.Glob(filepath.Join(layout.Experiment(exp.Dir).TaskGlob(), layout.MetricsFile))
		}
		sort.Strings(spools)
		sort.Strings(stores)
		var all []results.PushResult
		var errs []error
		for _, s := range spools {
			r, err := results.PushSpool(c.Context, cfg, s)
			all = append(all, r)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s, err))
			}
		}
		for _, s := range stores {
			r, err := results.PushFile(c.Context, cfg, s)
			all = append(all, r)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s, err))
			}
		}
		if c.Bool("json") {
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			if err := enc.Encode(all); err != nil {
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
		if err := errors.Join(errs...); err != nil {
			return cli.Exit(err.Error(), exitFailure)
		}
		return nil
	},
}
