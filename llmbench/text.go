package llmbench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/orchestrator"
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
func WriteRequestRows(w io.Writer, exp *orchestrator.Experiment, levels []Level) error {
	for i, l := range levels {
		rows, err := taskrun.ReadRequestRows(layout.Experiment(exp.Dir).Task(i).Requests())
		if err != nil {
			fmt.Fprintf(w, "\n%s: no per-request rows (run with --per-request)\n", l.Task)
			continue
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
		fmt.Fprintf(out, "experiment %s (gpuorch bench show %s)\n", w.Experiment, w.Experiment)
	}
	if w.Reason != "" {
		fmt.Fprintf(out, "reason: %s\n", w.Reason)
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
