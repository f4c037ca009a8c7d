package loadgen

import (
	"strings"
	"testing"
	"time"
)

func TestSummaryWriteText(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	q := func(p50 time.Duration) Quantiles {
		return Quantiles{Count: 10, P50: p50, P90: 2 * p50, P99: 3 * p50, P999: 4 * p50, Max: 5 * p50}
	}
	s := &Summary{Status: StatusCompleted, Protocol: "kserve", Target: "http://127.0.0.1:8000", Workload: "poisson",
		Started: t0, Ended: t0.Add(2500 * time.Millisecond),
		Total: Snapshot{Offered: 100, OfferedRate: 40, Completed: 90, AchievedRate: 36, Errors: 7, Timeouts: 3,
			SLOMet: 45, Goodput: 18, Latency: q(time.Millisecond)},
		ErrorKinds: map[string]int64{"timeout": 3, "HTTP 500": 7},
		Steps:      []Snapshot{{SLOFactor: 2, Offered: 50, Completed: 45, SLOMet: 40, Latency: q(time.Millisecond)}},
	}
	var b strings.Builder
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"completed  kserve http://127.0.0.1:8000  workload poisson  (2.5s)",
		"offered 100 (40.0/s)  completed 90 (36.0/s)  errors 7  timeouts 3",
		"failures  HTTP 500: 7, timeout: 3", // sorted, so the line is stable
		"SLO met   45 of 90 (50.0%)  goodput 18.0/s",
		"latency   p50 1ms",
		"slo ×2      offered 50 completed 45 slo met 40 p99 3ms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	// Latencies that were not measured get no row.
	if strings.Contains(out, "ttft") {
		t.Errorf("an unmeasured TTFT is printed:\n%s", out)
	}
}

func TestProgressLine(t *testing.T) {
	for _, c := range []struct {
		p    Progress
		want string
	}{
		{Progress{Elapsed: 12345 * time.Millisecond, Total: 30 * time.Second, Rate: 498.4, P99: 4100 * time.Microsecond, Offered: 6150},
			"  12.3s/30s  498 req/s  p99 4.1ms  sent 6150  failed 0"},
		{Progress{Elapsed: 2 * time.Second, Rate: 10, Offered: 20, Failed: 3}, "  2s/∞  10 req/s  p99 0s  sent 20  failed 3"},
	} {
		if got := c.p.Line(); got != c.want {
			t.Errorf("Line() = %q, want %q", got, c.want)
		}
	}
}
