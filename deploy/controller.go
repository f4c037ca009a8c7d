package deploy

import (
	"fmt"
	"math"
	"time"
)

// Signals the autoscaler watches.
const (
	// SignalP99: the p99 latency of the window's completed requests
	// (measured from their intended send time) against a latency target,
	// the SLO by default.
	SignalP99 = "p99"
	// SignalInFlight: requests in flight per ready replica, averaged over
	// the window, against a target per replica. Proportional: it may add
	// several replicas at once.
	SignalInFlight = "inflight"
	// SignalGoodput: the share of the window's requests that missed their
	// SLO (failed, or late) against what a target attainment allows.
	SignalGoodput = "goodput"
)

// Signals lists the signals, for messages.
var Signals = []string{SignalP99, SignalInFlight, SignalGoodput}

// Actions of a decision.
const (
	ActionStart     = "start"      // the deployment's first replicas
	ActionHold      = "hold"       // nothing to do
	ActionScaleUp   = "scale-up"   // add replicas
	ActionScaleDown = "scale-down" // drain one replica, then cancel it
	ActionReplace   = "replace"    // a replica was lost: start another
	ActionStop      = "stop"       // the run is over
)

// Policy is a resolved autoscaling configuration (see Spec).
type Policy struct {
	Min, Max int
	// Signal is one of Signals; "" means no autoscaling: the deployment
	// keeps Min (= Max) replicas and only replaces lost ones.
	Signal string
	// Target: for p99 a latency in seconds, for inflight requests per
	// replica, for goodput an attainment in (0, 1).
	Target float64
	// Window is the span the signal is measured over; Interval the time
	// between decisions (the run's snapshot interval).
	Window, Interval time.Duration
	// UpAt and DownAt are the hysteresis band of the signal's ratio to its
	// target: above UpAt replicas are added, below DownAt one is removed.
	UpAt, DownAt float64
	// UpCooldown is how long after the last added replica became ready
	// another scale-up waits (so the window sees the new replica);
	// DownCooldown how long after any scaling a scale-down waits.
	UpCooldown, DownCooldown time.Duration
}

// Sample is what the deployment measured over one interval.
type Sample struct {
	Latency  Hist  // corrected latency of the requests that completed
	Finished int64 // requests that ended (any outcome)
	Missed   int64 // of those, failed or over their SLO
	Sent     int64 // requests handed to the deployment
	InFlight int64 // requests in flight at the end of the interval
}

// Counts are the deployment's replicas by state when a decision is made.
type Counts struct {
	Ready, Starting, Draining int
}

// Decision is one tick of the controller: what it saw and what it wants.
type Decision struct {
	Time    time.Time `json:"time"`
	Action  string    `json:"action"`
	Reason  string    `json:"reason"`
	Desired int       `json:"desired"`
	Counts
	Signal string `json:"signal,omitempty"`
	// Value is the signal's value over the window (p99 in seconds,
	// requests in flight per replica, or attainment) and Ratio its ratio to
	// the target (for goodput: misses over those the target allows); ok
	// is false when the window held nothing to judge by.
	Value, Ratio float64
	OK           bool
	// Window figures, whatever the signal: p99 latency, requests in flight
	// per ready replica, attainment, and the rate requests were sent at.
	P99          time.Duration
	InFlightPer  float64
	Attainment   float64
	OfferedRate  float64
	Capacity     float64 // learned requests/s one replica sustains (0 = unknown)
	Add, Replace int     // replicas to start (scale-up, replace)
	Drain        int     // replicas to drain (scale-down)
}

// Controller decides, once per interval, how many replicas a deployment
// wants. It keeps the last Window of samples; it is not safe for concurrent
// use (the deployment calls it from one goroutine).
type Controller struct {
	p       Policy
	ring    []Sample
	filled  int // samples in ring (≤ len)
	pos     int
	desired int
	// The last scaling decision, and when the last added replica became
	// ready (cooldowns).
	lastScale time.Time
	lastReady time.Time
	// capacity is the smallest offered rate per ready replica at which the
	// signal breached: scale-down never goes below what that implies.
	capacity float64
	// The ready count at the last tick and when it last changed: only a
	// window that saw one ready count teaches the capacity.
	prevReady    int
	readyChanged time.Time
	win          Hist // scratch for merging the window
}

