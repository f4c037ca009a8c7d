package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/sbatch"
	"github.com/gpuorch/gpuorch/taskrun"
)

// Planned reports whether the task directory's experiment has a
// deployment, so that its task runs through RunTask.
func Planned(taskDir string) bool {
	_, err := os.Stat(layout.Experiment(filepath.Dir(filepath.Dir(taskDir))).Deployment())
	return err == nil
}

// RunTask runs one task of an experiment with a deployment, as taskrun.Run
// runs any other (same arguments, same outputs): it starts the deployment's
// replicas, waits until they answer, runs the load through a balancer over
// them while the controller scales them, and stops them all at the end —
// also when ctx ends (Ctrl-C, scancel's SIGTERM) or the run fails. opts.Dir
// is the task directory (tasks/<i> of the experiment).
func RunTask(ctx context.Context, cfg *loadgen.Config, w *loadgen.Workload, opts taskrun.Options) (*loadgen.Summary, error) {
	taskDir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	expDir := filepath.Dir(filepath.Dir(taskDir))
	idx, err := strconv.Atoi(filepath.Base(taskDir))
	if err != nil {
		return nil, errkind.Invalidf("deployment: %s is not a task directory (tasks/<i>)", taskDir)
	}
	plan, ok, err := ReadPlan(expDir)
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	if !ok {
		return nil, errkind.Invalidf("deployment: experiment %s has no %s", expDir, layout.DeploymentFile)
	}
	target, err := loadgen.NewReplicas(cfg.Target, plan.Balance)
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	sink, err := taskrun.OpenSink(ctx, layout.Task(taskDir))
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	reqTimeout := cfg.Target.Timeout.D()
	if reqTimeout <= 0 {
		reqTimeout = loadgen.DefaultTimeout
	}
	d := &Deployment{
		plan: plan, expDir: expDir, task: layout.Task(taskDir), taskIdx: idx, target: target,
		ctrl: NewController(plan.Scale.Policy(), plan.Replicas), sink: sink,
		meta: loadgen.Summary{Experiment: cfg.Experiment, Task: cfg.Task, Workload: w.Name, Target: cfg.Target.URL, Protocol: cfg.Target.Protocol, Tags: cfg.Tags},
		llm:  loadgen.LLMSLO{TTFT: cfg.SLO.TTFT.D(), TPOT: cfg.SLO.TPOT.D(), E2EL: cfg.SLO.E2EL.D()},
		log:  slog.Default().With("task", cfg.Task), per: map[string]*repStats{},
		probe: &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
		drain: reqTimeout + 5*time.Second,
	}
	if d.meta.Protocol == "" {
		d.meta.Protocol = "http"
	}
	target.OnDone = d.observe
	switch plan.Executor {
	case "slurm":
		d.launcher = &slurmLauncher{plan: plan, client: &sbatch.Client{Log: d.log}, expDir: expDir, expID: cfg.Experiment, task: idx, node: os.Getenv("SLURMD_NODENAME")}
	default:
		self := plan.Binary
		if self == "" {
			if self, err = os.Executable(); err != nil {
				return nil, err
			}
		}
		if plan.Slice != nil {
			d.log.Warn("[slice] applies to replicas on Slurm only; the local replicas run without it", "gres", plan.Slice.Gres)
		}
		d.launcher = &localLauncher{self: self, expDir: expDir, task: idx}
	}
	if err := d.start(ctx, os.Stderr); err != nil {
		d.stop("the deployment did not start")
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errkind.Unavailablef("deployment: %w", err)
	}
	fmt.Fprintf(os.Stderr, "deployment: %d replica(s) ready; load starts\n", plan.Replicas)
	lctx, stopLoop := context.WithCancel(ctx)
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); d.run(lctx) }()
	opts.Target, opts.Sink = target, sink
	sum, runErr := taskrun.Run(ctx, cfg, w, opts)
	stopLoop()
	<-loopDone
	reason := "the run ended"
	if errors.Is(runErr, context.Canceled) || ctx.Err() != nil {
		reason = "the run was interrupted"
	}
	d.stop(reason)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := sink.Flush(fctx); err != nil {
		d.log.Warn("flush deployment points", "err", err)
	}
	return sum, runErr
}
