package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/results/trainlog"
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

// review opens EXP for review and loads its results from the source the
// environment selects (results.SelectSource).
func review(c *cli.Context, arg string) (*orchestrator.Reviewed, *results.Results, error) {
	r, sel, bad, err := reviewSource(c, arg)
	if err != nil {
		return nil, nil, err
	}
	res, err := r.Load(c.Context, sel)
	bad.WriteText(c.App.ErrWriter)
	return r, res, err
}

// reviewSource opens EXP and selects where its points are read from; the
// malformed lines the local store skips are collected in bad, for one
// warning per file once the points are read.
func reviewSource(c *cli.Context, arg string) (*orchestrator.Reviewed, *results.Selected, *results.MalformedLines, error) {
	r, err := orchestrator.OpenReview(c.String("home"), arg)
	if err != nil {
		return nil, nil, nil, err
	}
	bad := &results.MalformedLines{}
	sel, err := results.SelectSource(c.Context, os.Getenv, r.Dir, r.ID, bad.Add)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("results of %s: %w", r.Label, err)
	}
	return r, sel, bad, nil
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
		return false, false, errkind.Invalidf("--json and --csv are exclusive")
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

A training run (gpuorch train submit; EXP is its id or run directory) shows
one row per run from its training points: steady-state words/s, seconds per
update, the final training loss, each validation subset's last and best loss,
and the update at which the run diverged (loss inf or NaN), then each run's
summary; --json prints the runs with their summaries, --csv the table.

Examples:
   gpuorch results show quickstart
   gpuorch results show --per-step slo-sweep-20261122-070415-3fa9
   gpuorch results show --csv --per-class ./gpuorch-runs/slo2 > slo2.csv
   gpuorch results show --json quickstart | jq '.[] | {task, p99: .latency.p99_ms}'

The metrics schema is described in docs/metrics.md.`,
	Flags: reviewFlags,
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return errkind.Invalidf("usage: gpuorch results show [--json|--csv] [--per-step] [--per-class] EXP")
		}
		jsonOut, csvOut, err := outputMode(c)
		if err != nil {
			return err
		}
		e, res, err := review(c, c.Args().First())
		if err != nil {
			return err
		}
		w := c.App.Writer
		if len(e.Runs) > 0 && len(res.Tasks) == 0 {
			return showTraining(c, e, jsonOut, csvOut)
		}
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
				return printJSON(w, rows)
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
		if err := results.WriteDeployments(w, e.Deployments); err != nil {
			return err
		}
		if len(e.Runs) > 0 {
			return trainlog.WriteRuns(w, "", e.Runs)
		}
		return nil
	},
}

// showTraining prints an experiment's training runs: the table and each
// run's summary, CSV, or the runs as JSON.
func showTraining(c *cli.Context, e *orchestrator.Reviewed, jsonOut, csvOut bool) error {
	switch {
	case jsonOut:
		return printJSON(c.App.Writer, e.Runs)
	case csvOut:
		return trainlog.RunsTable(e.Runs, results.Machine).WriteCSV(c.App.Writer)
	}
	return trainlog.WriteRuns(c.App.Writer, fmt.Sprintf("training %s (%s)", e.Label, e.Dir), e.Runs)
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
			return errkind.Invalidf("usage: gpuorch results compare [--json|--csv] [--per-step] [--per-class] EXP1 EXP2 [EXP...]")
		}
		jsonOut, csvOut, err := outputMode(c)
		if err != nil {
			return err
		}
		var names []string
		var all []*results.Results
		seen := map[string]int{}
		for _, arg := range c.Args().Slice() {
			e, res, err := review(c, arg)
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
			return printJSON(w, rows)
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
