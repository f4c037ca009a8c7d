package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/results/trainlog"
	"github.com/gpuorch/gpuorch/sbatch"
)

func init() {
	specFlags := func() []cli.Flag {
		return []cli.Flag{
			&cli.GenericFlag{Name: "set", Value: &kvList{}, Usage: "override a spec key, e.g. --set training.nodes=4 (repeatable)"},
			&cli.BoolFlag{Name: "preflight", Usage: "probe every node (GPUs visible, image readable, runtime installed) before training starts"},
		}
	}
	register(&cli.Command{
		Name:  "train",
		Usage: "multi-node Metaseq training as sbatch jobs inside SIF images; training log metrics",
		Description: `A spec's [training] table (docs/training.md) describes the run: nodes or
hosts, GPUs per node, the SIF image and its version, a training script or an
OPT model-size preset on the synthetic dummy_lm task. gpuorch renders one
sbatch job with one task per GPU, validates the image, submits the job, and
turns the training log into metrics (measurement "training").`,
		Subcommands: []*cli.Command{
			{
				Name:      "render",
				Usage:     "print the sbatch script a spec's [training] table renders to",
				ArgsUsage: "SPEC.toml",
				Description: `Examples:
  gpuorch train render opt125m.toml
  gpuorch train render --preflight --set training.nodes=4 spec.toml > train.sbatch`,
				Flags: append(specFlags(),
					&cli.StringFlag{Name: "run-dir", Usage: "run directory the script writes to (default: a new one under $GPUORCH_HOME, not created)"},
				),
				Action: trainRender,
			},
			{
				Name:      "submit",
				Usage:     "validate the image, create a run directory and submit the training job",
				ArgsUsage: "SPEC.toml",
				Description: `Validates the image first (whole file, squashfs, architecture, version,
the script inside it) unless --skip-image-check, then creates the run
directory $GPUORCH_HOME/<id> (it must be on a filesystem every node sees),
writes spec.toml and train.sbatch there, and submits with sbatch. With
--follow it then tails train.log, storing training points in
<run dir>/metrics.lp (and InfluxDB when configured) until the job ends, and
prints the summary; Ctrl-C stops following, not the job.

Examples:
  gpuorch train submit --preflight opt125m.toml
  gpuorch train submit --follow --set training.hosts='["gpu01","gpu02"]' spec.toml

Exit codes: 0 submitted (and, with --follow, completed), 1 the image check
or the job failed, 2 bad spec, 3 Slurm unreachable, 130 interrupted.`,
				Flags: append(specFlags(),
					&cli.BoolFlag{Name: "follow", Usage: "follow the training log into metrics until the job ends"},
					&cli.BoolFlag{Name: "skip-image-check", Usage: "do not validate the image on this machine (when it is only on the nodes)"},
					&cli.BoolFlag{Name: "json", Usage: "print {id, dir, job_id[, summary]} as JSON"},
				),
				Action: trainSubmit,
			},
			{
				Name:      "parse",
				Usage:     "summarise a Metaseq training log: throughput, time per update, training and validation loss",
				ArgsUsage: "TRAIN.log",
				Description: `Reads metaseq's progress lines "YYYY-MM-DD HH:MM:SS | INFO | TAG | {json}"
(with or without an srun --label or slurm_procid prefix; TAG train_inner,
train at the end of an epoch, valid or valid/<subset>); other lines, such as
the config metaseq.cli.train logs as a Python dict, are skipped. Prints the
summary: steady-state words/s excluding the first interval, seconds per
update, final loss and perplexity, each validation subset's last and best
loss, and where the run diverged (a loss of inf or NaN). --points prints
every training point in line protocol instead.

Exit codes: 0 summarised, 1 the run diverged or has no training intervals,
2 the log cannot be read.

Examples:
  gpuorch train parse gpuorch-runs/opt125m-20261122-070415-3fa9/train.log
  gpuorch train parse --json train.log | jq .mean_wps`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON"},
					&cli.BoolFlag{Name: "points", Usage: "print the training points as InfluxDB line protocol"},
					&cli.StringFlag{Name: "experiment", Usage: "experiment tag for --points"},
					&cli.StringFlag{Name: "job", Usage: "job tag for --points"},
				},
				Action: trainParse,
			},
			{
				Name:      "follow",
				Usage:     "tail a growing training log, storing training points as they appear",
				ArgsUsage: "TRAIN.log",
				Description: `Stores points in DIR/metrics.lp (--out, default the log's directory) and in
InfluxDB when configured (docs/influxdb.md). Stops at metaseq's "done
training" line, when Slurm job --job ends, or on Ctrl-C; then prints the
summary.

Examples:
  gpuorch train follow --job 1234 --experiment opt125m /shared/runs/x/train.log`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Usage: "directory for metrics.lp (default: the log's directory)"},
					&cli.StringFlag{Name: "experiment", Usage: "experiment tag of the points"},
					&cli.StringFlag{Name: "job", Usage: "Slurm job id: tag of the points, and stop when the job ends"},
					&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON"},
				},
				Action: trainFollow,
			},
		},
	})
}

// loadTraining reads the spec (the one argument) and its [training] table.
func loadTraining(c *cli.Context) (*orchestrator.Spec, orchestrator.TrainingSpec, error) {
	if c.NArg() != 1 {
		return nil, orchestrator.TrainingSpec{}, errkind.Invalidf("train %s: want exactly one SPEC argument", c.Command.Name)
	}
	return orchestrator.LoadTraining(c.Args().First(), *c.Generic("set").(*kvList))
}

