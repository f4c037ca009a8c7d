package results

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
)

// syntheticRun builds the snapshots and summary of a load run as loadgen
// would report them: latency grows with the offered rate, per-class
// snapshots, an SLO-factor sweep.
func syntheticRun(exp string, task int, rate float64, start time.Time, seconds int) (loadgen.Summary, []loadgen.Snapshot) {
	q := func(base time.Duration, n int64) loadgen.Quantiles {
		return loadgen.Quantiles{Count: n, Min: base / 2, Mean: base, P25: base * 8 / 10, P50: base, P75: base * 12 / 10,
			P90: base * 15 / 10, P95: base * 18 / 10, P99: base * 25 / 10, P999: base * 4, Max: base * 5}
	}
	meta := loadgen.Summary{Experiment: exp, Task: fmt.Sprintf("t%03d-rate=%g", task, rate), Workload: "poisson",
		Target: "http://127.0.0.1:8000/v2/models/resnet50/infer", Protocol: "kserve",
		Tags: map[string]string{"rate": fmt.Sprintf("%g", rate)}, Status: loadgen.StatusCompleted,
		Started: start, Ended: start.Add(time.Duration(seconds) * time.Second)}
	base := time.Duration(float64(2*time.Millisecond) * (1 + math.Pow(rate/400, 3)))
	var snaps []loadgen.Snapshot
	total := loadgen.Snapshot{Interval: -1, Start: meta.Started, End: meta.Ended}
	for i := 0; i < seconds; i++ {
		n := int64(rate)
		factor := 2 + float64(i%5)
		met := int64(float64(n) * math.Min(1, 0.5+factor/10) * (1 - rate/2000))
		st := start.Add(time.Duration(i) * time.Second)
		s := loadgen.Snapshot{Interval: i, Start: st, End: st.Add(time.Second), SLOFactor: factor,
			Offered: n, Sent: n, Completed: n - 1, Errors: 1, SLOMet: met,
			OfferedRate: rate, AchievedRate: float64(n - 1), Goodput: float64(met),
			Latency: q(base+time.Duration(i)*50*time.Microsecond, n-1), Service: q(base*9/10, n-1), Lateness: q(20*time.Microsecond, n)}
		snaps = append(snaps, s)
		for _, class := range []string{"fg", "bg"} {
			c := s
			c.Class = class
			c.Offered, c.Completed = n/2, (n-1)/2
			snaps = append(snaps, c)
		}
		total.Offered += s.Offered
		total.Sent += s.Sent
		total.Completed += s.Completed
		total.Errors += s.Errors
		total.SLOMet += s.SLOMet
	}
	total.OfferedRate, total.AchievedRate = rate, rate-1
	total.Goodput = float64(total.SLOMet) / float64(seconds)
	total.Latency, total.Service, total.Lateness = q(base, total.Completed), q(base*9/10, total.Completed), q(20*time.Microsecond, total.Sent)
	meta.Total = total
	for f := 2; f <= 6; f++ {
		st := total
		st.SLOFactor = float64(f)
		st.SLOMet = int64(float64(total.Offered) * math.Min(1, 0.5+float64(f)/10) * (1 - rate/2000))
		meta.Steps = append(meta.Steps, st)
	}
	return meta, snaps
}

// writeRun writes a run's points through sink the way loadgen run does.
func writeRun(t testing.TB, sink Sink, meta loadgen.Summary, snaps []loadgen.Snapshot) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	for _, s := range snaps {
		pts := SnapshotPoints(meta, s)
		n += len(pts)
		if err := sink.Write(ctx, pts...); err != nil {
			t.Fatal(err)
		}
	}
	pts := SummaryPoints(meta)
	n += len(pts)
	if err := sink.Write(ctx, pts...); err != nil {
		t.Fatal(err)
	}
	return n
}

// The InfluxDB source returns exactly the points of the local store, so
// show and compare print the same on either.
func TestInfluxSourceMatchesLocalStore(t *testing.T) {
	cfg := testDatabase(t)
	expDir := t.TempDir()
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	for i, rate := range []float64{100, 300, 500} {
		taskDir := filepath.Join(expDir, "tasks", fmt.Sprint(i))
		local, err := OpenLineFile(filepath.Join(taskDir, layout.MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		inf, err := NewInfluxSink(cfg, filepath.Join(taskDir, "influx-spool"))
		if err != nil {
			t.Fatal(err)
		}
		sink := Tee(local, inf)
		meta, snaps := syntheticRun("expA", i, rate, start.Add(time.Duration(i)*time.Minute), 20)
		writeRun(t, sink, meta, snaps)
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Another experiment in the same bucket must not leak into expA's results.
	other, err := NewInfluxSink(cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	meta, snaps := syntheticRun("expB", 0, 200, start, 5)
	writeRun(t, other, meta, snaps)
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	localSrc, influxSrc := NewLocalStore(expDir), NewInfluxSource(cfg)
	queries := []Query{
		{Experiments: []string{"expA"}, Measurement: MeasServingSummary},
		{Experiments: []string{"expA"}, Measurement: MeasServing},
		{Experiments: []string{"expA"}, Measurement: MeasServing, Tags: map[string]string{TagClass: "fg", TagTask: "t001-rate=300"}},
		{Experiments: []string{"expA"}, Measurement: MeasServing, Start: start.Add(5 * time.Second), End: start.Add(10 * time.Second)},
	}
	for _, q := range queries {
		want, err := localSrc.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		got, err := influxSrc.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 {
			t.Fatalf("query %+v: local store returned nothing", q)
		}
		sortPoints(want)
		if len(got) != len(want) {
			t.Fatalf("query %+v: influx %d points, local %d", q, len(got), len(want))
		}
		for i := range want {
			if !pointsEqual(got[i], want[i]) {
				t.Fatalf("query %+v: point %d differs:\ninflux %+v\nlocal  %+v", q, i, got[i], want[i])
			}
			if !q.Match(got[i]) {
				t.Fatalf("influx returned a point the query excludes: %+v", got[i])
			}
		}
	}
	// The review model is the same, hence every table.
	a, err := Load(ctx, localSrc, "expA")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(ctx, influxSrc, "expA")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("review models differ:\nlocal  %+v\ninflux %+v", a, b)
	}
	if len(a.Tasks) != 3 || len(a.Steps) != 15 {
		t.Fatalf("got %d task rows, %d step rows", len(a.Tasks), len(a.Steps))
	}
}

func pointsEqual(a, b Point) bool {
	return a.Measurement == b.Measurement && a.Time.Equal(b.Time) && reflect.DeepEqual(a.Tags, b.Tags) && reflect.DeepEqual(a.Fields, b.Fields)
}

func TestFluxQueryEscapes(t *testing.T) {
	q := FluxQuery(`db"x`, Query{Experiments: []string{`a") or true or ("`}, Tags: map[string]string{"task": `${x}`}})
	for _, want := range []string{`from(bucket: "db\"x")`, `r["experiment"] == "a\") or true or (\""`, `r["task"] == "\${x}"`} {
		if !strings.Contains(q, want) {
			t.Errorf("query lacks %s:\n%s", want, q)
		}
	}
}
