package llmbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/sbatch"
	"github.com/gpuorch/gpuorch/taskrun"
)

// WriteLevels writes a benchmark's levels for people: one row per level
// with counts and rates, then each latency statistic beside its prediction
// and the error.
func WriteLevels(w io.Writer, expID string, levels []Level) error {
	fmt.Fprintf(w, "experiment %s\n", expID)
	rate := func(v *float64, format string) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf(format, *v)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONCURRENCY\tSTATE\tCOMPLETED\tFAILED\tREQ/S\tIN_TOK/S\tOUT_TOK/S\tGOODPUT/S")
	for _, l := range levels {
		if m := l.Metrics; m == nil {
			fmt.Fprintf(tw, "%d\t%s\t-\t-\t-\t-\t-\t-\n", l.Concurrency, l.State)
		} else {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", l.Concurrency, l.State, m.Completed, m.Failed,
				rate(m.RequestThroughput, "%.2f"), rate(m.InputThroughput, "%.1f"), rate(m.OutputThroughput, "%.1f"), rate(m.Goodput, "%.2f"))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONCURRENCY\tMETRIC_MS\tMEAN\tMEDIAN\tP25\tP75\tP95\tP99\tMIN\tMAX\tPREDICTED\tERROR")
	pct := func(l Level, k string) string {
		if e, ok := l.ErrorPct[k]; ok {
			return fmt.Sprintf("%+.1f%%", e)
		}
		return "-"
	}
	for _, l := range levels {
		if l.Metrics == nil {
			continue
		}
		for _, k := range []string{"ttft", "tpot", "itl", "e2el"} {
			q := l.Metrics.Stat(k)
			pred := "-"
			if pv, ok := l.PredictedMS(k); ok {
				pred = fmt.Sprintf("%.2f", pv)
			}
			fmt.Fprintf(tw, "%d\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\n", l.Concurrency, k, q.Mean, q.Median, q.P25, q.P75, q.P95, q.P99, q.Min, q.Max, pred, pct(l, k))
		}
		if l.Predicted != nil {
			fmt.Fprintf(tw, "%d\tout_tok/s\t%s\t\t\t\t\t\t\t\t%.1f\t%s\n", l.Concurrency, rate(l.Metrics.OutputThroughput, "%.1f"), l.Predicted.OutputTokensPerS, pct(l, "output_throughput"))
		}
	}
	return tw.Flush()
}

// WriteRequestRows writes each level's per-request rows (run with
// per_request), in send order.
func WriteRequestRows(ctx context.Context, w io.Writer, exp *orchestrator.Experiment, levels []Level) error {
	for i, l := range levels {
		rows, err := taskrun.ReadRequestRows(ctx, layout.Experiment(exp.Dir).Task(i).Requests())
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(w, "\n%s: no per-request rows (run with --per-request)\n", l.Task)
			continue
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\n%s\n", l.Task)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "#\tOUTCOME\tIN\tOUT\tTTFT_MS\tTPOT_MS\tE2EL_MS")
		for _, r := range rows {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%.2f\t%.2f\t%.2f\n", r.Index, r.Outcome, r.InputTokens, r.OutputTokens, r.TTFTMS, r.TPOTMS, r.E2ELMS)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// WriteText writes the workflow's state for people: status, experiment,
// what the steps say so far, and the steps not sent yet.
func (w *Workflow) WriteText(out io.Writer) error {
	fmt.Fprintf(out, "workflow %s: %s, step %d of %d\n", w.ID, w.Status, w.CurrentStep, w.TotalSteps)
	if w.Experiment != "" {
		fmt.Fprintf(out, "experiment %s (%s)\n", w.Experiment, sbatch.CommandLine("gpuorch", "bench", "show", w.Experiment))
	}
	if w.Reason != "" {
		fmt.Fprintf(out, "reason: %s\n", w.Reason)
	}
	if len(w.Aliases) > 0 {
		fmt.Fprintf(out, "also answers to workflow_id %s\n", strings.Join(w.Aliases, ", "))
	}
	data := w.Data()
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := data[k]
		if k == "nodes" {
			var hs []string
			for _, n := range v.([]any) {
				if m, ok := n.(map[string]any); ok {
					hs = append(hs, fmt.Sprint(m["hostname"]))
				} else {
					hs = append(hs, fmt.Sprint(n))
				}
			}
			v = strings.Join(hs, ", ")
		}
		b, _ := json.Marshal(v)
		fmt.Fprintf(out, "  %-22s %s\n", k, b)
	}
	if missing := w.Missing(); len(missing) > 0 && w.Status == "in_progress" {
		fmt.Fprintf(out, "steps not sent yet: %s (step 6 only for cloud models)\n", strings.Join(missing, ", "))
	}
	return nil
}

// WriteText writes a registry entry for people.
func (e *Entry) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "%s %s", e.Kind.singular(), e.ID)
	if e.Name != "" {
		fmt.Fprintf(w, " (%s)", e.Name)
	}
	fmt.Fprintln(w)
	switch {
	case e.Kind == Clusters:
		fmt.Fprintf(w, "  cluster: %s\n", e.Cluster)
		names := make([]string, 0, len(e.Nodes))
		for k := range e.Nodes {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(w, "  node %s = %s\n", k, e.Nodes[k])
		}
	case e.Kind == Models && e.Model != nil:
		b, _ := json.Marshal(e.Model)
		fmt.Fprintf(w, "  model: %s\n", b)
	case e.Kind == Datasets:
		fmt.Fprintf(w, "  path: %s (%d prompts)\n", e.Path, e.Prompts)
	}
	if !e.Added.IsZero() {
		fmt.Fprintf(w, "  added: %s\n", e.Added.Format("2006-01-02 15:04:05 UTC"))
	}
	return nil
}

// WriteEntries writes a registry's entries as a table.
func WriteEntries(w io.Writer, es []Entry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tWHAT")
	for _, e := range es {
		what := ""
		switch e.Kind {
		case Clusters:
			what = e.Cluster
			if len(e.Nodes) > 0 {
				what += fmt.Sprintf(" (%d node names mapped)", len(e.Nodes))
			}
		case Models:
			if e.Model != nil {
				what = strings.Join(append(append([]string{e.Model.URL}, e.Model.Command...), e.Model.Image), " ")
			}
		case Datasets:
			what = fmt.Sprintf("%s (%d prompts)", e.Path, e.Prompts)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.ID, e.Name, strings.TrimSpace(what))
	}
	return tw.Flush()
}
