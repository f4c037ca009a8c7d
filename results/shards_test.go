package results

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
)

// shardedRun records the same random requests once in one recorder (the
// unsharded reference) and dealt round-robin over k shard recorders that
// keep their histograms, as the shards of a sharded task do. It returns the
// reference's points and each shard's points (intervals, and its summary
// unless the shard is in dead); failed shards get that status.
func shardedRun(t *testing.T, k int, dead, failed map[int]bool) (ref []Point, shards [][]Point) {
	t.Helper()
	t0 := time.Unix(1_900_000_000, 0).UTC()
	rng := rand.New(rand.NewPCG(uint64(k), 3))
	var refIvl []loadgen.Snapshot
	one := loadgen.NewRecorder(t0, time.Second, loadgen.LLMSLO{}, func(s loadgen.Snapshot) { refIvl = append(refIvl, s) })
	ivl := make([][]loadgen.Snapshot, k)
	recs := make([]*loadgen.Recorder, k)
	for s := range recs {
		recs[s] = loadgen.NewRecorder(t0, time.Second, loadgen.LLMSLO{}, func(sn loadgen.Snapshot) { ivl[s] = append(ivl[s], sn) })
		recs[s].KeepHDR = true
	}
	const n, dur = 30000, 3 * time.Second
	for i := range n {
		at := time.Duration(i) * dur / n
		a := loadgen.Arrival{At: at, Seq: int64(i), SLOFactor: float64(1 + int(at/time.Second))}
		svc := time.Duration(rng.ExpFloat64()*2e6) + 100*time.Microsecond
		if rng.IntN(200) == 0 {
			svc *= 300
		}
		res := &loadgen.Result{Arrival: a, Sent: at + time.Duration(rng.IntN(50000)), Deadline: at + 5*time.Millisecond}
		res.Done = res.Sent + svc
		if rng.IntN(100) == 0 {
			res.Outcome = loadgen.OutcomeTimeout
		}
		for _, r := range []*loadgen.Recorder{one, recs[i%k]} {
			r.Offered(a)
			r.Record(res)
		}
	}
	summary := func(r *loadgen.Recorder, sh *loadgen.ShardInfo) loadgen.Summary {
		r.Flush(dur, true, dur)
		s := loadgen.Summary{Experiment: "e", Task: "t000", Workload: "poisson", Target: "http://127.0.0.1:8000", Protocol: "kserve",
			Status: loadgen.StatusCompleted, Started: t0, Ended: t0.Add(dur + time.Second), Shard: sh}
		s.Total, s.Classes, s.Steps = r.Totals(dur)
		return s
	}
	rs := summary(one, nil)
	ref = SummaryPoints(rs)
	for _, sn := range refIvl {
		ref = append(ref, SnapshotPoints(rs, sn)...)
	}
	for s := range k {
		sh := &loadgen.ShardInfo{Index: s, Count: k, Attempt: "4242.0", Host: fmt.Sprintf("node%d", s+1), Start: t0}
		sum := summary(recs[s], sh)
		if failed[s] {
			sum.Status, sum.Error = loadgen.StatusFailed, "boom"
		}
		var pts []Point
		for _, sn := range ivl[s] {
			pts = append(pts, SnapshotPoints(sum, sn)...)
		}
		if !dead[s] {
			pts = append(pts, SummaryPoints(sum)...)
		}
		shards = append(shards, pts)
	}
	return ref, shards
}

func only(pts []Point, meas, breakdown string) []Point {
	var out []Point
	for _, p := range pts {
		if p.Measurement == meas && p.Tags[TagBreakdown] == breakdown {
			out = append(out, p)
		}
	}
	return out
}

// sameDists fails unless got has exactly want's distribution fields.
func sameDists(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		for _, d := range loadgen.Dists {
			if strings.HasPrefix(k, d+"_") && !strings.Contains(k, "_hdr") && got[k] != w {
				t.Errorf("%s: %s merged %v, one generator %v", what, k, got[k], w)
			}
		}
	}
}

