package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/sbatch"
)

// Commands that follow an experiment after `gpuorch run`: render (Slurm
// scripts without submitting), status, cancel and retry. status, cancel and
// retry work for every executor through orchestrator.Executor.

func init() {
	register(&cli.Command{
		Name:      "render",
		Usage:     "write the sbatch array script for a spec without submitting it",
		ArgsUsage: "SPEC.toml",
		Description: `Plans the spec like 'gpuorch run', creates the experiment directory (with
the task manifests the script reads) and writes the Slurm array script, one
array task per sweep point, without submitting anything. Every value from the
spec is quoted in the script. Submit it yourself with sbatch, or let gpuorch
submit and track it with 'gpuorch run --resume EXP'.

Examples:
  gpuorch render examples/serving-quickstart.toml
  gpuorch render -o scripts/ --set slurm.partition=gpu --set slurm.throttle=8 spec.toml
  sbatch scripts/serving-quickstart-20261122-070415-3fa9.sbatch`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "also write the script to `DIR`/<experiment id>.sbatch"},
			&cli.GenericFlag{Name: "set", Value: &kvList{}, Usage: "override a spec key (repeatable), e.g. --set slurm.partition=gpu"},
			&cli.StringFlag{Name: "binary", Usage: "gpuorch binary path on the compute nodes (default: the spec's slurm.binary, else this binary)"},
			&cli.BoolFlag{Name: "stdout", Usage: "print the script to stdout as well"},
			&cli.BoolFlag{Name: "json", Usage: "print {id, dir, script} as JSON"},
		},
		Action: renderAction,
	})
	register(&cli.Command{
		Name:      "status",
		Usage:     "show an experiment's per-task state (queries Slurm for Slurm experiments)",
		ArgsUsage: "EXP",
		Description: `Shows each task's state, exit code, job id, node and message. For an
experiment run through Slurm the state comes from squeue and sacct (and is
saved in state.json); for the local executor from state.json and the task
processes. EXP is an id, a unique id prefix, a name (its latest run) or a
directory.

With --watch it polls until every task has ended, drawing a progress bar on
a terminal (one line per change otherwise), then prints the table.

Failed and timed-out tasks are listed below the table with their exit code
and the full path of their log.

Exit codes: 0 all tasks completed (or still going, without --watch),
1 some task failed, timed out or was cancelled, 2 no such experiment,
3 Slurm unreachable.

Examples:
  gpuorch status serving-quickstart
  gpuorch status --watch --interval 5s serving-quickstart-20261122-070415-3fa9
  gpuorch status --json serving-quickstart | jq '.tasks[] | select(.state=="failed")'`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "poll until every task has ended"},
			&cli.DurationFlag{Name: "interval", Value: 2 * time.Second, Usage: "polling interval with --watch"},
			&cli.BoolFlag{Name: "json", Usage: "print the experiment state as JSON"},
		},
		Action: statusAction,
	})
	register(&cli.Command{
		Name:      "cancel",
		Usage:     "cancel an experiment's unfinished tasks (scancel for Slurm)",
		ArgsUsage: "EXP",
		Description: `Cancels every task that has not ended (or only those given with --task):
scancel on the experiment's array job(s) for Slurm; for the local executor,
pending tasks are marked cancelled in state.json (the 'gpuorch run' running
them, in this or another terminal, starts none of them) and running ones are
interrupted (by that run, which sees the cancellation within a fraction of a
second, or by a SIGINT from here if that run is gone). Cancelled tasks keep
what they measured; the experiment ends 'cancelled' and
'gpuorch run --resume EXP' runs them again later.

Examples:
  gpuorch cancel serving-quickstart
  gpuorch cancel --task 3 --task 5 serving-quickstart`,
		Flags: []cli.Flag{
			&cli.IntSliceFlag{Name: "task", Usage: "cancel only task `INDEX` (repeatable)"},
		},
		Action: cancelAction,
	})
	register(&cli.Command{
		Name:      "retry",
		Usage:     "resubmit only the failed and timed-out tasks of an experiment",
		ArgsUsage: "EXP",
		Description: `Brings the experiment's state up to date, then resubmits exactly the tasks
that failed (including Slurm's NODE_FAIL, PREEMPTED and OUT_OF_MEMORY) or
timed out: for Slurm as a new array job over exactly those indices, for the
local executor by running them again. Completed, cancelled and interrupted
tasks are left alone (resume those with 'gpuorch run --resume').

Exit codes as for 'gpuorch run'.

Examples:
  gpuorch retry serving-quickstart
  gpuorch status --watch serving-quickstart`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON {id, dir, state, tasks} when done"},
			&cli.StringFlag{Name: "binary", Usage: "gpuorch binary the tasks run (default: this one)", Hidden: true},
		},
		Action: retryAction,
	})
}

func renderAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return errkind.Invalidf("render: want one SPEC.toml argument (see gpuorch render --help)")
	}
	spec, err := orchestrator.LoadSpec(c.Args().First(), *c.Generic("set").(*kvList))
	if err != nil {
		return errkind.Invalid(err)
	}
	r, err := orchestrator.RenderSlurm(spec, c.String("binary"), c.String("output"))
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	exp, script := r.Experiment, r.Paths[len(r.Paths)-1]
	out := c.App.Writer
	if c.Bool("json") {
		return printJSON(out, map[string]any{"id": exp.ID(), "dir": exp.Dir, "script": script, "tasks": r.Tasks})
	}
	if c.Bool("stdout") {
		fmt.Fprint(out, r.Script)
	}
	fmt.Fprintf(c.App.ErrWriter, "experiment %s: %d tasks as one array job; script %s\n", exp.ID(), r.Tasks, script)
	fmt.Fprintf(c.App.ErrWriter, "submit by hand: %s\nor submit and track: %s\n", sbatch.CommandLine("sbatch", script), sbatch.CommandLine("gpuorch", "run", "--resume", exp.ID()))
	if !c.Bool("stdout") {
		fmt.Fprintln(out, script)
	}
	return nil
}