func trainRender(c *cli.Context) error {
	spec, tr, err := loadTraining(c)
	if err != nil {
		return err
	}
	dir := c.String("run-dir")
	if dir == "" {
		if _, dir, err = orchestrator.TrainingRunDir(spec); err != nil {
			return err
		}
	} else if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	job, err := tr.TrainingJob(orchestrator.TrainingJobOptions{Name: spec.Experiment.Name, RunDir: dir, Preflight: c.Bool("preflight")})
	if err != nil {
		return errkind.Invalid(err)
	}
	script, err := job.Render()
	if err != nil {
		return errkind.Invalid(err)
	}
	_, err = io.WriteString(c.App.Writer, script)
	return err
}

func trainSubmit(c *cli.Context) error {
	ctx := c.Context
	spec, tr, err := loadTraining(c)
	if err != nil {
		return err
	}
	if !c.Bool("skip-image-check") {
		if err := orchestrator.CheckTrainingImage(ctx, tr); err != nil {
			return err
		}
	}
	client := &sbatch.Client{}
	run, err := orchestrator.SubmitTraining(ctx, client, spec, tr, c.Bool("preflight"))
	if err != nil {
		return err
	}
	w := c.App.Writer
	if !c.Bool("json") {
		fmt.Fprintf(w, "submitted %s: job %s, run directory %s\n", run.ID, run.JobID, run.Dir)
	}
	if !c.Bool("follow") {
		if c.Bool("json") {
			return printJSON(w, run)
		}
		return nil
	}
	res, state, ferr := orchestrator.FollowTraining(ctx, run.Log(), run.Dir,
		map[string]string{"experiment": run.ID, "job": run.JobID, "task": "0"},
		orchestrator.FollowOptions{JobID: run.JobID, Client: client, OnError: warnTo(c.App.ErrWriter)})
	run.Summary, run.State = &res.Summary, state
	if c.Bool("json") {
		_ = printJSON(w, run)
	} else {
		res.Summary.WriteText(w)
		fmt.Fprintf(w, "job %s: %s\n", run.JobID, state)
	}
	if ferr != nil {
		if errors.Is(ferr, context.Canceled) {
			return errkind.Interrupted(fmt.Errorf("stopped following; job %s keeps running (%s)", run.JobID, sbatch.CommandLine("gpuorch", "train", "follow", "--job", run.JobID, run.Log())))
		}
		return ferr
	}
	// A job that ended badly, or whose loss diverged, failed.
	if msg, ended := res.Summary.Failed(), state != string(sbatch.StateCompleted); ended || msg != "" {
		head := "job " + run.JobID
		if ended {
			head += " ended " + state
		}
		return fmt.Errorf("%s (see %s)", strings.TrimSuffix(head+": "+msg, ": "), run.Dir)
	}
	return nil
}

// warnTo prints problems that do not stop the command.
func warnTo(w io.Writer) func(error) {
	return func(err error) { fmt.Fprintf(w, "gpuorch: %v\n", err) }
}

func trainParse(c *cli.Context) error {
	if c.NArg() != 1 {
		return errkind.Invalidf("train parse: want exactly one LOG argument")
	}
	path := c.Args().First()
	col := &trainlog.Collector{Tags: map[string]string{"experiment": c.String("experiment"), "job": c.String("job")}}
	errs, err := trainlog.ParseFile(c.Context, path, col)
	if err != nil {
		return err // names the file; a line over the limit, /dev/zero or a missing file is bad input
	}
	for _, e := range errs {
		fmt.Fprintf(c.App.ErrWriter, "gpuorch: %s: %v\n", path, e)
	}
	w := c.App.Writer
	switch {
	case c.Bool("points"):
		var b []byte
		for _, r := range col.Records() {
			var err error
			if b, err = results.AppendLine(b[:0], r.Point(col.Tags)); err != nil {
				return err
			}
			w.Write(b)
		}
		return nil
	}
	sum := col.Summary()
	if err := printJSONOrText(c, sum, sum.WriteText); err != nil {
		return err
	}
	if msg := sum.Failed(); msg != "" {
		if c.Bool("json") {
			return errors.New(msg) // the JSON says it; stderr says why the exit code is 1
		}
		return errkind.Reported(errors.New(msg))
	}
	if sum.Intervals == 0 && !c.Bool("json") {
		return errkind.Reported(errors.New("no training intervals"))
	}
	return nil
}

func trainFollow(c *cli.Context) error {
	if c.NArg() != 1 {
		return errkind.Invalidf("train follow: want exactly one LOG argument")
	}
	logPath := c.Args().First()
	out := c.String("out")
	if out == "" {
		out = filepath.Dir(logPath)
	}
	tags := map[string]string{"experiment": c.String("experiment"), "job": c.String("job")}
	res, state, err := orchestrator.FollowTraining(c.Context, logPath, out, tags,
		orchestrator.FollowOptions{JobID: c.String("job"), Client: &sbatch.Client{}, OnError: warnTo(c.App.ErrWriter)})
	if c.Bool("json") {
		printJSON(c.App.Writer, map[string]any{"summary": res.Summary, "points": res.Points, "finished": res.Finished, "state": state})
	} else {
		res.Summary.WriteText(c.App.Writer)
		fmt.Fprintf(c.App.Writer, "%d points stored in %s\n", res.Points, layout.Task(out).Metrics())
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if msg := res.Summary.Failed(); msg != "" {
		return errkind.Reported(errors.New(msg))
	}
	return nil
}
