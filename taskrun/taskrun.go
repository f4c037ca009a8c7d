// Package taskrun is what one task of an experiment does: its manifest (a
// loadgen.Config) becomes a load run whose intervals, summary and metrics
// land in the task directory (internal/layout) and in the configured sinks.
// `gpuorch loadgen run` (executors call it with --manifest) and benchmark
// tasks (llmbench) both run tasks through it.
package taskrun

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/results"
)

// ReadManifest decodes a task manifest strictly: an unknown key is an error.
// It is read within limitio.Record's limits. Every error is of kind
// errkind.ErrInvalid.
func ReadManifest(path string) (*loadgen.Config, error) {
	b, err := limitio.ReadFile(path, limitio.Record.As("task manifest"))
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var cfg loadgen.Config
	if err := dec.Decode(&cfg); err != nil {
		return nil, errkind.Invalidf("manifest %s: %w", path, err)
	}
	return &cfg, nil
}

// Prepare checks cfg before anything is written or sent — every range of
// loadgen.Limits, the target's URL, method and headers, the workload's
// parameters and size, and that the run ends (loadgen.Check) — and builds
// its workload. Every error is of
// kind errkind.ErrInvalid; a *loadgen.FieldError when one key is at fault.
func Prepare(cfg *loadgen.Config) (*loadgen.Workload, error) {
	if err := loadgen.Check(cfg); err != nil {
		return nil, err
	}
	if _, err := loadgen.NewTarget(cfg.Target); err != nil {
		return nil, errkind.Invalid(err)
	}
	w, err := loadgen.BuildWorkload(cfg)
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	return w, nil
}

// Options are what a run does besides the load itself.
type Options struct {
	// Dir is the task directory the outputs go to; "" writes nothing.
	Dir string
	// PerRequest also writes one row per request to requests.jsonl (so
	// does GPUORCH_PER_REQUEST=1 in the environment).
	PerRequest bool
	// OnSnapshot is called with each interval, after it is stored.
	OnSnapshot func(loadgen.Snapshot)
	// OnProgress is called about ten times a second (loadgen.RunOptions).
	OnProgress func(loadgen.Progress)
	// Target, when set, is where requests go instead of the target the
	// manifest describes (a deployment's replicas).
	Target loadgen.Target
	// Sink, when set, receives the task's points instead of a sink opened
	// for Dir; the caller flushes and closes it.
	Sink results.Sink
	// Shard is --shard for a sharded task (Config.Shards > 1): "I/K" runs
	// shard I of K, "slurm" the shard of this Slurm task (SLURM_PROCID),
	// "merge" merges the shards' summaries once they have ended. "" runs
	// an unsharded task. See docs/slurm.md.
	Shard string
}

// Run runs the load of cfg (built by Prepare into w) and writes the task's
// outputs. The summary is nil only when the run never started. The error
// keeps loadgen's kinds: an unreachable target is errkind.ErrUnavailable and
// an interrupted run returns its partial summary with Status interrupted.
// A shard of a sharded task (Options.Shard) writes into its own directory,
// tasks/<i>/shards/<s>/; --shard merge writes the task's summary.json.
func Run(ctx context.Context, cfg *loadgen.Config, w *loadgen.Workload, opts Options) (*loadgen.Summary, error) {
	sp, err := parseShard(opts.Shard, cfg.Shards, os.Getenv)
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	if (sp.merge || sp.count > 1) && opts.Dir == "" {
		return nil, errkind.Invalidf("--shard: the shards of a run meet and leave their results in a directory they share: give --out DIR (or --manifest)")
	}
	switch {
	case sp.merge:
		return mergeShards(cfg, layout.Task(opts.Dir), sp.count)
	case sp.count > 1:
		return runShard(ctx, cfg, w, opts, sp)
	}
	return run(ctx, cfg, w, opts, layout.Task(opts.Dir), nil, loadgen.RunOptions{})
}

// run runs the load into dir; shard is set for a shard of a sharded task.
func run(ctx context.Context, cfg *loadgen.Config, w *loadgen.Workload, opts Options, dir layout.Task, shard *loadgen.ShardInfo, ro loadgen.RunOptions) (*loadgen.Summary, error) {
	if opts.Dir == "" {
		dir = ""
	}
	out := &outputs{dir: dir, sink: opts.Sink}
	meta := loadgen.Summary{
		Experiment: cfg.Experiment, Task: cfg.Task, Workload: w.Name, Target: cfg.Target.URL,
		Protocol: cfg.Target.Protocol, Tags: cfg.Tags, Started: time.Now(), Shard: shard,
	}
	if err := out.open(ctx, meta, opts.PerRequest || os.Getenv("GPUORCH_PER_REQUEST") == "1"); err != nil {
		return nil, err
	}
	defer out.close()
	ro.OnSnapshot = func(s loadgen.Snapshot) {
		out.snapshot(s)
		if opts.OnSnapshot != nil {
			opts.OnSnapshot(s)
		}
	}
	ro.OnProgress = opts.OnProgress
	ro.Target = opts.Target
	if out.rows != nil {
		ro.OnResult = out.rows.write
	}
	sum, runErr := loadgen.Run(ctx, cfg, w, ro)
	if sum != nil {
		sum.Shard = shard
		if err := out.summary(sum); err != nil && runErr == nil {
			runErr = fmt.Errorf("write results: %w", err)
		}
	}
	return sum, runErr
}
