package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/internal/cliargs"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/sbatch"
	"github.com/gpuorch/gpuorch/taskrun"
)

// kvList is a repeatable KEY=VALUE flag that, unlike cli.StringSliceFlag,
// never splits values on commas (TOML arrays contain them).
type kvList []string

func (l *kvList) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("want KEY=VALUE, got %s", clip.Quote(v))
	}
	*l = append(*l, v)
	return nil
}

func (l *kvList) String() string { return strings.Join(*l, " ") }

func init() {
	register(&cli.Command{
		Name:      "run",
		Usage:     "run a serving experiment: plan a spec's sweep into tasks and execute them",
		ArgsUsage: "SPEC.toml (or - for stdin)",
		Description: `Reads an experiment spec (see docs/spec.md), expands its [sweep] into
one task per workload and sweep point, creates the experiment directory
$GPUORCH_HOME/<id> (default ./gpuorch-runs/<id>) and runs the tasks with the
chosen executor. It prints the experiment id; on a terminal it also prints a
line as each task starts and ends, and a live status line (elapsed, rate, p99,
errors) while tasks run.

Examples:
  gpuorch run --dry-run examples/serving-quickstart.toml       # show the tasks, run nothing
  gpuorch run examples/serving-quickstart.toml
  gpuorch run --set target.url=http://127.0.0.1:9000 --parallel 2 spec.toml
  gpuorch run --set 'sweep.seed=[1, 2, 3]' spec.toml            # values are TOML: repeat with 3 seeds
  gpuorch run --resume serving-quickstart-20261122-070415-3fa9  # finish what did not complete
  gpuorch run --executor slurm --wait spec.toml                 # submit, then follow to the end

Ctrl-C interrupts the running tasks, which write what they measured so far;
tasks that had not started stay pending, and --resume runs them later.

--resume first brings the experiment up to date from its executor (squeue
and sacct for Slurm), then runs every task that did not complete except
those still queued or running.

The local executor returns when every task has ended. The Slurm executor
returns once the array job is submitted, unless --wait: then it follows the
job like 'gpuorch status --watch' (a progress bar on a terminal), prints the
per-task table and exits as below; Ctrl-C stops waiting, not the job.

Exit codes: 0 every task completed (or was submitted, for slurm without
--wait), 1 a task failed or was cancelled, 2 bad spec or arguments, 3 the
target or a service was unreachable, 130 interrupted.`,
		Flags: []cli.Flag{
			cliargs.Choice(&cli.StringFlag{Name: "executor", Usage: "where tasks run: local or slurm", DefaultText: "the spec's run.executor, else local"}, orchestrator.ExecutorNames()...),
			&cli.IntFlag{Name: "parallel", Usage: "local executor: tasks run at a time", DefaultText: "the spec's run.parallel, else 1"},
			&cli.GenericFlag{Name: "set", Value: &kvList{}, Usage: "override a spec key, e.g. --set target.url=http://127.0.0.1:9000 (repeatable; workload[1].rate=… for one workload)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan (tasks and their parameters) without running anything"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON: the plan with --dry-run, else {id, dir, state, tasks} when done"},
			&cli.StringFlag{Name: "resume", Usage: "resume experiment `EXP` (id, id prefix, name for its latest run, or directory): run its tasks that did not complete and are not still queued or running"},
			&cli.BoolFlag{Name: "wait", Usage: "slurm executor: after submitting, follow the job until every task has ended (exit code as for a local run)"},
			&cli.DurationFlag{Name: "interval", Value: 2 * time.Second, Usage: "polling interval with --wait"},
			&cli.StringFlag{Name: "binary", Usage: "gpuorch binary the tasks run (default: this one)", Hidden: true},
		},
		Action: runAction,
	})
}

func runAction(c *cli.Context) error {
	ctx := c.Context
	out := c.App.Writer
	jsonOut := c.Bool("json")
	if c.IsSet("parallel") && c.Int("parallel") < 1 {
		return errkind.Invalidf("run: --parallel must be at least 1")
	}
	var exp *orchestrator.Experiment
	if id := c.String("resume"); id != "" {
		if c.NArg() > 0 {
			return errkind.Invalidf("run: give either SPEC or --resume EXP, not both")
		}
		if len(*c.Generic("set").(*kvList)) > 0 {
			return errkind.Invalidf("run: --set changes a spec; a resumed experiment runs its saved plan (plan.json) unchanged")
		}
		var err error
		if exp, err = orchestrator.Open(orchestrator.Home(), id); err != nil {
			return errkind.Invalid(err)
		}
		if c.IsSet("parallel") {
			exp.Plan.Run.Parallel = c.Int("parallel")
		}
		if c.Bool("dry-run") {
			// What a resume would run: best effort to see what the
			// executor still has.
			ex, _ := newExecutor(c, executorName(c, exp), nil)
			p, err := orchestrator.ResumePlan(ctx, exp, ex)
			if err != nil {
				fmt.Fprintf(c.App.ErrWriter, "run: %v; going by the saved state\n", err)
			}
			return printPlan(out, p, jsonOut)
		}
	} else {
		spec, plan, err := loadPlan(c)
		if err != nil {
			return err
		}
		if c.Bool("dry-run") {
			return printPlan(out, plan, jsonOut)
		}
		// Build the executor before creating the directory, so a bad
		// --executor leaves nothing behind.
		if _, err := newExecutor(c, plan.Run.Executor, nil); err != nil {
			return err
		}
		// A wrong InfluxDB token or a missing database fails here, before
		// anything runs; an unreachable server only means points are spooled.
		if err := taskrun.CheckSinks(ctx, true); err != nil {
			return err
		}
		if exp, err = orchestrator.Create(plan.HomeDir(), spec, plan, plan.Run.Executor); err != nil {
			return err
		}
	}

	force := make(chan struct{})
	ex, err := newExecutor(c, executorName(c, exp), force)
	if err != nil {
		return err
	}
	finished := make(chan struct{})
	defer close(finished)
	go watchInterrupts(ctx, c.App.ErrWriter, force, finished, ex.Name() == "local")

	tty := !jsonOut && isTerminal(out)
	if !jsonOut {
		fmt.Fprintln(out, exp.ID())
	}
	var prog *orchestrator.Progress
	if tty {
		prog = orchestrator.StartProgress(out, exp)
	}
	var execErr error
	if c.String("resume") != "" {
		_, execErr = orchestrator.Resume(ctx, exp, ex)
	} else {
		execErr = orchestrator.Execute(ctx, exp, ex, nil)
	}
	if prog != nil {
		prog.Stop()
	}
	st := exp.Snapshot()
	if c.Bool("wait") && execErr == nil && ctx.Err() == nil && !orchestrator.AllEnded(st) {
		return waitRun(c, exp, ex, jsonOut)
	}
	if jsonOut {
		if err := printRunJSON(out, exp, st); err != nil {
			return err
		}
	} else {
		orchestrator.WriteOutcome(c.App.ErrWriter, tty, exp, st)
	}
	return orchestrator.Outcome(ctx, st, execErr)
}

// loadPlan reads the spec (a file, or - for stdin) with the --set overrides
// and plans it, with --executor and --parallel applied.
func loadPlan(c *cli.Context) (*orchestrator.Spec, *orchestrator.Plan, error) {
	if c.NArg() != 1 {
		return nil, nil, errkind.Invalidf("run: want one SPEC.toml argument (see gpuorch run --help)")
	}
	sets := *c.Generic("set").(*kvList)
	var spec *orchestrator.Spec
	var err error
	if path := c.Args().First(); path == "-" {
		src, rerr := limitio.ReadAll(c.Context, c.App.Reader, "<stdin>", limitio.Config.As("spec"))
		if rerr != nil {
			return nil, nil, errkind.Invalidf("run: read spec from stdin: %w", rerr)
		}
		spec, err = orchestrator.ParseSpec("<stdin>", src, sets)
	} else {
		spec, err = orchestrator.LoadSpec(path, sets)
	}
	if err != nil {
		return nil, nil, errkind.Invalid(err)
	}
	plan, err := spec.Plan()
	if err != nil {
		return nil, nil, errkind.Invalid(err)
	}
	if c.IsSet("executor") {
		plan.Run.Executor = c.String("executor")
	}
	if c.IsSet("parallel") {
		plan.Run.Parallel = c.Int("parallel")
	}
	return spec, plan, nil
}

// executorName is the executor for exp: --executor, else the one it runs
// with.
func executorName(c *cli.Context, exp *orchestrator.Experiment) string {
	if c.IsSet("executor") {
		return c.String("executor")
	}
	return exp.ExecutorName()
}

// waitRun follows a submitted (Slurm) experiment to its end, as
// `status --watch` does, then prints the per-task table (or the run JSON)
// and exits as a local run would.
func waitRun(c *cli.Context, exp *orchestrator.Experiment, ex orchestrator.Executor, jsonOut bool) error {
	ew := c.App.ErrWriter
	st := exp.Snapshot()
	if n := len(st.Submissions); n > 0 && st.Submissions[n-1].JobID != "" {
		fmt.Fprintf(ew, "submitted as %s job %s; waiting for its %d task(s) (Ctrl-C stops waiting, not the job)\n", ex.Name(), st.Submissions[n-1].JobID, len(st.Submissions[n-1].Indices))
	}
	unavailable, werr := watchExp(c, exp, ex, !jsonOut && isTerminal(ew), nil)
	st = exp.Snapshot()
	if werr != nil {
		if c.Context.Err() != nil {
			fmt.Fprintf(ew, "stopped waiting; experiment %s is %s. Follow it with: %s\n", st.ID, st.State, sbatch.CommandLine("gpuorch", "status", "--watch", st.ID))
		}
		return werr
	}
	if jsonOut {
		if err := printRunJSON(c.App.Writer, exp, st); err != nil {
			return err
		}
	} else {
		orchestrator.WriteStatus(c.App.Writer, exp, st)
	}
	if unavailable != nil {
		return errkind.Unavailablef("run: %w (the state shown may be stale)", unavailable)
	}
	return orchestrator.Outcome(c.Context, st, nil)
}

// watchInterrupts tells the user what the first Ctrl-C does and, for a
// local run, turns a second one into "kill the tasks now" (closing force).
func watchInterrupts(ctx context.Context, w io.Writer, force chan struct{}, finished <-chan struct{}, local bool) {
	select {
	case <-ctx.Done():
	case <-finished:
		return
	}
	if !local {
		return // Slurm: Ctrl-C stops submitting or waiting; the job is Slurm's
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	fmt.Fprintln(w, "\ninterrupting: running tasks are writing what they measured so far (Ctrl-C again to kill them)")
	select {
	case <-sig:
		fmt.Fprintln(w, "killing the running tasks")
		close(force)
	case <-finished:
	}
}

func newExecutor(c *cli.Context, name string, force <-chan struct{}) (orchestrator.Executor, error) {
	ex, err := orchestrator.NewExecutor(name, orchestrator.ExecutorOptions{
		Binary:   c.String("binary"),
		Parallel: c.Int("parallel"),
		Force:    force,
	})
	if err != nil {
		return nil, errkind.Invalidf("run: %w", err)
	}
	return ex, nil
}

// isTerminal reports whether w is a terminal (progress is drawn in place).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func printRunJSON(w io.Writer, exp *orchestrator.Experiment, st orchestrator.State) error {
	v := struct {
		ID    string                       `json:"id"`
		Dir   string                       `json:"dir"`
		State orchestrator.ExperimentState `json:"state"`
		Error string                       `json:"error,omitempty"`
		Tasks []orchestrator.TaskStatus    `json:"tasks"`
	}{st.ID, exp.Dir, st.State, st.Error, st.Tasks}
	return printJSON(w, v)
}

func printPlan(w io.Writer, p *orchestrator.Plan, jsonOut bool) error {
	if jsonOut {
		return printJSON(w, p)
	}
	return p.WriteText(w)
}
