package trainlog

import (
	"bufio"
	"fmt"
	"io"
	"time"
)

// WriteText writes the summary for people: the updates seen, steady-state
// throughput (first interval excluded), and the final loss.
func (s Summary) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	w = bw
	if s.Intervals == 0 {
		fmt.Fprintln(w, "no train_inner lines (is --log-format json set, and is this rank 0's log?)")
		return bw.Flush()
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
	return bw.Flush()
}
