package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/results"
)

// Replica states, as the deployment sees them.
const (
	stateStarting = "starting" // submitted or started, not answering yet
	stateReady    = "ready"    // in the balancer's rotation
	stateDraining = "draining" // out of rotation, finishing its requests
	stateStopped  = "stopped"  // gone
)

// replicaRun is one replica of the deployment.
type replicaRun struct {
	name  string
	dir   layout.Replica
	job   string
	state string
	node  string
	url   string
	// Timeline: submitted, its job running (Slurm), answering.
	submitted, running, ready time.Time
	// decided is when the decision that asked for it was made, breach when
	// the signal first went over the threshold before it (zero: none).
	decided, breach time.Time
	byDecision      bool // started by a scale-up or replacement (not the first ones)
	drainSince      time.Time
	probeFails      int
}

// repStats are one replica's requests over the current interval.
type repStats struct {
	finished, completed, failed int64
	latency                     Hist
}

// Deployment keeps one task's replicas running while its load runs: it
// starts them, waits for them to answer, puts them into the balancer, acts
// on the controller's decisions once per interval, replaces lost ones, and
// stops them all at the end. Every decision, replica interval and replica
// event is a point of measurement "deployment" in the task's sink.
type Deployment struct {
	plan     *Plan
	expDir   string
	task     layout.Task
	taskIdx  int
	launcher launcher
	target   *loadgen.Replicas
	ctrl     *Controller
	sink     results.Sink
	meta     loadgen.Summary
	llm      loadgen.LLMSLO
	log      *slog.Logger
	probe    *http.Client
	// drain bounds a drain: no request takes longer than its timeout.
	drain time.Duration
	// stopping counts replicas being stopped in the background.
	stopping sync.WaitGroup

	mu       sync.Mutex // guards what the request path writes: cur, per, unrouted
	cur      Sample
	per      map[string]*repStats
	unrouted int64

	// Owned by the goroutine that calls tick.
	reps          []*replicaRun
	next          int
	startFailures int
	breach        time.Time
	lastSent      int64
	lastPoll      time.Time
	pollErr       error
}

// maxStartFailures: after this many replicas in a row failed to start, the
// deployment stops starting more (each failure is an event with its log).
const maxStartFailures = 3

func (d *Deployment) newReplica(now time.Time) *replicaRun {
	name := "r" + strconv.Itoa(d.next)
	d.next++
	r := &replicaRun{name: name, dir: d.task.Replica(name), state: stateStarting, submitted: now}
	d.reps = append(d.reps, r)
	return r
}

// observe is the balancer's report of one request (any goroutine).
func (d *Deployment) observe(replica string, res *loadgen.Result) {
	met := res.Outcome == loadgen.OutcomeOK && (res.Deadline == 0 || res.Done <= res.Deadline)
	if met && res.Streamed {
		if d.llm.TTFT > 0 && (len(res.Chunks) == 0 || res.TTFT() > d.llm.TTFT) ||
			d.llm.TPOT > 0 && res.TPOT() > d.llm.TPOT || d.llm.E2EL > 0 && res.E2EL() > d.llm.E2EL {
			met = false
		}
	}
	lat := res.Done - res.Arrival.At
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cur.Finished++
	if !met {
		d.cur.Missed++
	}
	if replica == "" {
		d.unrouted++
		return
	}
	st := d.per[replica]
	if st == nil {
		st = &repStats{}
		d.per[replica] = st
	}
	st.finished++
	if res.Outcome == loadgen.OutcomeOK {
		d.cur.Latency.Record(lat)
		st.completed++
		st.latency.Record(lat)
	} else {
		st.failed++
	}
}

