package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// WriteText writes the summary for people: status, request counts and
// rates, failures by kind, SLO attainment, and the latency percentiles that
// were measured, then per class and per SLO step.
func (s *Summary) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	w = bw
	t := s.Total
	dur := s.Ended.Sub(s.Started).Truncate(time.Millisecond)
	fmt.Fprintf(w, "%s  %s %s  workload %s  (%v)\n", s.Status, s.Protocol, s.Target, s.Workload, dur)
	if s.Error != "" {
		fmt.Fprintf(w, "error: %s\n", s.Error)
	}
	fmt.Fprintf(w, "requests  offered %d (%.1f/s)  completed %d (%.1f/s)  errors %d  timeouts %d  dropped %d  cancelled %d\n",
		t.Offered, t.OfferedRate, t.Completed, t.AchievedRate, t.Errors, t.Timeouts, t.Dropped, t.Cancelled)
	if len(s.ErrorKinds) > 0 {
		kinds := make([]string, 0, len(s.ErrorKinds))
		for k, n := range s.ErrorKinds {
			kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
		}
		sort.Strings(kinds)
		fmt.Fprintf(w, "failures  %s\n", strings.Join(kinds, ", "))
	}
	if t.Completed > 0 {
		fmt.Fprintf(w, "SLO met   %d of %d (%.1f%%)  goodput %.1f/s\n", t.SLOMet, t.Completed,
			100*float64(t.SLOMet)/float64(t.Completed), t.Goodput)
	}
	row := func(name string, q Quantiles) {
		if q.Count == 0 {
			return
		}
		fmt.Fprintf(w, "%-9s p50 %-9v p90 %-9v p99 %-9v p99.9 %-9v max %v\n", name, q.P50, q.P90, q.P99, q.P999, q.Max)
	}
	row("latency", t.Latency)
	row("service", t.Service)
	row("lateness", t.Lateness)
	row("ttft", t.TTFT)
	row("tpot", t.TPOT)
	row("itl", t.ITL)
	row("e2el", t.E2EL)
	for _, c := range s.Classes {
		fmt.Fprintf(w, "class %-4s offered %d completed %d slo met %d p99 %v\n", c.Class, c.Offered, c.Completed, c.SLOMet, c.Latency.P99)
	}
	for _, st := range s.Steps {
		fmt.Fprintf(w, "slo ×%-6g offered %d completed %d slo met %d p99 %v\n", st.SLOFactor, st.Offered, st.Completed, st.SLOMet, st.Latency.P99)
	}
	if s.Shard != nil {
		fmt.Fprintf(w, "%s\n", s.Shard.line())
	}
	if len(s.Shards) > 0 {
		fmt.Fprintf(w, "merged from %d shards, percentiles from their merged histograms\n", len(s.Shards))
	}
	for _, sh := range s.Shards {
		st := sh.Status
		if sh.Error != "" {
			st += ": " + sh.Error
		}
		fmt.Fprintf(w, "  %s  %s\n", sh.line(), st)
	}
	return bw.Flush()
}

// line is a shard's one-line account: which shard, how split, and how its
// start lined up.
func (s ShardInfo) line() string {
	l := s.Name()
	if s.Split != "" {
		l += "  split " + s.Split
	}
	if !s.Start.IsZero() {
		l += fmt.Sprintf("  start offset %v  clock offset %v ±%v", s.StartOffset.Round(time.Microsecond),
			s.ClockOffset.Round(time.Microsecond), s.ClockUncertainty.Round(time.Microsecond))
	}
	return l
}

// Line is the progress as one status line: "  12.3s/30s  498 req/s  p99
// 4.1ms  sent 6150  failed 0".
func (p Progress) Line() string {
	total := "∞"
	if p.Total > 0 {
		total = p.Total.String()
	}
	return fmt.Sprintf("  %v/%s  %.0f req/s  p99 %v  sent %d  failed %d", p.Elapsed.Truncate(100*time.Millisecond), total, p.Rate, p.P99, p.Offered, p.Failed)
}