// TestMergeShardsIsOneGenerator: the shards' points merged are the
// unsharded run's — counts, and every percentile of every distribution of
// the total, of each SLO step and of each interval — and a row built from
// them says completed with the same numbers.
func TestMergeShardsIsOneGenerator(t *testing.T) {
	t.Parallel()
	for _, k := range []int{2, 4, 5} {
		ref, shards := shardedRun(t, k, nil, nil)
		var all []Point
		for _, p := range shards {
			all = append(all, p...)
		}
		merged := MergeShards(all)
		for _, p := range merged {
			if _, ok := p.Tags[TagShard]; ok {
				t.Fatalf("k=%d: a merged point keeps its shard tag: %v", k, p.Tags)
			}
		}
		for _, c := range []struct{ meas, breakdown string }{
			{MeasServingSummary, BreakdownTotal}, {MeasServingSummary, BreakdownStep}, {MeasServing, ""},
		} {
			got, want := only(merged, c.meas, c.breakdown), only(ref, c.meas, c.breakdown)
			if len(got) != len(want) || len(want) == 0 {
				t.Fatalf("k=%d %s %s: %d merged points, %d unsharded", k, c.meas, c.breakdown, len(got), len(want))
			}
			for i := range want {
				what := fmt.Sprintf("k=%d %s %s #%d", k, c.meas, c.breakdown, i)
				if !got[i].Time.Equal(want[i].Time) || got[i].Tags[TagStep] != want[i].Tags[TagStep] {
					t.Errorf("%s: time %v step %q, unsharded %v step %q", what, got[i].Time, got[i].Tags[TagStep], want[i].Time, want[i].Tags[TagStep])
				}
				for _, f := range append(summedFields, "slo_attainment", "offered_rate", "interval_s") {
					if g, w := got[i].Fields[f], want[i].Fields[f]; fmt.Sprintf("%.9g", g) != fmt.Sprintf("%.9g", w) {
						t.Errorf("%s: %s merged %v, unsharded %v", what, f, g, w)
					}
				}
				sameDists(t, what, got[i].Fields, want[i].Fields)
			}
		}
		res := Build(merged, nil)
		want := Build(ref, nil)
		if len(res.Tasks) != 1 || res.Tasks[0].Status != loadgen.StatusCompleted || *res.Tasks[0].Latency != *want.Tasks[0].Latency ||
			res.Tasks[0].Offered != want.Tasks[0].Offered {
			t.Errorf("k=%d: merged row %+v, unsharded %+v", k, res.Tasks, want.Tasks)
		}
	}
}

// TestMergeShardsNamesTheLost: a shard that wrote no summary (killed) and
// one that failed make the task failed, each named; the others' requests
// are kept.
func TestMergeShardsNamesTheLost(t *testing.T) {
	t.Parallel()
	_, shards := shardedRun(t, 4, map[int]bool{2: true}, map[int]bool{1: true})
	var all []Point
	for _, p := range shards {
		all = append(all, p...)
	}
	res := Build(MergeShards(all), nil)
	if len(res.Tasks) != 1 {
		t.Fatalf("%d rows", len(res.Tasks))
	}
	row := res.Tasks[0]
	if row.Status != loadgen.StatusFailed || !strings.Contains(row.Error, "shard 1 of 4 (node2) failed: boom") ||
		!strings.Contains(row.Error, "shard 2 of 4 wrote no summary") {
		t.Errorf("status %q, error %q", row.Status, row.Error)
	}
	if row.Offered != 3*30000/4 || row.Latency == nil {
		t.Errorf("kept %d offered (want the three remaining shards' 22500), latency %v", row.Offered, row.Latency)
	}
}

// TestHDRFieldChunks: an encoded histogram longer than a field may hold is
// split over X_hdr, X_hdr_1, … and survives the line-protocol round trip.
func TestHDRFieldChunks(t *testing.T) {
	t.Parallel()
	enc := strings.Repeat("QUJD", 40000) // 160,000 bytes
	f := map[string]any{}
	putHDR(f, "latency", enc)
	if len(f) != 3 || len(f["latency_hdr"].(string)) != HDRChunk || f["latency_hdr_2"] == nil {
		t.Fatalf("fields %d", len(f))
	}
	line, err := AppendLine(nil, Point{Measurement: MeasServing, Tags: map[string]string{"task": "t"}, Fields: f, Time: time.Unix(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseLine(line)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := getHDR(p.Fields, "latency"); !ok || got != enc {
		t.Errorf("reassembled %d bytes, want %d", len(got), len(enc))
	}
	if _, ok := getHDR(p.Fields, "service"); ok {
		t.Error("a histogram that was never stored is found")
	}
}

// TestShardsThroughStores writes the shards' points where a sharded task's
// shards write them — tasks/0/shards/<s>/metrics.lp, and the real InfluxDB
// — and reviews them through each source: the same merged row as the
// unsharded run's.
func TestShardsThroughStores(t *testing.T) {
	ref, shards := shardedRun(t, 3, nil, nil)
	want := Build(ref, nil).Tasks[0]
	check := func(name string, src Source) {
		t.Helper()
		res, err := Load(context.Background(), src, "e")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(res.Tasks) != 1 || len(res.Steps) != len(Build(ref, nil).Steps) {
			t.Fatalf("%s: %d task rows, %d steps", name, len(res.Tasks), len(res.Steps))
		}
		got := res.Tasks[0]
		if got.Status != loadgen.StatusCompleted || got.Offered != want.Offered || *got.Latency != *want.Latency || *got.Service != *want.Service {
			t.Errorf("%s: row %+v %+v, unsharded %+v %+v", name, got, got.Latency, want, want.Latency)
		}
	}
	dir := t.TempDir()
	for s, pts := range shards {
		lf, err := OpenLineFile(layout.Experiment(dir).Task(0).Shard(s).Metrics())
		if err != nil {
			t.Fatal(err)
		}
		if err := lf.Write(context.Background(), pts...); err != nil {
			t.Fatal(err)
		}
		if err := lf.Close(); err != nil {
			t.Fatal(err)
		}
	}
	check("local store", NewLocalStore(dir))

	cfg := testDatabase(t)
	for s, pts := range shards {
		sink, err := NewInfluxSink(cfg, filepath.Join(t.TempDir(), fmt.Sprint(s)))
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Write(context.Background(), pts...); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
	}
	check("influxdb", NewInfluxSource(cfg))
}
