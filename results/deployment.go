package results

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
)

// MeasDeployment holds what a deployment of model-server replicas did
// (package deploy, docs/deployments.md): one point per controller decision
// (kind decision), per replica and interval (kind replica), and per replica
// event (kind event).
const MeasDeployment = "deployment"

// Tags and kinds of deployment points.
const (
	TagKind    = "kind"    // decision, replica or event
	TagReplica = "replica" // replica points and events: r0, r1, …
	// Kinds.
	KindDecision = "decision"
	KindReplica  = "replica"
	KindEvent    = "event"
)

// DeploymentPoint is a point of measurement "deployment" with the run's
// identity tags (as SnapshotPoints writes them), its kind and, unless "",
// the replica. Non-finite float fields are left out (line protocol cannot
// carry them).
func DeploymentPoint(meta loadgen.Summary, kind, replica string, t time.Time, fields map[string]any) Point {
	tags := baseTags(meta)
	tags[TagKind] = kind
	if replica != "" {
		tags[TagReplica] = replica
	}
	for k, v := range fields {
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			delete(fields, k)
		}
	}
	return Point{Measurement: MeasDeployment, Tags: tags, Fields: fields, Time: t}
}

// Deployment is what one task's deployment did, read back from its points.
type Deployment struct {
	Experiment string            `json:"experiment"`
	Task       string            `json:"task"`
	Decisions  []DeployDecision  `json:"decisions"`
	Events     []ReplicaEvent    `json:"events,omitempty"`
	Replicas   []ReplicaTotals   `json:"replicas,omitempty"`
	Summary    DeploymentSummary `json:"summary"`
}

// DeployDecision is one controller decision.
type DeployDecision struct {
	Time     time.Time `json:"time"`
	Action   string    `json:"action"`
	Reason   string    `json:"reason"`
	Signal   string    `json:"signal,omitempty"`
	Desired  int64     `json:"desired"`
	Ready    int64     `json:"ready"`
	Starting int64     `json:"starting"`
	Draining int64     `json:"draining"`
	Value    *float64  `json:"value,omitempty"`
	Ratio    *float64  `json:"ratio,omitempty"`
	P99MS    *float64  `json:"p99_ms,omitempty"`
}

