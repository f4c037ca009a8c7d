package results

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/loadgen"
)

// deploymentRun writes what a deployment of task 0 does over 20 s: one
// replica, a scale-up at 5 s (ready at 8 s), a scale-down at 15 s, the
// stop at 20 s; replica intervals every second.
func deploymentRun(t testing.TB, sink Sink, meta loadgen.Summary, start time.Time) {
	t.Helper()
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	dec := func(s float64, action string, desired, ready, starting, draining int64, ratio float64) Point {
		f := map[string]any{"action": action, "reason": action + " because", "desired": desired, "ready": ready,
			"starting": starting, "draining": draining, "signal": "p99", "target": 0.25, "value": ratio * 0.25, "ratio": ratio, "p99_ms": ratio * 250}
		if action == "stop" {
			f["unrouted"] = int64(2)
		}
		return DeploymentPoint(meta, KindDecision, "", at(s), f)
	}
	pts := []Point{dec(0, "start", 1, 0, 1, 0, math.NaN())}
	for s := 1; s < 20; s++ {
		switch {
		case s == 5:
			pts = append(pts, dec(5, "scale-up", 2, 1, 0, 0, 2.5))
		case s < 8 && s > 5:
			pts = append(pts, dec(float64(s), "hold", 2, 1, 1, 0, 3))
		case s == 15:
			pts = append(pts, dec(15, "scale-down", 1, 2, 0, 0, 0.2))
		case s < 8:
			pts = append(pts, dec(float64(s), "hold", 1, 1, 0, 0, math.Inf(1)))
		case s < 15:
			pts = append(pts, dec(float64(s), "hold", 2, 2, 0, 0, 0.8))
		default:
			pts = append(pts, dec(float64(s), "hold", 1, 1, 0, 0, 0.3))
		}
		for _, r := range []string{"r0", "r1"} {
			if r == "r1" && (s < 8 || s > 15) {
				continue
			}
			pts = append(pts, DeploymentPoint(meta, KindReplica, r, at(float64(s)), map[string]any{
				"state": "ready", "sent": int64(10), "completed": int64(9), "failed": int64(1), "node": "node" + r[1:], "job": "10" + r[1:]}))
		}
	}
	pts = append(pts,
		DeploymentPoint(meta, KindEvent, "r1", at(5.1), map[string]any{"event": "submitted", "job": "101"}),
		DeploymentPoint(meta, KindEvent, "r1", at(8), map[string]any{"event": "ready", "job": "101", "node": "node1",
			"since_decision_ms": 2900.0, "since_breach_ms": 4100.0, "scheduling_ms": 2500.0, "startup_ms": 400.0, "since_submit_ms": 2900.0}),
		DeploymentPoint(meta, KindEvent, "r1", at(15), map[string]any{"event": "draining", "reason": "scale-down because"}),
		DeploymentPoint(meta, KindEvent, "r1", at(15.5), map[string]any{"event": "stopped", "reason": "drained in 500ms"}),
		dec(20, "stop", 0, 1, 0, 0, 0.3),
	)
	if err := sink.Write(context.Background(), pts...); err != nil {
		t.Fatal(err)
	}
}

func deploymentMeta(exp string) loadgen.Summary {
	return loadgen.Summary{Experiment: exp, Task: "t000", Workload: "step", Target: "http://deployment", Protocol: "kserve"}
}

