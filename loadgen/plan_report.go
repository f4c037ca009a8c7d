package loadgen

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// PlanOptions control a virtual-clock plan of a workload.
type PlanOptions struct {
	Duration time.Duration // plan this long (0 = until the workload ends; it must end)
	Interval time.Duration // bucket width of the per-interval counts (default 1 s)
	// Service is the assumed service time of closed-loop requests: each
	// completes this long after its intended send (default 3 ms, the
	// simulated server's resnet50_v2 batch-1 latency).
	Service time.Duration
	// MaxArrivals bounds the work: a plan that would generate more arrivals
	// and timer firings is refused (0 or more than MaxPlanArrivals:
	// MaxPlanArrivals).
	MaxArrivals int64
}

// PlanLimits are the ranges of PlanOptions (besides MaxArrivals): the
// duration as a run's, the interval from 1 ms, the service time from 1 µs
// to MaxWait, and at most MaxIntervals interval rows.
const (
	MinPlanInterval = time.Millisecond
	MinPlanService  = time.Microsecond
)

// Validate checks the options' ranges; the error is a *FieldError whose
// key is the option's name (duration, interval, service).
func (o PlanOptions) Validate() error {
	switch {
	case o.Duration < 0 || o.Duration > MaxDuration:
		return &FieldError{Key: "duration", Value: FormatDuration(o.Duration), Want: fmt.Sprintf("want 0 (until the workload ends) or up to %s", FormatDuration(MaxDuration))}
	case o.Interval < 0 || (o.Interval > 0 && o.Interval < MinPlanInterval) || o.Interval > MaxDuration:
		return &FieldError{Key: "interval", Value: FormatDuration(o.Interval), Want: fmt.Sprintf("want %v to %s", MinPlanInterval, FormatDuration(MaxDuration))}
	case o.Service < 0 || (o.Service > 0 && o.Service < MinPlanService) || o.Service > MaxWait:
		return &FieldError{Key: "service", Value: FormatDuration(o.Service), Want: fmt.Sprintf("want %v to %s", MinPlanService, FormatDuration(MaxWait))}
	}
	if iv := cmp.Or(o.Interval, time.Second); o.Duration > 0 && o.Duration/iv > MaxIntervals {
		return &FieldError{Key: "interval", Value: FormatDuration(iv), Want: fmt.Sprintf("%d interval rows over %s; at most %d", o.Duration/iv, FormatDuration(o.Duration), MaxIntervals)}
	}
	return nil
}

// DefaultPlanService is the assumed closed-loop service time of a plan.
const DefaultPlanService = 3 * time.Millisecond

// PlanCount is a count of arrivals under a name (model or class).
type PlanCount struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// PlanInterval is one bucket of the plan.
type PlanInterval struct {
	Index     int              `json:"interval"`
	Start     time.Duration    `json:"start"`
	Count     int64            `json:"count"`
	Classes   map[string]int64 `json:"classes,omitempty"`
	SLOFactor float64          `json:"slo_factor,omitempty"` // factor in force (swept class) at the interval's last arrival
}

// PlanStep is one run of consecutive swept-class arrivals with the same SLO
// factor.
type PlanStep struct {
	SLOFactor float64       `json:"slo_factor"`
	From      time.Duration `json:"from"` // first arrival with this factor
	To        time.Duration `json:"to"`   // last arrival with this factor
	Count     int64         `json:"count"`
}

// PlanReport is what a workload would send, computed without sending.
type PlanReport struct {
	Workload   string         `json:"workload"`
	Duration   time.Duration  `json:"duration"`
	Interval   time.Duration  `json:"interval"`
	Service    time.Duration  `json:"assumed_service,omitempty"` // closed loops only
	Assumption string         `json:"assumption,omitempty"`
	Total      int64          `json:"total"`
	Last       time.Duration  `json:"last_arrival"`
	EndedAt    time.Duration  `json:"ended_at,omitempty"` // when the workload ended the run itself (0 = it did not)
	EndedBy    string         `json:"ended_by"`           // "duration", "timer" (SLO sweep end), "exhausted"
	Sources    int            `json:"sources"`
	AllModels  int            `json:"workload_models"` // models the workload may send to
	Models     []PlanCount    `json:"models"`
	Classes    []PlanCount    `json:"classes,omitempty"`
	Steps      []PlanStep     `json:"slo_steps,omitempty"`
	Intervals  []PlanInterval `json:"intervals"`
	Deviations []string       `json:"deviations,omitempty"`
}