// takeSample ends the interval: its sample, and each replica's requests.
func (d *Deployment) takeSample() (Sample, map[string]*repStats, int64) {
	d.mu.Lock()
	s, per, unrouted := d.cur, d.per, d.unrouted
	d.cur, d.per, d.unrouted = Sample{}, map[string]*repStats{}, 0
	d.mu.Unlock()
	sent := d.target.Requests()
	s.Sent, d.lastSent = sent-d.lastSent, sent
	for _, st := range d.target.States() {
		s.InFlight += st.InFlight
	}
	return s, per, unrouted
}

func (d *Deployment) write(pts ...results.Point) {
	if err := d.sink.Write(context.Background(), pts...); err != nil {
		d.log.Warn("deployment points not written", "err", err)
	}
}

func ms(t time.Duration) float64 { return float64(t) / float64(time.Millisecond) }

// event writes a replica event point.
func (d *Deployment) event(now time.Time, r *replicaRun, event, reason string, extra map[string]any) {
	f := map[string]any{"event": event}
	if r.job != "" {
		f["job"] = r.job
	}
	if r.node != "" {
		f["node"] = r.node
	}
	if r.url != "" {
		f["url"] = r.url
	}
	if reason != "" {
		f["reason"] = reason
	}
	for k, v := range extra {
		f[k] = v
	}
	attrs := []any{"replica", r.name, "job", r.job}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	d.log.Info("replica "+event, attrs...)
	d.write(results.DeploymentPoint(d.meta, results.KindEvent, r.name, now, f))
}

// launch starts n replicas for a decision made at now.
func (d *Deployment) launch(ctx context.Context, now time.Time, n int, byDecision bool) {
	for range n {
		if d.startFailures >= maxStartFailures {
			d.log.Error("not starting more replicas", "failed in a row", d.startFailures)
			return
		}
		r := d.newReplica(time.Now())
		r.decided, r.breach, r.byDecision = now, d.breach, byDecision
		// A resumed task reuses replica names: the address an earlier
		// run's replica published is not this one's.
		if err := os.Remove(r.dir.Address()); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("remove an earlier address", "replica", r.name, "err", err)
		}
		if err := d.launcher.start(ctx, r); err != nil {
			r.state = stateStopped
			d.startFailures++
			d.event(time.Now(), r, "failed", err.Error(), nil)
			continue
		}
		d.event(r.submitted, r, "submitted", "", nil)
	}
}

// live returns the replicas not stopped.
func (d *Deployment) live() []*replicaRun {
	var out []*replicaRun
	for _, r := range d.reps {
		if r.state != stateStopped {
			out = append(out, r)
		}
	}
	return out
}

func (d *Deployment) counts() Counts {
	var c Counts
	for _, r := range d.reps {
		switch r.state {
		case stateStarting:
			c.Starting++
		case stateReady:
			c.Ready++
		case stateDraining:
			c.Draining++
		}
	}
	return c
}

// stopReplica takes one replica out of the balancer and stops its job in
// the background (a Slurm job takes seconds to leave the queue; the ticks
// go on meanwhile); the event is written once it is gone.
func (d *Deployment) stopReplica(ctx context.Context, r *replicaRun, event, reason string) {
	d.target.Remove(r.name)
	r.state = stateStopped
	d.stopping.Add(1)
	go func() {
		defer d.stopping.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := d.launcher.stop(sctx, []*replicaRun{r}); err != nil {
			d.log.Warn("stop replica", "replica", r.name, "err", err)
		}
		d.event(time.Now(), r, event, reason, nil)
	}()
}

// readAddress reads the address a starting replica published.
func readAddress(r *replicaRun) (Address, bool) {
	b, err := limitio.ReadFile(r.dir.Address(), limitio.Small.As("replica address"))
	if err != nil {
		return Address{}, false
	}
	var a Address
	if json.Unmarshal(b, &a) != nil || a.URL == "" {
		return Address{}, false
	}
	return a, true
}

// answers reports whether the replica's server answers its readiness
// check.
func (d *Deployment) answers(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(url, "/")+d.plan.ReadyPath, nil)
	if err != nil {
		return false
	}
	resp, err := d.probe.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return d.plan.ReadyAny || resp.StatusCode/100 == 2
}

