package perfmodel

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteTable writes predictions as a table, one row per concurrency level,
// latencies in milliseconds.
func WriteTable(w io.Writer, ps []Prediction) error {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONCURRENCY\tBATCH\tTTFT_MS\tTPOT_MS\tE2EL_MS\tOUTPUT_TOK/S\tREQ/S\tQUEUE_MS\tPREFILL\tDECODE")
	for _, p := range ps {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%.1f\t%.2f\t%.1f\t%s-bound\t%s-bound\n", p.Concurrency, p.Batch, ms(p.TTFT), ms(p.TPOT), ms(p.E2EL),
			p.OutputTokensPerS, p.RequestsPerS, p.QueueS*1000, p.PrefillBound, p.DecodeBound)
	}
	return tw.Flush()
}
