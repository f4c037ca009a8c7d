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
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

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
		return cli.Exit("render: want one SPEC.toml argument (see gpuorch render --help)", exitUsage)
	}
	spec, err := orchestrator.LoadSpec(c.Args().First(), *c.Generic("set").(*kvList))
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	plan, err := spec.Plan()
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	plan.Run.Executor = "slurm"
	bin := c.String("binary")
	if bin == "" {
		bin = plan.Slurm.Binary
	}
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return cli.Exit("render: "+err.Error(), exitFailure)
		}
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return cli.Exit("render: "+err.Error(), exitFailure)
	}
	indices := make([]int, len(plan.Tasks))
	for i := range indices {
		indices[i] = i
	}
	// Validate before creating anything.
	if _, err := orchestrator.SlurmJob(plan, "check", plan.HomeDir(), bin, indices); err != nil {
		return cli.Exit("render: "+err.Error(), exitUsage)
	}
	exp, err := orchestrator.Create(plan.HomeDir(), spec, plan, "slurm")
	if err != nil {
		return cli.Exit("render: "+err.Error(), exitFailure)
	}
	job, err := orchestrator.SlurmJob(exp.Plan, exp.ID(), exp.Dir, bin, indices)
	if err != nil {
		return cli.Exit("render: "+err.Error(), exitUsage)
	}
	script, err := job.Render()
	if err != nil {
		return cli.Exit("render: "+err.Error(), exitUsage)
	}
	paths := []string{filepath.Join(exp.Dir, "slurm", "array.sbatch")}
	if d := c.String("output"); d != "" {
		paths = append(paths, filepath.Join(d, exp.ID()+".sbatch"))
	}
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return cli.Exit("render: "+err.Error(), exitFailure)
		}
		if err := os.WriteFile(p, []byte(script), 0o644); err != nil {
			return cli.Exit("render: "+err.Error(), exitFailure)
		}
	}
	out := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"id": exp.ID(), "dir": exp.Dir, "script": paths[len(paths)-1], "tasks": len(indices)})
	}
	if c.Bool("stdout") {
		fmt.Fprint(out, script)
	}
	script0 := paths[len(paths)-1]
	fmt.Fprintf(c.App.ErrWriter, "experiment %s: %d tasks as one array job; script %s\n", exp.ID(), len(indices), script0)
	fmt.Fprintf(c.App.ErrWriter, "submit by hand: sbatch %s\nor submit and track: gpuorch run --resume %s\n", script0, exp.ID())
	if !c.Bool("stdout") {
		fmt.Fprintln(out, script0)
	}
	return nil
}

// openExp opens EXP (the single argument) and builds its executor.
func openExp(c *cli.Context, verb string) (*orchestrator.Experiment, orchestrator.Executor, error) {
	if c.NArg() != 1 {
		return nil, nil, cli.Exit(fmt.Sprintf("%s: want one EXP argument (see gpuorch %s --help)", verb, verb), exitUsage)
	}
	exp, err := orchestrator.Open(orchestrator.Home(), c.Args().First())
	if err != nil {
		return nil, nil, cli.Exit(verb+": "+err.Error(), exitUsage)
	}
	name := exp.Snapshot().Executor
	if name == "" {
		name = exp.Plan.Run.Executor
	}
	if name == "" {
		name = "local"
	}
	ex, err := orchestrator.NewExecutor(name, orchestrator.ExecutorOptions{Binary: c.String("binary")})
	if err != nil {
		return nil, nil, cli.Exit(verb+": "+err.Error(), exitUsage)
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
	if err := refreshExp(ctx, exp, ex); err != nil {
		if !errors.Is(err, orchestrator.ErrUnavailable) {
			return cli.Exit("status: "+err.Error(), exitFailure)
		}
		unavailable = err
		fmt.Fprintf(c.App.ErrWriter, "status: %v\nstatus: showing the state saved at %s\n", err, exp.Snapshot().Updated.Local().Format("15:04:05"))
	}
	if c.Bool("watch") {
		tty := !c.Bool("json") && isTerminal(os.Stderr)
		var err error
		if unavailable, err = watchExp(ctx, c.App.ErrWriter, exp, ex, c.Duration("interval"), tty, unavailable); err != nil {
			return err
		}
	}
	st := exp.Snapshot()
	if c.Bool("json") {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Dir string `json:"dir"`
			orchestrator.State
			Counts map[orchestrator.TaskState]int `json:"counts"`
		}{exp.Dir, st, st.Counts()}); err != nil {
			return err
		}
	} else {
		printStatus(out, exp, st)
	}
	switch {
	case unavailable != nil:
		return cli.Exit("", exitUnavailable)
	case st.State == orchestrator.ExpFailed || st.State == orchestrator.ExpCancelled:
		return cli.Exit("", exitFailure)
	}
	return nil
}