// refresh brings the replicas up to date: jobs that started or ended,
// addresses published, servers that answer, drains that finished, ejected
// replicas that answer again (or are lost).
func (d *Deployment) refresh(ctx context.Context, now time.Time) {
	live := d.live()
	// One launcher poll (one squeue) a second at most.
	if now.Sub(d.lastPoll) >= time.Second || d.lastPoll.IsZero() {
		d.lastPoll = now
		st, err := d.launcher.poll(ctx, live)
		if err != nil {
			if d.pollErr == nil {
				d.log.Warn("poll replica jobs", "err", err)
			}
			d.pollErr = err
		} else {
			d.pollErr = nil
			for _, r := range live {
				js, ok := st[r.name]
				if !ok {
					continue
				}
				if js.node != "" {
					r.node = js.node
				}
				switch {
				case js.gone && r.state == stateDraining:
					// Cancelled below once drained anyway.
				case js.gone:
					d.target.Remove(r.name)
					event := "lost"
					if r.state == stateStarting {
						event = "failed"
						d.startFailures++
					}
					r.state = stateStopped
					d.event(now, r, event, js.why+" (log: "+r.dir.Log()+")", nil)
				}
			}
		}
	}
	states := map[string]loadgen.ReplicaState{}
	for _, s := range d.target.States() {
		states[s.Name] = s
	}
	d.refreshStarting(ctx, now)
	for _, r := range d.live() {
		switch r.state {
		case stateReady:
			if !states[r.name].Ejected {
				r.probeFails = 0
				continue
			}
			if d.answers(ctx, r.url) {
				d.target.Admit(r.name)
				r.probeFails = 0
				d.event(now, r, "admitted", "answers again after a failed request", nil)
				continue
			}
			if r.probeFails++; r.probeFails >= 3 {
				d.stopReplica(ctx, r, "lost", "not answering after a failed request")
			}
		}
	}
}

// refreshStarting looks at the starting replicas — an address published, a
// server that answers (into the balancer), or too long without either —
// and at the draining ones: drained (or out of time), they are stopped.
func (d *Deployment) refreshStarting(ctx context.Context, now time.Time) {
	for _, r := range d.live() {
		switch r.state {
		case stateDraining:
			if d.target.InFlight(r.name) == 0 || now.Sub(r.drainSince) > d.drain {
				d.stopReplica(ctx, r, "stopped", fmt.Sprintf("drained in %s", now.Sub(r.drainSince).Round(time.Millisecond)))
			}
		case stateStarting:
			if r.url == "" {
				if a, ok := readAddress(r); ok {
					// The replica runs: its job was scheduled and started.
					r.url, r.running = a.URL, a.Started
					if a.Node != "" {
						r.node = a.Node
					}
				}
			}
			if r.url != "" && d.answers(ctx, r.url) {
				if err := d.target.Add(r.name, r.url); err != nil {
					d.stopReplica(ctx, r, "failed", err.Error())
					continue
				}
				r.state, r.ready = stateReady, now
				d.startFailures = 0
				// From submission to the replica's start (Slurm's
				// scheduling and the job's launch; a process's exec), and
				// from there to its server answering.
				if r.running.Before(r.submitted) || r.running.After(now) {
					r.running = r.submitted // another node's clock; no breakdown
				}
				extra := map[string]any{"since_submit_ms": ms(now.Sub(r.submitted)), "startup_ms": ms(now.Sub(r.running))}
				if d.plan.Executor == "slurm" {
					extra["scheduling_ms"] = ms(r.running.Sub(r.submitted))
				}
				if r.byDecision {
					extra["since_decision_ms"] = ms(now.Sub(r.decided))
					if !r.breach.IsZero() {
						extra["since_breach_ms"] = ms(now.Sub(r.breach))
					}
					d.ctrl.Ready(now)
				}
				d.event(now, r, "ready", "", extra)
				continue
			}
			if now.Sub(r.submitted) > d.plan.ReadyTimeout.D() {
				d.startFailures++
				d.stopReplica(ctx, r, "failed", fmt.Sprintf("not ready within ready_timeout %s (log: %s)", d.plan.ReadyTimeout, r.dir.Log()))
			}
		}
	}
}