// PlanWorkload runs w on a virtual clock and summarises its arrivals. It
// refuses options out of range and work beyond o.MaxArrivals (both
// errkind.ErrInvalid) — before it starts when the sources' rates tell, else
// as soon as the count passes the bound — and stops soon after ctx is
// cancelled, with ctx's error.
func PlanWorkload(ctx context.Context, w *Workload, o PlanOptions) (*PlanReport, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.MaxArrivals <= 0 || o.MaxArrivals > MaxPlanArrivals {
		o.MaxArrivals = MaxPlanArrivals
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Service <= 0 {
		o.Service = DefaultPlanService
	}
	if o.Duration <= 0 && !planFinite(w) {
		return nil, errkind.Invalidf("workload %s does not end by itself: give a duration", w.Name)
	}
	if est := expectedArrivals(w, o.Duration); est > float64(o.MaxArrivals) {
		return nil, errkind.Invalidf("the plan would generate about %s arrivals over %s, more than the %d a plan may: shorten the duration or lower the rate", FormatNumber(math.Round(est)), FormatDuration(o.Duration), o.MaxArrivals)
	}
	var events int64 // arrivals and timer firings
	over := false
	count := func() bool {
		events++
		if events > o.MaxArrivals {
			over = true
		}
		return !over
	}
	rep := &PlanReport{Workload: w.Name, Duration: o.Duration, Interval: o.Interval, Deviations: w.Deviations,
		Sources: len(w.Open) + len(w.Closed), AllModels: len(w.Models())}
	if len(w.Closed) > 0 {
		rep.Service = o.Service
		rep.Assumption = fmt.Sprintf("closed-loop requests are assumed to complete %v after they are sent (--service); real counts depend on the server", o.Service)
	}
	// Note when a timer ends the run (Clockwork's terminate predicate).
	for _, t := range w.Timers {
		f := t.Fire
		t.Fire = func(now time.Duration) TimerAction {
			if !count() {
				return TimerEndRun
			}
			act := f(now)
			if act == TimerEndRun && rep.EndedAt == 0 {
				rep.EndedAt, rep.EndedBy = now, "timer"
			}
			return act
		}
	}
	models := map[string]int64{}
	classes := map[string]int64{}
	var cur *PlanInterval
	var step *PlanStep
	var factor float64
	swept := func(a Arrival) bool { return a.SLOFactor > 0 && (w.SweptClass == "" || a.Class == w.SweptClass) }
	st, err := Plan(ctx, w, o.Duration, func(Arrival) time.Duration { return o.Service }, func(a Arrival) bool {
		if !count() {
			return false
		}
		k := int(a.At / o.Interval)
		if k >= MaxIntervals {
			over = true // only without a duration: Validate bounds it otherwise
			return false
		}
		models[a.Model]++
		if a.Class != "" {
			classes[a.Class]++
		}
		for cur == nil || cur.Index < k {
			next := 0
			if cur != nil {
				next = cur.Index + 1
			}
			rep.Intervals = append(rep.Intervals, PlanInterval{Index: next, Start: time.Duration(next) * o.Interval, SLOFactor: factor})
			cur = &rep.Intervals[len(rep.Intervals)-1]
		}
		cur.Count++
		if a.Class != "" {
			if cur.Classes == nil {
				cur.Classes = map[string]int64{}
			}
			cur.Classes[a.Class]++
		}
		if swept(a) {
			factor, cur.SLOFactor = a.SLOFactor, a.SLOFactor
			if step == nil || step.SLOFactor != a.SLOFactor {
				rep.Steps = append(rep.Steps, PlanStep{SLOFactor: a.SLOFactor, From: a.At})
				step = &rep.Steps[len(rep.Steps)-1]
			}
			step.To = a.At
			step.Count++
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if over {
		if events > o.MaxArrivals {
			return nil, errkind.Invalidf("the plan passed %d arrivals and timer firings at %v of the workload, the most a plan may generate: shorten the duration or lower the rate", o.MaxArrivals, st.Last)
		}
		return nil, errkind.Invalidf("the plan passed %d intervals of %v at %v: give a shorter duration or a wider interval", MaxIntervals, o.Interval, st.Last)
	}
	rep.Total, rep.Last = st.Arrivals, st.Last
	if o.Duration > 0 {
		for n := int((o.Duration + o.Interval - 1) / o.Interval); len(rep.Intervals) < n; {
			i := len(rep.Intervals)
			if rep.EndedAt > 0 && time.Duration(i)*o.Interval >= rep.EndedAt {
				break
			}
			rep.Intervals = append(rep.Intervals, PlanInterval{Index: i, Start: time.Duration(i) * o.Interval, SLOFactor: factor})
		}
	}
	if rep.EndedBy == "" && len(w.Timers) > 0 && len(w.Closed) == 0 && len(w.Open) > 0 {
		// An SLO sweep stops its sources where its timer ends the run, so
		// the run ends there even though the timer never got to fire.
		stop := w.Open[0].Stop
		same := stop > 0 && (o.Duration <= 0 || stop <= o.Duration)
		for _, src := range w.Open {
			same = same && src.Stop == stop
		}
		if same {
			rep.EndedAt, rep.EndedBy = stop, "timer"
		}
	}
	if rep.EndedBy == "" {
		rep.EndedBy = "duration"
		if planFinite(w) && len(w.Timers) == 0 && (o.Duration <= 0 || st.Last+o.Interval < o.Duration) {
			rep.EndedBy = "exhausted"
		}
	}
	rep.Models = sortedCounts(models)
	rep.Classes = sortedCounts(classes)
	return rep, nil
}

// planFinite reports whether a workload ends by itself: a timer that may
// end the run, or only bounded sources.
func planFinite(w *Workload) bool {
	if len(w.Timers) > 0 {
		return true // e.g. slo-exp's terminate predicate (checked when built)
	}
	for _, c := range w.Closed {
		if c.Max <= 0 {
			return false
		}
	}
	for _, o := range w.Open {
		if o.Stop <= 0 && o.Max <= 0 {
			if _, ok := o.Proc.(*Offsets); !ok {
				return false
			}
		}
	}
	return w.MaxRequests > 0 || len(w.Open)+len(w.Closed) > 0
}

func sortedCounts(m map[string]int64) []PlanCount {
	out := make([]PlanCount, 0, len(m))
	for k, v := range m {
		out = append(out, PlanCount{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WriteText prints the plan for people: totals, classes, SLO steps, the
// busiest and quietest models, and the per-interval counts (at most
// maxIntervals rows, evenly sampled; 0 = all).
func (r *PlanReport) WriteText(w io.Writer, maxIntervals int) {
	secs := r.Duration.Seconds()
	if secs == 0 {
		secs = r.Last.Seconds()
	}
	fmt.Fprintf(w, "workload %s: %d sources, %d models (%d sent to)\n", r.Workload, r.Sources, r.AllModels, len(r.Models))
	end := r.Duration.String()
	if r.EndedAt > 0 {
		end = fmt.Sprintf("%v (the workload ends the run)", r.EndedAt)
		secs = r.EndedAt.Seconds()
	}
	rate := 0.0
	if secs > 0 {
		rate = float64(r.Total) / secs
	}
	fmt.Fprintf(w, "requests %d over %s (%.1f/s), last at %v\n", r.Total, end, rate, r.Last)
	if r.Assumption != "" {
		fmt.Fprintf(w, "note: %s\n", r.Assumption)
	}
	for _, c := range r.Classes {
		fmt.Fprintf(w, "class %-14s %d\n", c.Name, c.Count)
	}
	for _, s := range r.Steps {
		fmt.Fprintf(w, "slo ×%-8g from %-10v to %-10v %d requests\n", s.SLOFactor, s.From.Round(time.Millisecond), s.To.Round(time.Millisecond), s.Count)
	}
	if n := len(r.Models); n > 0 {
		byCount := append([]PlanCount(nil), r.Models...)
		sort.SliceStable(byCount, func(i, j int) bool { return byCount[i].Count > byCount[j].Count })
		show := byCount
		if n > 10 {
			show = byCount[:5]
		}
		for _, m := range show {
			fmt.Fprintf(w, "model %-24s %d\n", m.Name, m.Count)
		}
		if n > 10 {
			fmt.Fprintf(w, "… %d more models; quietest: %s %d (--json lists all)\n", n-5, byCount[n-1].Name, byCount[n-1].Count)
		}
	}
	step := 1
	if maxIntervals > 0 && len(r.Intervals) > maxIntervals {
		step = (len(r.Intervals) + maxIntervals - 1) / maxIntervals
		fmt.Fprintf(w, "intervals of %v (every %d-th of %d shown; --json has all):\n", r.Interval, step, len(r.Intervals))
	} else {
		fmt.Fprintf(w, "intervals of %v:\n", r.Interval)
	}
	for i := 0; i < len(r.Intervals); i += step {
		iv := r.Intervals[i]
		var extra []string
		if iv.SLOFactor > 0 {
			extra = append(extra, fmt.Sprintf("slo ×%g", iv.SLOFactor))
		}
		names := make([]string, 0, len(iv.Classes))
		for k := range iv.Classes {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			extra = append(extra, fmt.Sprintf("%s %d", k, iv.Classes[k]))
		}
		fmt.Fprintf(w, "  %4d  %-8v %7d  %s\n", iv.Index, iv.Start, iv.Count, strings.Join(extra, "  "))
	}
	for _, d := range r.Deviations {
		fmt.Fprintf(w, "deviation: %s\n", d)
	}
}

// rater is a process with a known mean rate (requests/s).
type rater interface{ Rate() float64 }

// expectedArrivals estimates the arrivals of w's open loops with a known
// rate over d (0: their Max, when they have one); 0 when it cannot tell.
func expectedArrivals(w *Workload, d time.Duration) float64 {
	sum := 0.0
	for _, o := range w.Open {
		r, ok := o.Proc.(rater)
		if !ok {
			continue
		}
		span := d
		if o.Stop > 0 && (span <= 0 || o.Stop < span) {
			span = o.Stop
		}
		n := r.Rate() * (span - o.Start).Seconds()
		if o.Max > 0 && (span <= 0 || float64(o.Max) < n) {
			n = float64(o.Max)
		}
		if span > 0 || o.Max > 0 {
			sum += max(n, 0)
		}
	}
	return sum
}