// capacityMargin keeps a scale-down this far below the learned capacity.
const capacityMargin = 0.8

// NewController starts at initial replicas (clamped to [Min, Max]).
func NewController(p Policy, initial int) *Controller {
	n := 1
	if p.Interval > 0 && p.Window > p.Interval {
		n = int((p.Window + p.Interval - 1) / p.Interval)
	}
	return &Controller{p: p, ring: make([]Sample, n), desired: min(max(initial, p.Min), p.Max)}
}

// Desired is the number of replicas the controller wants now.
func (c *Controller) Desired() int { return c.desired }

// Ready tells the controller that an added replica became ready at t.
func (c *Controller) Ready(t time.Time) { c.lastReady = t }

// Tick records the interval's sample and decides. now is the tick's time,
// n the replicas as they are.
func (c *Controller) Tick(now time.Time, s *Sample, n Counts) Decision {
	c.ring[c.pos] = *s
	c.pos = (c.pos + 1) % len(c.ring)
	c.filled = min(c.filled+1, len(c.ring))

	switch {
	case c.readyChanged.IsZero(): // the first sample saw these replicas from its start
		c.prevReady, c.readyChanged = n.Ready, now.Add(-c.p.Interval)
	case n.Ready != c.prevReady: // this sample may have seen both counts
		c.prevReady, c.readyChanged = n.Ready, now
	}
	d := Decision{Time: now, Counts: n, Signal: c.p.Signal, Action: ActionHold}
	c.measure(&d)
	d.Capacity = c.capacity
	serving := n.Ready + n.Starting
	switch {
	case serving < c.desired:
		// A replica was lost (or never came up): start another, whatever
		// the cooldowns; the desired count is unchanged.
		d.Action, d.Replace = ActionReplace, c.desired-serving
		d.Reason = fmt.Sprintf("%d of %d replicas ready or starting", serving, c.desired)
	case c.p.Signal == "":
		d.Reason = "no autoscaling"
	case c.filled < len(c.ring):
		d.Reason = fmt.Sprintf("warming up: %d of %d intervals in the window", c.filled, len(c.ring))
	case !d.OK:
		d.Reason = "nothing to judge by in the window"
	case d.Ratio > c.p.UpAt:
		c.scaleUp(&d, now)
	case d.Ratio < c.p.DownAt:
		c.scaleDown(&d, now)
	default:
		d.Reason = fmt.Sprintf("%s within [%g, %g] of target", c.describe(&d), c.p.DownAt, c.p.UpAt)
	}
	d.Desired = c.desired
	return d
}

// measure merges the window and fills in the signal's value and ratio.
func (c *Controller) measure(d *Decision) {
	c.win.Reset()
	var finished, missed, sent, inflight int64
	for i := 0; i < c.filled; i++ {
		s := &c.ring[i]
		c.win.Add(&s.Latency)
		finished += s.Finished
		missed += s.Missed
		sent += s.Sent
		inflight += s.InFlight
	}
	span := time.Duration(c.filled) * c.p.Interval
	if span > 0 {
		d.OfferedRate = float64(sent) / span.Seconds()
	}
	d.P99 = c.win.Quantile(0.99)
	if d.Ready > 0 && c.filled > 0 {
		d.InFlightPer = float64(inflight) / float64(c.filled) / float64(d.Ready)
	}
	if finished > 0 {
		d.Attainment = 1 - float64(missed)/float64(finished)
	}
	switch c.p.Signal {
	case SignalP99:
		d.OK = c.win.Count() > 0
		d.Value = d.P99.Seconds()
		d.Ratio = d.Value / c.p.Target
		if !d.OK && finished > 0 {
			// Requests ended, none completed: as bad as it gets.
			d.OK, d.Ratio = true, math.Inf(1)
		}
	case SignalInFlight:
		d.OK = d.Ready > 0
		d.Value = d.InFlightPer
		d.Ratio = d.Value / c.p.Target
	case SignalGoodput:
		d.OK = finished > 0
		d.Value = d.Attainment
		d.Ratio = (1 - d.Attainment) / (1 - c.p.Target)
	}
}