// TestDeploymentPoints: the points of a deployment read back as its
// decisions, events and per-replica totals, with a summary (the mean of
// ready replicas weighted by time, between the start and the stop), and
// the text results show prints.
func TestDeploymentPoints(t *testing.T) {
	dir := t.TempDir()
	lf, err := OpenLineFile(filepath.Join(dir, "tasks", "0", layout.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	deploymentRun(t, lf, deploymentMeta("dep"), start)
	lf.Close()
	ds, err := LoadDeployments(context.Background(), NewLocalStore(dir), "dep")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("%d deployments", len(ds))
	}
	d := ds[0]
	if len(d.Decisions) != 21 || d.Decisions[0].Action != "start" || d.Decisions[20].Action != "stop" {
		t.Fatalf("%d decisions: %+v … %+v", len(d.Decisions), d.Decisions[0], d.Decisions[len(d.Decisions)-1])
	}
	if d.Decisions[0].Ratio != nil || d.Decisions[2].Ratio != nil {
		t.Error("a NaN or infinite ratio was stored")
	}
	// Ready: 1 from 1 s to 8 s, 2 to 16 s (the scale-down at 15 s still
	// saw 2), 1 to 20 s: (7 + 16 + 4) / 19.
	want := DeploymentSummary{ScaleUps: 1, ScaleDowns: 1, MinReady: 1, MaxReady: 2, MeanReady: 27.0 / 19, Unrouted: 2}
	if s := d.Summary; s.ScaleUps != want.ScaleUps || s.ScaleDowns != want.ScaleDowns || s.MinReady != 1 || s.MaxReady != 2 ||
		math.Abs(s.MeanReady-want.MeanReady) > 1e-9 || s.Unrouted != 2 {
		t.Errorf("summary %+v, want %+v", s, want)
	}
	if len(d.Replicas) != 2 || d.Replicas[0].Sent != 190 || d.Replicas[1].Sent != 80 || d.Replicas[1].Failed != 8 || d.Replicas[1].Node != "node1" {
		t.Errorf("replicas %+v", d.Replicas)
	}
	if e := d.Events[1]; e.Event != "ready" || e.SinceBreachMS == nil || *e.SinceBreachMS != 4100 || *e.SchedulingMS != 2500 {
		t.Errorf("ready event %+v", e)
	}
	var b bytes.Buffer
	if err := WriteDeployments(&b, ds); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, w := range []string{
		"deployment of t000: signal p99; 1 scale-up(s), 1 scale-down(s), 0 replaced; ready replicas 1..2, mean 1.42; 2 request(s) found no ready replica",
		"+5.0s   scale-up", "r1 ready", "job 101, on node1, after the decision 2.9s, after the breach 4.1s, scheduling 2.5s, start-up 400ms",
		"+15.5s  r1 stopped", "r1       node1  101  80    72         8",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("text lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, " hold ") {
		t.Errorf("holds are listed:\n%s", out)
	}
}

// TestDeploymentPointsFromInfluxDB: InfluxDB gives back the same
// deployment as the local store.
func TestDeploymentPointsFromInfluxDB(t *testing.T) {
	cfg := testDatabase(t)
	dir := t.TempDir()
	lf, err := OpenLineFile(filepath.Join(dir, "tasks", "0", layout.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	inf, err := NewInfluxSink(cfg, filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	sink := Tee(lf, inf)
	deploymentRun(t, sink, deploymentMeta("dep-influx"), time.Now().Add(-time.Hour).Truncate(time.Second))
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	local, err := LoadDeployments(ctx, NewLocalStore(dir), "dep-influx")
	if err != nil {
		t.Fatal(err)
	}
	remote, err := LoadDeployments(ctx, NewInfluxSource(cfg), "dep-influx")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", deref(local)) != fmt.Sprintf("%+v", deref(remote)) {
		t.Errorf("local store:\n%+v\nInfluxDB:\n%+v", deref(local), deref(remote))
	}
}

// deref prints pointers' values, so two loads compare by content.
func deref(ds []Deployment) string {
	var b strings.Builder
	for _, d := range ds {
		WriteDeployments(&b, []Deployment{d})
		fmt.Fprintf(&b, "%+v %d decisions %d events\n", d.Summary, len(d.Decisions), len(d.Events))
		for _, x := range d.Decisions {
			fmt.Fprintf(&b, "%s %s %d %d\n", x.Time.UTC().Format(time.RFC3339Nano), x.Action, x.Ready, x.Desired)
		}
	}
	return b.String()
}

// TestWriteReportDeployment: a report on an experiment with a deployment
// has the replicas-over-time chart beside its latency.
func TestWriteReportDeployment(t *testing.T) {
	dir := t.TempDir()
	lf, err := OpenLineFile(filepath.Join(dir, "tasks", "0", layout.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	meta, snaps := syntheticRun("dep", 0, 100, start, 20)
	meta.Task = "t000"
	writeRun(t, lf, meta, snaps)
	deploymentRun(t, lf, deploymentMeta("dep"), start)
	lf.Close()
	d, err := LoadReport(context.Background(), NewLocalStore(dir), "dep", "local")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Decisions) != 21 {
		t.Fatalf("%d decisions", len(d.Decisions))
	}
	var b bytes.Buffer
	if err := WriteReport(&b, d); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, w := range []string{"Replicas over time beside latency", `"ready t000"`, `"desired t000"`, `"p99 t000"`, `"yAxisIndex":1`, `"step":"end"`} {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q", w)
		}
	}
	if n := strings.Count(out, "echarts.init("); n != 6 {
		t.Errorf("report has %d charts, want 6", n)
	}
	t.Run("chromium", func(t *testing.T) {
		checkInChromium(t, testgate.Chromium(t), d, 6, "report-deployment.png")
	})
}
