package trainlog

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/gpuorch/gpuorch/results"
)

// WriteText writes the summary for people: the updates seen, steady-state
// throughput (first interval excluded), the final training loss, each
// validation subset's last and best loss, and the divergence when there was
// one.
func (s Summary) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	w = bw
	if s.Intervals == 0 {
		fmt.Fprintln(w, "no train_inner lines (is --log-format json set, and is this rank 0's log?)")
	} else {
		fmt.Fprintf(w, "updates %d-%d in %d intervals (%s to %s)\n", s.FirstUpdate, s.LastUpdate, s.Intervals,
			s.Start.Format(time.DateTime), s.End.Format(time.DateTime))
		if s.HasSteadyState {
			fmt.Fprintf(w, "steady state (%d intervals, first excluded): %.4g words/s mean, %.4g last; %.3g updates/s; %.4g s/update\n",
				s.SteadyIntervals, s.MeanWPS, s.LastWPS, s.MeanUPS, s.SecondsPerUpdate)
		} else {
			fmt.Fprintln(w, "steady state: needs at least two intervals (the first one includes start-up)")
		}
		switch {
		case s.Diverged != nil && s.FinalLossUpdate > 0:
			fmt.Fprintf(w, "last finite loss %.4g bits/token at update %d, ppl %.5g; %.4g tokens/update; peak %.3g GiB allocated\n",
				s.FinalLoss, s.FinalLossUpdate, s.FinalPPL, s.WPB, s.MaxCUDAGB)
		case s.Diverged != nil:
			fmt.Fprintf(w, "no finite training loss; %.4g tokens/update; peak %.3g GiB allocated\n", s.WPB, s.MaxCUDAGB)
		default:
			fmt.Fprintf(w, "final loss %.4g bits/token, ppl %.5g; %.4g tokens/update; peak %.3g GiB allocated\n",
				s.FinalLoss, s.FinalPPL, s.WPB, s.MaxCUDAGB)
		}
	}
	for _, v := range s.Validation {
		fmt.Fprintf(w, "validation %s: last loss %.4g at update %d, best %.4g at update %d (%d evaluations)\n",
			v.Subset, v.LastLoss, v.LastUpdate, v.BestLoss, v.BestUpdate, v.Evaluations)
	}
	if d := s.Diverged; d != nil {
		fmt.Fprintf(w, "DIVERGED at update %d: %s logged %s (%s)\n", d.Update, d.Tag, d.Values, d.Time.Format(time.DateTime))
	}
	return bw.Flush()
}

// Failed says why a run counts as failed, or "" when it does not: a run
// whose loss diverged is a failed check whatever the job's state.
func (s Summary) Failed() string {
	if d := s.Diverged; d != nil {
		return fmt.Sprintf("training diverged at update %d (%s: %s)", d.Update, d.Tag, d.Values)
	}
	return ""
}

// RunsTable is training runs as a table (results show): one row per run
// with throughput, the final training loss, each validation subset's last
// and best loss, and the update at which the run diverged ("" when it did
// not). Machine format keeps full precision.
func RunsTable(runs []Run, f results.Format) *results.Table {
	var subsets []string
	seen := map[string]bool{}
	for _, r := range runs {
		for _, v := range r.Summary.Validation {
			if !seen[v.Subset] {
				seen[v.Subset] = true
				subsets = append(subsets, v.Subset)
			}
		}
	}
	t := &results.Table{Title: "training runs", Columns: []string{"experiment", "task", "job", "updates", "words/s", "s/update", "loss", "loss_update"}}
	if f == results.Machine {
		t.Title = ""
		t.Columns = []string{"experiment", "task", "job", "first_update", "last_update", "mean_wps", "seconds_per_update", "final_loss", "final_loss_update"}
	}
	for _, s := range subsets {
		t.Columns = append(t.Columns, s+"_last_loss", s+"_best_loss", s+"_best_update")
	}
	t.Columns = append(t.Columns, "diverged_update", "diverged")
	num := func(v float64) string {
		if f == results.Machine {
			return strconv.FormatFloat(v, 'g', -1, 64)
		}
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	for _, r := range runs {
		s := r.Summary
		row := []string{r.Experiment, r.Task, r.Job}
		if f == results.Machine {
			row = append(row, itoa(s.FirstUpdate), itoa(s.LastUpdate))
		} else {
			row = append(row, fmt.Sprintf("%d-%d", s.FirstUpdate, s.LastUpdate))
		}
		wps, spu, loss, lossAt := "", "", "", ""
		if s.HasSteadyState {
			wps, spu = num(s.MeanWPS), num(s.SecondsPerUpdate)
		}
		if s.FinalLossUpdate > 0 || (s.Intervals > 0 && s.Diverged == nil) {
			loss, lossAt = num(s.FinalLoss), itoa(s.FinalLossUpdate)
		}
		row = append(row, wps, spu, loss, lossAt)
		for _, sub := range subsets {
			last, best, at := "", "", ""
			for _, v := range s.Validation {
				if v.Subset == sub {
					last, best, at = num(v.LastLoss), num(v.BestLoss), itoa(v.BestUpdate)
				}
			}
			row = append(row, last, best, at)
		}
		if d := s.Diverged; d != nil {
			row = append(row, itoa(d.Update), d.Tag+": "+d.Values)
		} else {
			row = append(row, "", "")
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// WriteRuns writes training runs for people: a heading, the runs' table,
// then each run's summary (DIVERGED lines included). Without a heading it
// starts with an empty line (after another table).
func WriteRuns(w io.Writer, heading string, runs []Run) error {
	fmt.Fprintf(w, "%s\n\n", heading)
	if err := RunsTable(runs, results.Human).WriteText(w); err != nil {
		return err
	}
	for _, r := range runs {
		fmt.Fprintf(w, "\n%s:\n", r.Label())
		if err := r.Summary.WriteText(w); err != nil {
			return err
		}
	}
	return nil
}