// openExp opens EXP (the single argument) and builds its executor.
func openExp(c *cli.Context, verb string) (*orchestrator.Experiment, orchestrator.Executor, error) {
	if c.NArg() != 1 {
		return nil, nil, errkind.Invalidf("%s: want one EXP argument (see gpuorch %s --help)", verb, verb)
	}
	exp, ex, err := orchestrator.OpenWith(orchestrator.Home(), c.Args().First(), orchestrator.ExecutorOptions{Binary: c.String("binary")})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", verb, err)
	}
	return exp, ex, nil
}

func statusAction(c *cli.Context) error {
	exp, ex, err := openExp(c, "status")
	if err != nil {
		return err
	}
	ctx := c.Context
	out := c.App.Writer
	var unavailable error
	if err := orchestrator.Refresh(ctx, exp, ex); err != nil {
		if !errors.Is(err, errkind.ErrUnavailable) {
			return fmt.Errorf("status: %w", err)
		}
		unavailable = err
		fmt.Fprintf(c.App.ErrWriter, "status: %v\nstatus: showing the state saved at %s\n", err, exp.Snapshot().Updated.Local().Format("15:04:05"))
	}
	if c.Bool("watch") {
		tty := !c.Bool("json") && isTerminal(c.App.ErrWriter)
		var err error
		if unavailable, err = watchExp(c, exp, ex, tty, unavailable); err != nil {
			return err
		}
	}
	st := exp.Snapshot()
	if c.Bool("json") {
		if err := printJSON(out, struct {
			Dir string `json:"dir"`
			orchestrator.State
			Counts map[orchestrator.TaskState]int `json:"counts"`
		}{exp.Dir, st, st.Counts()}); err != nil {
			return err
		}
	} else {
		orchestrator.WriteStatus(out, exp, st)
	}
	switch {
	case unavailable != nil:
		return errkind.Reported(errkind.Unavailable(unavailable))
	case st.State == orchestrator.ExpFailed || st.State == orchestrator.ExpCancelled:
		return errkind.Reported(fmt.Errorf("experiment %s is %s", st.ID, st.State))
	}
	return nil
}

// watchExp follows exp until every task has ended (orchestrator.Watch),
// drawing its progress on stderr: a bar redrawn in place on a terminal,
// else a timestamped line per change.
func watchExp(c *cli.Context, exp *orchestrator.Experiment, ex orchestrator.Executor, tty bool, unavailable error) (error, error) {
	w, last := c.App.ErrWriter, ""
	lastUnavailable, err := orchestrator.Watch(c.Context, exp, ex, c.Duration("interval"), unavailable, func(st orchestrator.State) {
		line := orchestrator.ProgressLine(st, tty)
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
		} else if line != last {
			fmt.Fprintf(w, "%s  %s\n", time.Now().Format("15:04:05"), line)
		}
		last = line
	})
	if tty {
		if err != nil {
			fmt.Fprintln(w)
		} else {
			fmt.Fprintf(w, "\r\033[K%s\n", orchestrator.ProgressLine(exp.Snapshot(), true))
		}
	}
	return lastUnavailable, err
}

func cancelAction(c *cli.Context) error {
	exp, ex, err := openExp(c, "cancel")
	if err != nil {
		return err
	}
	n, err := orchestrator.Cancel(c.Context, exp, ex, c.IntSlice("task"))
	if err != nil {
		return fmt.Errorf("cancel: %w", err) // an unreachable Slurm is errkind.ErrUnavailable
	}
	fmt.Fprintf(c.App.ErrWriter, "experiment %s: %d task(s) cancelled; now %s\n", exp.ID(), n, exp.Snapshot().State)
	return nil
}

func retryAction(c *cli.Context) error {
	exp, ex, err := openExp(c, "retry")
	if err != nil {
		return err
	}
	ctx := c.Context
	if err := ex.Refresh(ctx, exp); err != nil {
		return fmt.Errorf("retry: %w", err)
	}
	st := exp.Snapshot()
	idx := orchestrator.RetryIndices(&st)
	if len(idx) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "experiment %s: no failed or timed-out tasks to retry (%s)\n", st.ID, orchestrator.ProgressLine(st, false))
		return nil
	}
	fmt.Fprintf(c.App.ErrWriter, "experiment %s: retrying %d task(s): %s\n", st.ID, len(idx), sbatch.ArraySpec(idx))
	jsonOut := c.Bool("json")
	tty := !jsonOut && isTerminal(c.App.Writer)
	if tty {
		orchestrator.AttachProgress(c.App.Writer, exp)
	}
	execErr := orchestrator.Execute(ctx, exp, ex, idx)
	st = exp.Snapshot()
	if jsonOut {
		if err := printRunJSON(c.App.Writer, exp, st); err != nil {
			return err
		}
	} else {
		if n := len(st.Submissions); n > 0 && st.Submissions[n-1].JobID != "" && ex.Name() == "slurm" {
			fmt.Fprintf(c.App.ErrWriter, "submitted as Slurm job %s; follow it with: %s\n", st.Submissions[n-1].JobID, sbatch.CommandLine("gpuorch", "status", "--watch", st.ID))
		}
		orchestrator.WriteOutcome(c.App.ErrWriter, tty, exp, st)
	}
	return orchestrator.Outcome(ctx, st, execErr)
}
