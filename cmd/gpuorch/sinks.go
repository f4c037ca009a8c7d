package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/gpuorch/gpuorch/results"
	"github.com/urfave/cli/v2"
)

// resultsCmd is the `gpuorch results` group; files add their subcommands to
// it from their init functions (package-level vars are set before any init).
var resultsCmd = &cli.Command{
	Name:  "results",
	Usage: "review experiment results: tables, comparisons, exports, reports",
}

func init() { register(resultsCmd) }

// influxSpoolDir is where a task's InfluxDB spool lives inside its directory.
const influxSpoolDir = "influx-spool"

// openTaskSink opens where one task's metrics go: always the local store,
// tasks/<i>/metrics.lp in the experiment directory (schema: docs/metrics.md),
// and also InfluxDB when it is configured (docs/influxdb.md), with its spool
// in tasks/<i>/influx-spool. A wrong token or a missing database fails here,
// before the run starts; an unreachable server does not (the spool keeps the
// points until it is back, or until `gpuorch results push`).
func openTaskSink(taskDir string) (results.Sink, error) {
	local, err := results.OpenLineFile(filepath.Join(taskDir, "metrics.lp"))
	if err != nil {
		return nil, err
	}
	cfg, err := results.LoadInfluxConfig(os.Getenv)
	if err != nil {
		local.Close()
		return nil, fmt.Errorf("influxdb configuration: %w", err)
	}
	if !cfg.Configured() {
		return local, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	if err := results.Check(ctx, cfg); err != nil {
		if !results.IsUnreachable(err) {
			local.Close()
			return nil, err
		}
		slog.Warn("influxdb unreachable; points go to the local store and the spool", "err", err)
	}
	inf, err := results.NewInfluxSink(cfg, filepath.Join(taskDir, influxSpoolDir))
	if err != nil {
		local.Close()
		return nil, err
	}
	return results.Tee(local, inf), nil
}

// influxPreflight checks, before an experiment starts, that InfluxDB (when
// configured) accepts writes: a wrong token or a missing database is a
// usage error; an unreachable server is exitUnavailable unless
// allowUnreachable (the spool will hold the points). It returns nil when
// InfluxDB is not configured.
func influxPreflight(ctx context.Context, allowUnreachable bool) error {
	cfg, err := results.LoadInfluxConfig(os.Getenv)
	if err != nil {
		return cli.Exit(fmt.Sprintf("influxdb configuration: %v", err), exitUsage)
	}
	if !cfg.Configured() {
		return nil
	}
	err = results.Check(ctx, cfg)
	switch {
	case err == nil:
		return nil
	case results.IsUnreachable(err):
		if allowUnreachable {
			slog.Warn("influxdb unreachable; points will be spooled", "err", err)
			return nil
		}
		return cli.Exit(err.Error(), exitUnavailable)
	default:
		var ce *results.CheckError
		if errors.As(err, &ce) {
			return cli.Exit(err.Error(), exitUsage)
		}
		return cli.Exit(err.Error(), exitFailure)
	}
}