// act carries out a decision: start replicas, or drain one.
func (d *Deployment) act(ctx context.Context, now time.Time, dec Decision) {
	switch dec.Action {
	case ActionScaleUp:
		d.launch(ctx, now, dec.Add, true)
	case ActionReplace:
		d.launch(ctx, now, dec.Replace, true)
	case ActionScaleDown:
		// The ready replica with the fewest requests in flight drains
		// fastest; among equals, the newest.
		var pick *replicaRun
		var best int64
		for _, r := range d.reps {
			if r.state != stateReady {
				continue
			}
			n := d.target.InFlight(r.name)
			if pick == nil || n <= best {
				pick, best = r, n
			}
		}
		if pick == nil {
			return
		}
		d.target.Drain(pick.name)
		pick.state, pick.drainSince = stateDraining, now
		d.event(now, pick, "draining", dec.Reason, map[string]any{"in_flight": best})
	}
}

// tick is one interval: lease, replicas, sample, decision, action, points.
func (d *Deployment) tick(ctx context.Context, now time.Time) Decision {
	if err := renewLease(d.task.Lease(), now); err != nil {
		d.log.Warn("renew the replicas' lease", "err", err)
	}
	d.refresh(ctx, now)
	s, per, unrouted := d.takeSample()
	dec := d.ctrl.Tick(now, &s, d.counts())
	switch {
	case dec.OK && dec.Ratio > d.plan.Scale.UpAt:
		if d.breach.IsZero() {
			d.breach = now
		}
	case dec.OK:
		d.breach = time.Time{}
	}
	if d.startFailures >= maxStartFailures && (dec.Add > 0 || dec.Replace > 0) {
		dec.Reason += fmt.Sprintf("; not starting: the last %d replicas failed to start", d.startFailures)
	}
	d.act(ctx, now, dec)
	d.writeTick(now, dec, per, unrouted)
	return dec
}

func (d *Deployment) writeTick(now time.Time, dec Decision, per map[string]*repStats, unrouted int64) {
	f := map[string]any{
		"action": dec.Action, "reason": dec.Reason, "desired": int64(dec.Desired),
		"ready": int64(dec.Ready), "starting": int64(dec.Starting), "draining": int64(dec.Draining),
		"offered_rate": dec.OfferedRate, "inflight_per_replica": dec.InFlightPer, "unrouted": unrouted,
	}
	d.signalField(f)
	if dec.OK {
		f["value"], f["ratio"] = dec.Value, dec.Ratio
	}
	if dec.P99 > 0 {
		f["p99_ms"] = ms(dec.P99)
	}
	if dec.Attainment > 0 {
		f["attainment"] = dec.Attainment
	}
	if dec.Capacity > 0 {
		f["capacity"] = dec.Capacity
	}
	d.write(append([]results.Point{results.DeploymentPoint(d.meta, results.KindDecision, "", now, f)}, d.replicaPoints(now, per)...)...)
}

// replicaPoints are each replica's requests over the interval that ends now.
func (d *Deployment) replicaPoints(now time.Time, per map[string]*repStats) []results.Point {
	var pts []results.Point
	inflight := map[string]int64{}
	for _, s := range d.target.States() {
		inflight[s.Name] = s.InFlight
	}
	for _, r := range d.reps {
		st := per[r.name]
		if r.state == stateStopped && st == nil {
			continue
		}
		if st == nil {
			st = &repStats{}
		}
		rf := map[string]any{"state": r.state, "sent": st.finished, "completed": st.completed, "failed": st.failed, "in_flight": inflight[r.name]}
		if r.node != "" {
			rf["node"] = r.node
		}
		if r.job != "" {
			rf["job"] = r.job
		}
		if st.latency.Count() > 0 {
			rf["latency_p50_ms"] = ms(st.latency.Quantile(0.5))
			rf["latency_p99_ms"] = ms(st.latency.Quantile(0.99))
		}
		pts = append(pts, results.DeploymentPoint(d.meta, results.KindReplica, r.name, now, rf))
	}
	return pts
}

