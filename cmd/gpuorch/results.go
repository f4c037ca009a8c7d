package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
)

// resultsCmd is the `gpuorch results` group; files add their subcommands to
// it from their init functions (package-level vars are set before any init).
var resultsCmd = &cli.Command{
	Name:  "results",
	Usage: "review experiment results: tables, comparisons, exports, reports",
}

func init() {
	resultsCmd.Subcommands = append(resultsCmd.Subcommands, resultsShowCmd, resultsCompareCmd)
	register(resultsCmd)
}

// reviewExp is an experiment named on the command line, resolved.
type reviewExp struct {
	Label string                   // what tables call it: its id, or the directory name
	ID    string                   // experiment id ("" when only a directory is known)
	Dir   string                   // experiment directory (local store)
	Exp   *orchestrator.Experiment // nil for a bare directory of metrics files
}

// resolveExperiment finds EXP: an experiment id, unique id prefix or name
// under home (orchestrator.Open), an experiment directory, or any directory
// holding tasks/<i>/metrics.lp files (e.g. copied from a cluster).
func resolveExperiment(home, arg string) (reviewExp, error) {
	e, err := orchestrator.Open(home, arg)
	if err == nil {
		return reviewExp{Label: e.ID(), ID: e.ID(), Dir: e.Dir, Exp: e}, nil
	}
	if st, serr := os.Stat(arg); serr == nil && st.IsDir() {
		abs, _ := filepath.Abs(arg)
		return reviewExp{Label: filepath.Base(abs), Dir: arg}, nil
	}
	if errors.Is(err, orchestrator.ErrNotFound) {
		return reviewExp{}, cli.Exit(fmt.Sprintf("%v\n(list experiments with `gpuorch experiments list`, or pass an experiment directory)", err), exitUsage)
	}
	return reviewExp{}, cli.Exit(err.Error(), exitFailure)
}

// reviewSource picks where `results show` and `compare` read an experiment's
// points from, and the experiment id to filter on ("" = everything in the
// source). It is a variable so the InfluxDB wiring can read from InfluxDB
// when configured; by default it is the experiment's local store.
var reviewSource = func(_ context.Context, e reviewExp, warn io.Writer) (results.Source, string, error) {
	st := results.NewLocalStore(e.Dir)
	st.OnMalformed = func(le *results.LineError) {
		fmt.Fprintf(warn, "warning: skipping malformed line %v\n", le)
	}
	return st, "", nil
}

// loadReview reads one experiment's review model, completed with the
// executor's task states when the experiment directory has them.
func loadReview(c *cli.Context, e reviewExp) (*results.Results, error) {
	src, id, err := reviewSource(c.Context, e, c.App.ErrWriter)
	if err != nil {
		return nil, cli.Exit(fmt.Sprintf("results of %s: %v", e.Label, err), exitUnavailable)
	}
	res, err := results.Load(c.Context, src, id)
	if err != nil {
		return nil, cli.Exit(fmt.Sprintf("results of %s: %v", e.Label, err), exitFailure)
	}
	if e.Exp != nil {
		st := e.Exp.Snapshot()
		infos := make([]results.TaskInfo, 0, len(st.Tasks))
		for _, ts := range st.Tasks {
			ti := results.TaskInfo{Experiment: e.ID, Task: ts.Name, State: string(ts.State), Error: ts.Error}
			if ts.Index >= 0 && ts.Index < len(e.Exp.Plan.Tasks) {
				pt := e.Exp.Plan.Tasks[ts.Index]
				ti.Workload, ti.Params = pt.Workload, pt.Config.Tags
			}
			infos = append(infos, ti)
		}
		res.AddTaskStates(infos)
	}
	return res, nil
}

var reviewFlags = []cli.Flag{
	&cli.BoolFlag{Name: "json", Usage: "print a JSON array of row objects"},
	&cli.BoolFlag{Name: "csv", Usage: "print CSV with a header line (every column, fixed order)"},
	&cli.BoolFlag{Name: "per-step", Usage: "add one row per task and SLO-factor step (SLO sweeps such as slo-exp-1)"},
	&cli.BoolFlag{Name: "per-class", Usage: "add one row per task and request class (e.g. slo-exp-2's fg/bg)"},
	&cli.StringFlag{Name: "home", Usage: "directory holding experiment directories", EnvVars: []string{"GPUORCH_HOME"}, Value: "gpuorch-runs"},
}

func outputMode(c *cli.Context) (jsonOut, csvOut bool, err error) {
	jsonOut, csvOut = c.Bool("json"), c.Bool("csv")
	if jsonOut && csvOut {
		return false, false, cli.Exit("--json and --csv are exclusive", exitUsage)
	}
	return jsonOut, csvOut, nil
}