func (c *Controller) describe(d *Decision) string {
	switch c.p.Signal {
	case SignalP99:
		return fmt.Sprintf("p99 %s is %.2f× the target %s", d.P99.Round(time.Millisecond), d.Ratio, time.Duration(c.p.Target*float64(time.Second)))
	case SignalInFlight:
		return fmt.Sprintf("%.2f in flight per replica is %.2f× the target %g", d.Value, d.Ratio, c.p.Target)
	case SignalGoodput:
		return fmt.Sprintf("attainment %.4f: misses %.2f× what the target %g allows", d.Value, d.Ratio, c.p.Target)
	}
	return ""
}

func (c *Controller) scaleUp(d *Decision, now time.Time) {
	// The offered rate per ready replica at which the signal breached
	// bounds what one replica sustains (when the whole window saw this
	// many replicas ready).
	if d.Ready > 0 && d.OfferedRate > 0 && now.Sub(c.readyChanged) >= c.p.Window {
		if per := d.OfferedRate / float64(d.Ready); c.capacity == 0 || per < c.capacity {
			c.capacity = per
			d.Capacity = per
		}
	}
	serving := d.Ready + d.Starting
	want := d.Ready + 1
	if c.p.Signal == SignalInFlight && !math.IsInf(d.Ratio, 1) {
		// Proportional: enough replicas for the target per replica.
		want = max(want, int(math.Ceil(float64(d.Ready)*d.Ratio)))
	}
	want = min(want, c.p.Max)
	switch {
	case c.desired >= c.p.Max && serving >= c.p.Max:
		d.Reason = fmt.Sprintf("%s, but already at max_replicas %d", c.describe(d), c.p.Max)
	case want <= serving:
		d.Reason = fmt.Sprintf("%s; waiting for %d starting replica(s)", c.describe(d), d.Starting)
	case !c.lastReady.IsZero() && now.Sub(c.lastReady) < c.p.UpCooldown:
		d.Reason = fmt.Sprintf("%s; up cooldown until %s after the last replica became ready", c.describe(d), c.p.UpCooldown)
	default:
		d.Action = ActionScaleUp
		d.Add = want - serving
		c.desired = want
		c.lastScale = now
		d.Reason = fmt.Sprintf("%s > %g: %d → %d replicas", c.describe(d), c.p.UpAt, serving, want)
	}
}

func (c *Controller) scaleDown(d *Decision, now time.Time) {
	ready := d.Ready
	switch {
	case c.desired <= c.p.Min || ready <= c.p.Min:
		d.Reason = fmt.Sprintf("%s, but already at min_replicas %d", c.describe(d), c.p.Min)
	case d.Starting > 0 || d.Draining > 0:
		d.Reason = fmt.Sprintf("%s; waiting for %d starting and %d draining replica(s)", c.describe(d), d.Starting, d.Draining)
	case !c.lastScale.IsZero() && now.Sub(c.lastScale) < c.p.DownCooldown:
		d.Reason = fmt.Sprintf("%s; down cooldown %s after the last scaling", c.describe(d), c.p.DownCooldown)
	case c.capacity > 0 && d.OfferedRate > float64(ready-1)*c.capacity*capacityMargin:
		d.Reason = fmt.Sprintf("%s, but %.1f req/s would exceed %d replica(s) at %.0f%% of the %.1f req/s one sustained before a breach",
			c.describe(d), d.OfferedRate, ready-1, capacityMargin*100, c.capacity)
	default:
		d.Action = ActionScaleDown
		d.Drain = 1
		c.desired = ready - 1
		c.lastScale = now
		d.Reason = fmt.Sprintf("%s < %g: %d → %d replicas", c.describe(d), c.p.DownAt, ready, ready-1)
	}
}
