package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/results/trainlog"
	"github.com/gpuorch/gpuorch/sbatch"
	"github.com/gpuorch/gpuorch/sif"
	"github.com/gpuorch/gpuorch/taskrun"
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
				Usage:     "summarise a Metaseq training log (train_inner lines): throughput, time per update, loss",
				ArgsUsage: "TRAIN.log",
				Description: `Reads lines "YYYY-MM-DD HH:MM:SS | INFO | train_inner | {json}" (with or
without an srun --label or slurm_procid prefix) and prints the summary:
steady-state words/s excluding the first interval, seconds per update,
final loss and perplexity. --points prints every training point in line
protocol instead.

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

// loadTraining reads a spec and its [training] table with defaults applied.
func loadTraining(c *cli.Context) (*orchestrator.Spec, orchestrator.TrainingSpec, error) {
	if c.NArg() != 1 {
		return nil, orchestrator.TrainingSpec{}, cli.Exit(fmt.Sprintf("train %s: want exactly one SPEC argument (flags go before it)", c.Command.Name), exitUsage)
	}
	var sets []string
	if l, ok := c.Generic("set").(*kvList); ok && l != nil {
		sets = *l
	}
	spec, err := orchestrator.LoadSpec(c.Args().First(), sets)
	if err != nil {
		return nil, orchestrator.TrainingSpec{}, cli.Exit(err.Error(), exitUsage)
	}
	if spec.Training == nil {
		return nil, orchestrator.TrainingSpec{}, cli.Exit(fmt.Sprintf("%s: no [training] table (see docs/training.md)", spec.File), exitUsage)
	}
	tr := spec.Training.WithDefaults(spec.Slurm)
	if err := tr.Validate(); err != nil {
		return nil, tr, cli.Exit(fmt.Sprintf("%s: %v", spec.File, err), exitUsage)
	}
	return spec, tr, nil
}

func trainRunDir(spec *orchestrator.Spec) (id, dir string, err error) {
	home := spec.Output.Dir
	if home == "" {
		home = orchestrator.Home()
	}
	id = orchestrator.NewID(spec.Experiment.Name, time.Now())
	dir, err = filepath.Abs(filepath.Join(home, id))
	return id, dir, err
}

func trainRender(c *cli.Context) error {
	spec, tr, err := loadTraining(c)
	if err != nil {
		return err
	}
	dir := c.String("run-dir")
	if dir == "" {
		if _, dir, err = trainRunDir(spec); err != nil {
			return err
		}
	} else if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	job, err := tr.TrainingJob(orchestrator.TrainingJobOptions{Name: spec.Experiment.Name, RunDir: dir, Preflight: c.Bool("preflight")})
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	script, err := job.Render()
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	_, err = io.WriteString(c.App.Writer, script)
	return err
}

// checkTrainingImage validates the image for the job: whole, squashfs,
// the nodes' architecture, the expected version, and the script inside it.
func checkTrainingImage(c *cli.Context, tr orchestrator.TrainingSpec) error {
	if tr.Image == "" {
		return nil
	}
	req := append([]string(nil), tr.RequiredPaths...)
	if tr.Script != "" && tr.Runtime != orchestrator.RuntimeNone {
		req = append(req, tr.Script)
	}
	rep, err := sif.Validate(c.Context, tr.Image, sif.ValidateOptions{Arch: tr.Arch, Version: tr.ImageVersion, RequiredPaths: req})
	if err != nil {
		return cli.Exit(fmt.Sprintf("image check: %v (use --skip-image-check if the image is only on the nodes)", err), exitFailure)
	}
	if !rep.OK {
		var msgs []string
		for _, e := range rep.Failures() {
			msgs = append(msgs, "  "+e.Error())
		}
		return cli.Exit("image check failed, nothing submitted:\n"+strings.Join(msgs, "\n"), exitFailure)
	}
	return nil
}

type trainSubmission struct {
	ID      string            `json:"id"`
	Dir     string            `json:"dir"`
	JobID   string            `json:"job_id"`
	Summary *trainlog.Summary `json:"summary,omitempty"`
	State   string            `json:"state,omitempty"`
}

func trainSubmit(c *cli.Context) error {
	ctx := c.Context
	spec, tr, err := loadTraining(c)
	if err != nil {
		return err
	}
	if !c.Bool("skip-image-check") {
		if err := checkTrainingImage(c, tr); err != nil {
			return err
		}
	}
	id, dir, err := trainRunDir(spec)
	if err != nil {
		return err
	}
	job, err := tr.TrainingJob(orchestrator.TrainingJobOptions{Name: spec.Experiment.Name, RunDir: dir, Preflight: c.Bool("preflight")})
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	script, err := job.Render()
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "spec.toml"), spec.Source, 0o644); err != nil {
		return err
	}
	path := filepath.Join(dir, orchestrator.TrainingScriptName)
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		return err
	}
	client := &sbatch.Client{}
	jobID, err := client.SubmitFile(ctx, path)
	if err != nil {
		if errors.Is(err, sbatch.ErrUnavailable) {
			return cli.Exit(fmt.Sprintf("submit: %v (run directory %s kept; resubmit with: sbatch %s)", err, dir, path), exitUnavailable)
		}
		return cli.Exit(fmt.Sprintf("submit: %v", err), exitFailure)
	}
	sub := trainSubmission{ID: id, Dir: dir, JobID: jobID}
	if b, err := jsonBytes(sub); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "job.json"), b, 0o644)
	}
	if !c.Bool("json") {
		fmt.Fprintf(c.App.Writer, "submitted %s: job %s, run directory %s\n", id, jobID, dir)
	}
	if !c.Bool("follow") {
		if c.Bool("json") {
			return imgWriteJSON(c.App.Writer, sub)
		}
		return nil
	}
	res, state, ferr := followJob(ctx, c, client, jobID, filepath.Join(dir, orchestrator.TrainingLogName), dir,
		map[string]string{"experiment": id, "job": jobID, "task": "0"})
	sub.Summary, sub.State = &res.Summary, state
	if c.Bool("json") {
		imgWriteJSON(c.App.Writer, sub)
	} else {
		printTrainSummary(c.App.Writer, res.Summary)
		fmt.Fprintf(c.App.Writer, "job %s: %s\n", jobID, state)
	}
	if ferr != nil {
		if errors.Is(ferr, context.Canceled) {
			return cli.Exit(fmt.Sprintf("stopped following; job %s keeps running (gpuorch train follow --job %s %s)", jobID, jobID, filepath.Join(dir, orchestrator.TrainingLogName)), exitInterrupted)
		}
		return cli.Exit(ferr.Error(), exitFailure)
	}
	if state != string(sbatch.StateCompleted) {
		return cli.Exit(fmt.Sprintf("job %s ended %s (see %s)", jobID, state, dir), exitFailure)
	}
	return nil
}

func jsonBytes(v any) ([]byte, error) {
	var b strings.Builder
	if err := imgWriteJSON(&b, v); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// followJob follows a log into the task sink of dir until the Slurm job
// (if any) ends; it returns the job's final state ("" without a job).
func followJob(ctx context.Context, c *cli.Context, client *sbatch.Client, jobID, logPath, dir string, tags map[string]string) (trainlog.Result, string, error) {
	sink, err := taskrun.OpenSink(ctx, layout.Task(dir))
	if err != nil {
		return trainlog.Result{}, "", err
	}
	defer sink.Close()
	var mu sync.Mutex
	state := ""
	var lastPoll time.Time
	done := func() bool {
		if jobID == "" {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if time.Since(lastPoll) < 5*time.Second {
			return false
		}
		lastPoll = time.Now()
		tasks, err := client.Tasks(ctx, jobID)
		if err != nil || len(tasks) == 0 {
			return false
		}
		for _, t := range tasks {
			state = string(t.State)
			if !t.State.Terminal() {
				return false
			}
		}
		return true
	}
	res, err := trainlog.Follow(ctx, logPath, trainlog.FollowOptions{
		Sink: sink, Collector: &trainlog.Collector{Tags: tags}, Done: done,
		StopAtDone: jobID == "",
		OnError: func(e error) {
			fmt.Fprintf(c.App.ErrWriter, "gpuorch: %s: %v\n", logPath, e)
		},
	})
	if err == nil && jobID != "" && state == "" {
		done()
	}
	return res, state, err
}

func printTrainSummary(w io.Writer, s trainlog.Summary) {
	if s.Intervals == 0 {
		fmt.Fprintln(w, "no train_inner lines (is --log-format json set, and is this rank 0's log?)")
		return
	}
	fmt.Fprintf(w, "updates %d-%d in %d intervals (%s to %s)\n", s.FirstUpdate, s.LastUpdate, s.Intervals,
		s.Start.Format(time.DateTime), s.End.Format(time.DateTime))
	if s.HasSteadyState {
		fmt.Fprintf(w, "steady state (%d intervals, first excluded): %.4g words/s mean, %.4g last; %.3g updates/s; %.4g s/update\n",
			s.SteadyIntervals, s.MeanWPS, s.LastWPS, s.MeanUPS, s.SecondsPerUpdate)
	} else {
		fmt.Fprintln(w, "steady state: needs at least two intervals (the first one includes start-up)")
	}
	fmt.Fprintf(w, "final loss %.4g bits/token, ppl %.5g; %.4g tokens/update; peak %.3g GiB allocated\n",
		s.FinalLoss, s.FinalPPL, s.WPB, s.MaxCUDAGB)
}

func trainParse(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("train parse: want exactly one LOG argument (flags go before it)", exitUsage)
	}
	f, err := os.Open(c.Args().First())
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	defer f.Close()
	col := &trainlog.Collector{Tags: map[string]string{"experiment": c.String("experiment"), "job": c.String("job")}}
	errs, err := trainlog.Parse(f, col)
	if err != nil {
		return cli.Exit(fmt.Sprintf("read %s: %v", f.Name(), err), exitFailure)
	}
	for _, e := range errs {
		fmt.Fprintf(c.App.ErrWriter, "gpuorch: %s: %v\n", f.Name(), e)
	}
	w := c.App.Writer
	switch {
	case c.Bool("points"):
		var b []byte
		for _, r := range col.Records() {
			p := r.Point(col.Tags)
			var err error
			if b, err = results.AppendLine(b[:0], p); err != nil {
				return err
			}
			w.Write(b)
		}
		return nil
	case c.Bool("json"):
		return imgWriteJSON(w, col.Summary())
	}
	printTrainSummary(w, col.Summary())
	if col.Summary().Intervals == 0 {
		return cli.Exit("", exitFailure)
	}
	return nil
}

func trainFollow(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("train follow: want exactly one LOG argument (flags go before it)", exitUsage)
	}
	logPath := c.Args().First()
	out := c.String("out")
	if out == "" {
		out = filepath.Dir(logPath)
	}
	tags := map[string]string{"experiment": c.String("experiment"), "job": c.String("job")}
	res, state, err := followJob(c.Context, c, &sbatch.Client{}, c.String("job"), logPath, out, tags)
	if c.Bool("json") {
		imgWriteJSON(c.App.Writer, map[string]any{"summary": res.Summary, "points": res.Points, "finished": res.Finished, "state": state})
	} else {
		printTrainSummary(c.App.Writer, res.Summary)
		fmt.Fprintf(c.App.Writer, "%d points stored in %s\n", res.Points, filepath.Join(out, "metrics.lp"))
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return cli.Exit(err.Error(), exitFailure)
	}
	return nil
}
