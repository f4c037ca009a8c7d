package taskrun

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/results"
)

// OpenSink opens where one task's metrics go: always the local store,
// metrics.lp in the task directory (schema: docs/metrics.md), and also
// InfluxDB when it is configured (docs/influxdb.md), with its spool in the
// task's influx-spool. A wrong token or a missing database fails here,
// before the run starts; an unreachable server does not (the spool keeps the
// points until it is back, or until `gpuorch results push`).
func OpenSink(ctx context.Context, dir layout.Task) (results.Sink, error) {
	local, err := results.OpenLineFile(dir.Metrics())
	if err != nil {
		return nil, err
	}
	cfg, err := results.LoadInfluxConfig(os.Getenv)
	if err != nil {
		local.Close()
		return nil, errkind.Invalidf("influxdb configuration: %w", err)
	}
	if !cfg.Configured() {
		return local, nil
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := results.Check(cctx, cfg); err != nil {
		if !errors.Is(err, errkind.ErrUnavailable) {
			local.Close()
			return nil, err
		}
		slog.Warn("influxdb unreachable; points go to the local store and the spool", "err", err)
	}
	inf, err := results.NewInfluxSink(cfg, dir.InfluxSpool())
	if err != nil {
		local.Close()
		return nil, err
	}
	return results.Tee(local, inf), nil
}

// CheckSinks checks, before an experiment starts, that InfluxDB (when
// configured) accepts writes: a wrong token or a missing database is bad
// input (errkind.ErrInvalid); an unreachable server is errkind.ErrUnavailable
// unless allowUnreachable (the spool will hold the points). It returns nil
// when InfluxDB is not configured.
func CheckSinks(ctx context.Context, allowUnreachable bool) error {
	cfg, err := results.LoadInfluxConfig(os.Getenv)
	if err != nil {
		return errkind.Invalidf("influxdb configuration: %w", err)
	}
	if !cfg.Configured() {
		return nil
	}
	err = results.Check(ctx, cfg)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errkind.ErrUnavailable):
		if allowUnreachable {
			slog.Warn("influxdb unreachable; points will be spooled", "err", err)
			return nil
		}
		return err
	default:
		var ce *results.CheckError
		if errors.As(err, &ce) {
			return errkind.Invalid(err)
		}
		return err
	}
}