// signalField adds the signal and its target to a decision's fields.
func (d *Deployment) signalField(f map[string]any) map[string]any {
	if d.plan.Scale.Signal != "" {
		f["signal"] = d.plan.Scale.Signal
		f["target"] = d.plan.Scale.Target
	}
	return f
}

// start launches the first replicas and waits until every one answers.
func (d *Deployment) start(ctx context.Context, log io.Writer) error {
	now := time.Now()
	if err := renewLease(d.task.Lease(), now); err != nil {
		return fmt.Errorf("deployment: %w", err)
	}
	n := d.plan.Replicas
	d.write(results.DeploymentPoint(d.meta, results.KindDecision, "", now, d.signalField(map[string]any{
		"action": ActionStart, "reason": fmt.Sprintf("start %d replica(s) on %s", n, d.plan.Executor),
		"desired": int64(n), "ready": int64(0), "starting": int64(n), "draining": int64(0),
	})))
	d.launch(ctx, now, n, false)
	fmt.Fprintf(log, "deployment: %d replica(s) of %s on %s; waiting for them to answer\n", n, strings.Join(d.plan.Server, " "), d.plan.Executor)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		c := d.counts()
		if c.Ready == n {
			return nil
		}
		if c.Ready+c.Starting < n {
			for _, r := range d.reps {
				if r.state == stateStopped {
					return fmt.Errorf("replica %s did not start; see %s", r.name, r.dir.Log())
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now = <-t.C:
		}
		if err := renewLease(d.task.Lease(), now); err != nil {
			return fmt.Errorf("deployment: %w", err)
		}
		d.refresh(ctx, now)
	}
}

// startingPoll is how often starting replicas are looked at between
// ticks: a replica goes into the balancer this soon after it answers.
const startingPoll = 200 * time.Millisecond

// run ticks every interval until ctx ends, and looks at starting replicas
// every startingPoll in between.
func (d *Deployment) run(ctx context.Context) {
	t := time.NewTicker(d.plan.Scale.Interval.D())
	defer t.Stop()
	fast := time.NewTicker(startingPoll)
	defer fast.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.tick(ctx, now)
		case now := <-fast.C:
			if c := d.counts(); c.Starting+c.Draining > 0 {
				d.refreshStarting(ctx, now)
			}
		}
	}
}

// stop ends every replica (their jobs gone from the queue before it
// returns) and writes the last decision.
func (d *Deployment) stop(reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	live := d.live()
	c := d.counts()
	now := time.Now()
	// The requests since the last tick.
	_, per, unrouted := d.takeSample()
	d.write(d.replicaPoints(now, per)...)
	d.write(results.DeploymentPoint(d.meta, results.KindDecision, "", now, d.signalField(map[string]any{
		"action": ActionStop, "reason": reason, "desired": int64(0), "ready": int64(c.Ready),
		"starting": int64(c.Starting), "draining": int64(c.Draining), "unrouted": unrouted,
	})))
	for _, r := range live {
		d.target.Remove(r.name)
	}
	if err := d.launcher.stop(ctx, live); err != nil {
		d.log.Error("stop the replicas", "err", err)
	}
	d.stopping.Wait()
	sort.Slice(live, func(i, j int) bool { return live[i].name < live[j].name })
	for _, r := range live {
		r.state = stateStopped
		d.event(time.Now(), r, "stopped", reason, nil)
	}
}