// refreshExp re-reads state.json (another gpuorch process, a local run or a
// cancel, may have written it) and brings it up to date from the executor.
func refreshExp(ctx context.Context, exp *orchestrator.Experiment, ex orchestrator.Executor) error {
	if err := exp.Reload(); err != nil {
		return err
	}
	return ex.Refresh(ctx, exp)
}

// watchExp polls the executor every interval until every task has ended,
// drawing progressLine on w: a progress bar redrawn in place on a terminal,
// else a timestamped line per change. Unreachable Slurm does not stop it
// (slurmctld may come back): it returns the last refresh's ErrUnavailable
// error, nil if the last refresh worked (unavailable is the first one's).
// Ctrl-C returns an exit-130 error.
func watchExp(ctx context.Context, w io.Writer, exp *orchestrator.Experiment, ex orchestrator.Executor, interval time.Duration, tty bool, unavailable error) (lastUnavailable, err error) {
	last := ""
	for !allEnded(exp.Snapshot()) {
		line := progressLine(exp.Snapshot(), tty)
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
		} else if line != last {
			fmt.Fprintf(w, "%s  %s\n", time.Now().Format("15:04:05"), line)
		}
		last = line
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return unavailable, cli.Exit("", exitInterrupted)
		case <-time.After(interval):
		}
		if err := refreshExp(ctx, exp, ex); err != nil {
			if !errors.Is(err, orchestrator.ErrUnavailable) {
				return err, cli.Exit("status: "+err.Error(), exitFailure)
			}
			unavailable = err
			continue
		}
		unavailable = nil
	}
	if tty {
		fmt.Fprintf(w, "\r\033[K%s\n", progressLine(exp.Snapshot(), true))
	}
	return unavailable, nil
}

// printFailures prints one line per failed or timed-out task: its state,
// why, its exit code and the full path of its log.
func printFailures(w io.Writer, exp *orchestrator.Experiment, st orchestrator.State) {
	for _, t := range st.Tasks {
		if t.State != orchestrator.TaskFailed && t.State != orchestrator.TaskTimeout {
			continue
		}
		exit := "-"
		if t.ExitCode != nil {
			exit = strconv.Itoa(*t.ExitCode)
		}
		why := t.Error
		// The message names the log relative to the directory; the full
		// path follows.
		for _, sep := range []string{" (log: ", "; see "} {
			if k := strings.Index(why, sep); k >= 0 {
				why = why[:k]
			}
		}
		if why == "" {
			why = string(t.State)
		}
		fmt.Fprintf(w, "task %d (%s) %s: %s [exit code %s, log %s]\n", t.Index, t.Name, t.State, why, exit, filepath.Join(exp.Dir, t.Log))
	}
}

func allEnded(st orchestrator.State) bool {
	for _, t := range st.Tasks {
		if !t.State.Terminal() {
			return false
		}
	}
	return true
}

// progressLine is "[#######.......] 7/15 ended: 5 completed, 2 failed; 3 running, 5 pending".
func progressLine(st orchestrator.State, bar bool) string {
	n := len(st.Tasks)
	c := st.Counts()
	ended := 0
	for s, k := range c {
		if s.Terminal() {
			ended += k
		}
	}
	var parts []string
	for _, s := range []orchestrator.TaskState{orchestrator.TaskCompleted, orchestrator.TaskFailed, orchestrator.TaskTimeout,
		orchestrator.TaskCancelled, orchestrator.TaskInterrupted, orchestrator.TaskRunning, orchestrator.TaskPending} {
		if c[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c[s], s))
		}
	}
	line := fmt.Sprintf("%d/%d ended: %s", ended, n, strings.Join(parts, ", "))
	if !bar {
		return line
	}
	const width = 30
	fill := 0
	if n > 0 {
		fill = ended * width / n
	}
	return "[" + strings.Repeat("#", fill) + strings.Repeat(".", width-fill) + "] " + line
}