// ReplicaEvent is one replica's change of state.
type ReplicaEvent struct {
	Time    time.Time `json:"time"`
	Replica string    `json:"replica"`
	Event   string    `json:"event"`
	Node    string    `json:"node,omitempty"`
	Job     string    `json:"job,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	// For "ready": from the decision that asked for the replica, from its
	// submission, from submission to running (Slurm's scheduling), and from
	// running to answering (the server's start-up), in milliseconds.
	SinceDecisionMS *float64 `json:"since_decision_ms,omitempty"`
	SinceBreachMS   *float64 `json:"since_breach_ms,omitempty"`
	SinceSubmitMS   *float64 `json:"since_submit_ms,omitempty"`
	SchedulingMS    *float64 `json:"scheduling_ms,omitempty"`
	StartupMS       *float64 `json:"startup_ms,omitempty"`
}

// ReplicaTotals are one replica's requests over the run, summed from its
// interval points.
type ReplicaTotals struct {
	Replica   string `json:"replica"`
	Node      string `json:"node,omitempty"`
	Job       string `json:"job,omitempty"`
	Sent      int64  `json:"sent"`
	Completed int64  `json:"completed"`
	Failed    int64  `json:"failed"`
}

// DeploymentSummary condenses the decisions.
type DeploymentSummary struct {
	ScaleUps   int     `json:"scale_ups"`
	ScaleDowns int     `json:"scale_downs"`
	Replaced   int     `json:"replaced"`
	MinReady   int64   `json:"min_ready"`
	MaxReady   int64   `json:"max_ready"`
	MeanReady  float64 `json:"mean_ready"` // time-weighted
	// Unrouted counts requests that found no replica to go to.
	Unrouted int64 `json:"unrouted"`
}

func optFloat(f map[string]any, k string) *float64 {
	if v, ok := fieldFloat(f, k); ok {
		return &v
	}
	return nil
}

func fieldString(f map[string]any, k string) string { s, _ := f[k].(string); return s }

// LoadDeployments reads the deployment points of an experiment ("" = all in
// src), one Deployment per task that has any, in task order.
func LoadDeployments(ctx context.Context, src Source, experiment string) ([]Deployment, error) {
	q := Query{Measurement: MeasDeployment}
	if experiment != "" {
		q.Experiments = []string{experiment}
	}
	pts, err := src.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read %s points: %w", MeasDeployment, err)
	}
	return BuildDeployments(pts), nil
}

// BuildDeployments groups deployment points by task.
func BuildDeployments(pts []Point) []Deployment {
	byTask := map[taskKey]*Deployment{}
	totals := map[taskKey]map[string]*ReplicaTotals{}
	var order []taskKey
	for _, p := range pts {
		if p.Measurement != MeasDeployment {
			continue
		}
		k := taskKey{p.Tags[TagExperiment], p.Tags[TagTask]}
		d := byTask[k]
		if d == nil {
			d = &Deployment{Experiment: k.experiment, Task: k.task}
			byTask[k], totals[k] = d, map[string]*ReplicaTotals{}
			order = append(order, k)
		}
		f := p.Fields
		switch p.Tags[TagKind] {
		case KindDecision:
			d.Decisions = append(d.Decisions, DeployDecision{Time: p.Time, Action: fieldString(f, "action"), Reason: fieldString(f, "reason"),
				Signal: fieldString(f, "signal"), Desired: fieldInt(f, "desired"), Ready: fieldInt(f, "ready"), Starting: fieldInt(f, "starting"),
				Draining: fieldInt(f, "draining"), Value: optFloat(f, "value"), Ratio: optFloat(f, "ratio"), P99MS: optFloat(f, "p99_ms")})
			d.Summary.Unrouted += fieldInt(f, "unrouted")
		case KindEvent:
			d.Events = append(d.Events, ReplicaEvent{Time: p.Time, Replica: p.Tags[TagReplica], Event: fieldString(f, "event"),
				Node: fieldString(f, "node"), Job: fieldString(f, "job"), Reason: fieldString(f, "reason"),
				SinceDecisionMS: optFloat(f, "since_decision_ms"), SinceBreachMS: optFloat(f, "since_breach_ms"), SinceSubmitMS: optFloat(f, "since_submit_ms"),
				SchedulingMS: optFloat(f, "scheduling_ms"), StartupMS: optFloat(f, "startup_ms")})
		case KindReplica:
			name := p.Tags[TagReplica]
			t := totals[k][name]
			if t == nil {
				t = &ReplicaTotals{Replica: name}
				totals[k][name] = t
			}
			t.Sent += fieldInt(f, "sent")
			t.Completed += fieldInt(f, "completed")
			t.Failed += fieldInt(f, "failed")
			if n := fieldString(f, "node"); n != "" {
				t.Node = n
			}
			if j := fieldString(f, "job"); j != "" {
				t.Job = j
			}
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].experiment != order[j].experiment {
			return NaturalLess(order[i].experiment, order[j].experiment)
		}
		return NaturalLess(order[i].task, order[j].task)
	})
	out := make([]Deployment, 0, len(order))
	for _, k := range order {
		d := byTask[k]
		sort.SliceStable(d.Decisions, func(i, j int) bool { return d.Decisions[i].Time.Before(d.Decisions[j].Time) })
		sort.SliceStable(d.Events, func(i, j int) bool { return d.Events[i].Time.Before(d.Events[j].Time) })
		for _, t := range totals[k] {
			d.Replicas = append(d.Replicas, *t)
		}
		sort.Slice(d.Replicas, func(i, j int) bool { return NaturalLess(d.Replicas[i].Replica, d.Replicas[j].Replica) })
		d.summarize()
		out = append(out, *d)
	}
	return out
}

func (d *Deployment) summarize() {
	s := &d.Summary
	var weighted, span float64
	seen := false
	for i, x := range d.Decisions {
		switch x.Action {
		case "scale-up":
			s.ScaleUps++
		case "scale-down":
			s.ScaleDowns++
		case "replace":
			s.Replaced++
		}
		if x.Action == "stop" || x.Action == "start" {
			continue // before the load, and after it
		}
		if !seen || x.Ready < s.MinReady {
			s.MinReady = x.Ready
		}
		seen = true
		s.MaxReady = max(s.MaxReady, x.Ready)
		if i+1 < len(d.Decisions) {
			dt := d.Decisions[i+1].Time.Sub(x.Time).Seconds()
			weighted += dt * float64(x.Ready)
			span += dt
		}
	}
	if span > 0 {
		s.MeanReady = weighted / span
	}
}

// WriteDeployments writes each deployment: a summary line, every decision
// that changed something and every replica event in time order, and the
// requests each replica served.
func WriteDeployments(w io.Writer, ds []Deployment) error {
	for _, d := range ds {
		if err := d.WriteText(w); err != nil {
			return err
		}
	}
	return nil
}

// WriteText writes one deployment (see WriteDeployments).
func (d *Deployment) WriteText(w io.Writer) error {
	s := d.Summary
	var start time.Time
	signal := "none"
	if len(d.Decisions) > 0 {
		start = d.Decisions[0].Time
		if d.Decisions[0].Signal != "" {
			signal = d.Decisions[0].Signal
		}
	}
	fmt.Fprintf(w, "\ndeployment of %s: signal %s; %d scale-up(s), %d scale-down(s), %d replaced; ready replicas %d..%d, mean %.2f",
		d.Task, signal, s.ScaleUps, s.ScaleDowns, s.Replaced, s.MinReady, s.MaxReady, s.MeanReady)
	if s.Unrouted > 0 {
		fmt.Fprintf(w, "; %d request(s) found no ready replica", s.Unrouted)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TIME\tWHAT\tREPLICAS (desired/ready/starting/draining)\tDETAIL")
	type line struct {
		t    time.Time
		text string
	}
	var lines []line
	for _, x := range d.Decisions {
		if x.Action == "hold" {
			continue
		}
		lines = append(lines, line{x.Time, fmt.Sprintf("%s\t%d/%d/%d/%d\t%s", x.Action, x.Desired, x.Ready, x.Starting, x.Draining, textCell(x.Reason))})
	}
	for _, e := range d.Events {
		detail := []string{}
		for _, p := range []struct {
			name string
			v    *float64
		}{{"after the decision", e.SinceDecisionMS}, {"after the breach", e.SinceBreachMS}, {"scheduling", e.SchedulingMS}, {"start-up", e.StartupMS}} {
			if p.v != nil {
				detail = append(detail, fmt.Sprintf("%s %s", p.name, (time.Duration(*p.v*float64(time.Millisecond))).Round(10*time.Millisecond)))
			}
		}
		if e.Node != "" {
			detail = append([]string{"on " + e.Node}, detail...)
		}
		if e.Job != "" {
			detail = append([]string{"job " + e.Job}, detail...)
		}
		if e.Reason != "" {
			detail = append(detail, textCell(e.Reason))
		}
		lines = append(lines, line{e.Time, fmt.Sprintf("%s %s\t\t%s", e.Replica, e.Event, strings.Join(detail, ", "))})
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].t.Before(lines[j].t) })
	for _, l := range lines {
		fmt.Fprintf(tw, "  +%.1fs\t%s\n", l.t.Sub(start).Seconds(), l.text)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(d.Replicas) == 0 {
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  REPLICA\tNODE\tJOB\tSENT\tCOMPLETED\tFAILED")
	for _, r := range d.Replicas {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%d\n", r.Replica, dash(r.Node), dash(r.Job), r.Sent, r.Completed, r.Failed)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