var resultsShowCmd = &cli.Command{
	Name:      "show",
	Usage:     "print an experiment's results: one row per task",
	ArgsUsage: "EXP",
	Description: `Prints one row per task of experiment EXP: its sweep point, status, offered
and achieved request rate, corrected latency percentiles (p50, p90, p99,
p99.9 in ms, measured from each request's intended send time, so a server
that falls behind cannot hide its queueing), errors, timeouts, drops, SLO
attainment (requests that met their deadline / requests offered) and goodput
(requests/s that met their deadline). LLM experiments add TTFT, TPOT, ITL and
E2EL percentiles and output tokens/s. A benchmark (gpuorch bench) that has a
roofline prediction adds a table of the measured TTFT, TPOT and E2EL means
and output tokens/s beside the predicted values and the error, (predicted -
measured) / measured in percent; --json adds "predicted" to each row and
--csv adds *_pred and *_err_pct columns at the end.

EXP is an experiment id, a unique id prefix, an experiment name (its latest
run), or a directory holding tasks/<i>/metrics.lp files. Ids are looked up
in --home ($GPUORCH_HOME, default ./gpuorch-runs).

A task that is still running, or was killed, has no summary yet: its row is
summed from its per-second points and has no percentiles. A task that never
measured anything shows its executor state (pending, failed, ...).

Examples:
   gpuorch results show quickstart
   gpuorch results show --per-step slo-sweep-20261122-070415-3fa9
   gpuorch results show --csv --per-class ./gpuorch-runs/slo2 > slo2.csv
   gpuorch results show --json quickstart | jq '.[] | {task, p99: .latency.p99_ms}'

The metrics schema is described in docs/metrics.md.`,
	Flags: reviewFlags,
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return cli.Exit("usage: gpuorch results show [--json|--csv] [--per-step] [--per-class] EXP", exitUsage)
		}
		jsonOut, csvOut, err := outputMode(c)
		if err != nil {
			return err
		}
		e, err := resolveExperiment(c.String("home"), c.Args().First())
		if err != nil {
			return err
		}
		res, err := loadReview(c, e)
		if err != nil {
			return err
		}
		w := c.App.Writer
		if jsonOut || csvOut {
			rows := append([]results.Row{}, res.Tasks...)
			if c.Bool("per-class") {
				rows = append(rows, res.Classes...)
			}
			if c.Bool("per-step") {
				rows = append(rows, res.Steps...)
			}
			if jsonOut {
				if rows == nil {
					rows = []results.Row{}
				}
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			t := results.FlatTable(rows, res.ParamKeys, results.Machine)
			return t.WriteCSV(w)
		}
		if len(res.Tasks) == 0 {
			fmt.Fprintf(c.App.ErrWriter, "no results in %s yet (each task writes tasks/<i>/metrics.lp while it runs)\n", e.Dir)
			return nil
		}
		fmt.Fprintf(w, "experiment %s (%s)\n\n", e.Label, e.Dir)
		t := res.TaskTable(results.Human)
		if err := t.WriteText(w); err != nil {
			return err
		}
		if res.HasPredictions() {
			fmt.Fprintln(w)
			pt := res.PredictionTable(results.Human)
			if err := pt.WriteText(w); err != nil {
				return err
			}
		}
		var hints []string
		if c.Bool("per-class") && len(res.Classes) > 0 {
			fmt.Fprintln(w)
			ct := res.ClassTable(results.Human)
			ct.WriteText(w)
		} else if len(res.Classes) > 0 {
			hints = append(hints, "--per-class")
		}
		if c.Bool("per-step") && len(res.Steps) > 0 {
			fmt.Fprintln(w)
			st := res.StepTable(results.Human)
			st.WriteText(w)
		} else if len(res.Steps) > 0 {
			hints = append(hints, "--per-step")
		}
		for _, h := range hints {
			fmt.Fprintf(c.App.ErrWriter, "(more rows with %s)\n", h)
		}
		return nil
	},
}

var resultsCompareCmd = &cli.Command{
	Name:      "compare",
	Usage:     "put experiments side by side, with deltas against the first",
	ArgsUsage: "EXP1 EXP2 [EXP...]",
	Description: `Matches the tasks of several experiments — by workload and sweep point when
the tasks have one (so a reordered sweep still lines up), otherwise by task
name — and prints, per task and metric, each experiment's value and its
difference from the first experiment (absolute and percent; SLO attainment
in percentage points). Compared: offered and achieved rate, p50/p99/p99.9
corrected latency, errors, timeouts, drops, SLO attainment, goodput, and the
p99 of TTFT/TPOT/ITL/E2EL for LLM experiments. --per-step and --per-class
compare SLO steps and classes too.

EXP is an experiment id, prefix, name or directory, as for 'results show'.

Examples:
   gpuorch results compare baseline-20261121-0900-aa01 tuned-20261122-0700-bb02
   gpuorch results compare --csv baseline tuned > delta.csv`,
	Flags: reviewFlags,
	Action: func(c *cli.Context) error {
		if c.NArg() < 2 {
			return cli.Exit("usage: gpuorch results compare [--json|--csv] [--per-step] [--per-class] EXP1 EXP2 [EXP...]", exitUsage)
		}
		jsonOut, csvOut, err := outputMode(c)
		if err != nil {
			return err
		}
		var names []string
		var all []*results.Results
		seen := map[string]int{}
		for _, arg := range c.Args().Slice() {
			e, err := resolveExperiment(c.String("home"), arg)
			if err != nil {
				return err
			}
			res, err := loadReview(c, e)
			if err != nil {
				return err
			}
			label := e.Label
			if seen[label]++; seen[label] > 1 {
				label = fmt.Sprintf("%s#%d", label, seen[label])
			}
			names = append(names, label)
			all = append(all, res)
		}
		cmp := results.Compare(names, all, c.Bool("per-step"), c.Bool("per-class"))
		w := c.App.Writer
		switch {
		case jsonOut:
			rows := cmp.Rows
			if rows == nil {
				rows = []results.CompareRow{}
			}
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(rows)
		case csvOut:
			t := cmp.Table(results.Machine)
			return t.WriteCSV(w)
		}
		if len(cmp.Rows) == 0 {
			fmt.Fprintln(c.App.ErrWriter, "no results to compare")
			return nil
		}
		t := cmp.Table(results.Human)
		return t.WriteText(w)
	},
}