func printStatus(w io.Writer, exp *orchestrator.Experiment, st orchestrator.State) {
	var jobs []string
	for _, s := range st.Submissions {
		if s.JobID != "" {
			jobs = append(jobs, s.JobID)
		}
	}
	job := ""
	if len(jobs) > 0 {
		job = ", job " + strings.Join(jobs, ", ")
	}
	fmt.Fprintf(w, "experiment %s  %s  (executor %s%s)\n", st.ID, st.State, st.Executor, job)
	if st.Error != "" {
		fmt.Fprintf(w, "error: %s\n", st.Error)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tNAME\tSTATE\tEXIT\tJOB\tNODE\tELAPSED\tMESSAGE")
	for _, t := range st.Tasks {
		exit := "-"
		if t.ExitCode != nil {
			exit = strconv.Itoa(*t.ExitCode)
		}
		elapsed := "-"
		if t.Start != nil {
			end := time.Now()
			if t.End != nil {
				end = *t.End
			}
			elapsed = end.Sub(*t.Start).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Index, t.Name, t.State, exit, dash(t.JobID), dash(t.Node), elapsed, dash(t.Error))
	}
	tw.Flush()
	fmt.Fprintln(w, progressLine(st, false))
	printFailures(w, exp, st)
	switch {
	case st.State == orchestrator.ExpFailed && len(orchestrator.RetryIndices(&st)) > 0:
		fmt.Fprintf(w, "retry the failed tasks with: gpuorch retry %s\n", st.ID)
	case st.State == orchestrator.ExpNotSubmitted || st.State == orchestrator.ExpInterrupted || st.State == orchestrator.ExpCancelled:
		fmt.Fprintf(w, "resume with: gpuorch run --resume %s\n", st.ID)
	case st.State == orchestrator.ExpCompleted:
		fmt.Fprintf(w, "results: gpuorch results show %s\n", st.ID)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cancelAction(c *cli.Context) error {
	exp, ex, err := openExp(c, "cancel")
	if err != nil {
		return err
	}
	var idx []int
	if c.IsSet("task") {
		idx = c.IntSlice("task")
		sort.Ints(idx)
		for _, i := range idx {
			if i < 0 || i >= len(exp.Plan.Tasks) {
				return cli.Exit(fmt.Sprintf("cancel: experiment %s has no task %d (it has 0..%d)", exp.ID(), i, len(exp.Plan.Tasks)-1), exitUsage)
			}
		}
	}
	before := exp.Snapshot()
	if err := ex.Cancel(c.Context, exp, idx); err != nil {
		code := exitFailure
		if errors.Is(err, orchestrator.ErrUnavailable) || errors.Is(err, sbatch.ErrUnavailable) {
			code = exitUnavailable
		}
		return cli.Exit("cancel: "+err.Error(), code)
	}
	after := exp.Snapshot()
	n := 0
	for i := range after.Tasks {
		if after.Tasks[i].State == orchestrator.TaskCancelled && before.Tasks[i].State != orchestrator.TaskCancelled {
			n++
		}
	}
	fmt.Fprintf(c.App.ErrWriter, "experiment %s: %d task(s) cancelled; now %s\n", after.ID, n, after.State)
	return nil
}

func retryAction(c *cli.Context) error {
	exp, ex, err := openExp(c, "retry")
	if err != nil {
		return err
	}
	ctx := c.Context
	if err := ex.Refresh(ctx, exp); err != nil {
		code := exitFailure
		if errors.Is(err, orchestrator.ErrUnavailable) {
			code = exitUnavailable
		}
		return cli.Exit("retry: "+err.Error(), code)
	}
	st := exp.Snapshot()
	idx := orchestrator.RetryIndices(&st)
	if len(idx) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "experiment %s: no failed or timed-out tasks to retry (%s)\n", st.ID, progressLine(st, false))
		return nil
	}
	fmt.Fprintf(c.App.ErrWriter, "experiment %s: retrying %d task(s): %s\n", st.ID, len(idx), sbatch.ArraySpec(idx))
	jsonOut := c.Bool("json")
	tty := !jsonOut && isTerminal(os.Stdout)
	if tty {
		attachProgress(c.App.Writer, exp)
	}
	execErr := orchestrator.Execute(ctx, exp, ex, idx)
	st = exp.Snapshot()
	if jsonOut {
		if err := printRunJSON(c.App.Writer, exp, st); err != nil {
			return err
		}
	} else {
		if n := len(st.Submissions); n > 0 && st.Submissions[n-1].JobID != "" && ex.Name() == "slurm" {
			fmt.Fprintf(c.App.ErrWriter, "submitted as Slurm job %s; follow it with: gpuorch status --watch %s\n", st.Submissions[n-1].JobID, st.ID)
		}
		printOutcome(c.App.ErrWriter, tty, exp, st)
	}
	return runExit(ctx, st, execErr)
}
