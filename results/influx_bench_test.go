package results

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
)

// Benchmarks against a real InfluxDB (GPUORCH_TEST_INFLUX_URL); see
// docs/benchmarks.md for the commands and figures.

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// requestPoint is a compact point, the shape of per-request points: a few
// tags, a few fields.
func requestPoint(i int, base time.Time) Point {
	return Point{
		Measurement: "bench_request",
		Tags:        map[string]string{TagExperiment: "bench", TagTask: "t" + strconv.Itoa(i%8), TagModel: "resnet50"},
		Fields:      map[string]any{"latency_ms": float64(i%1000) * 0.37, "status": int64(200), "tokens": int64(i % 512)},
		Time:        base.Add(time.Duration(i) * time.Microsecond),
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchSink(b *testing.B, gen func(i int, base time.Time) Point, perCall int) {
	cfg := testDatabase(b)
	cfg.BatchSize = envInt("GPUORCH_BENCH_BATCH", 5000)
	cfg.Concurrency = envInt("GPUORCH_BENCH_CONCURRENCY", 2)
	cfg.QueueBatches = 8
	cfg.Timeout = 30 * time.Second
	s, err := NewInfluxSink(cfg, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	base := time.Now().Add(-24 * time.Hour)
	buf := make([]Point, perCall)
	ctx := context.Background()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for i := 0; i < b.N; i += perCall {
		n := min(perCall, b.N-i)
		for j := 0; j < n; j++ {
			buf[j] = gen(i+j, base)
		}
		if err := s.Write(ctx, buf[:n]...); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	// gpuorch's own CPU per point (encode, batch, HTTP): what the sink could
	// sustain per core if InfluxDB were not on the same cores.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "client-cpu-ns/point")
	st := s.Stats()
	b.ReportMetric(float64(b.N)/el.Seconds(), "points/s")
	b.ReportMetric(float64(st.Spooled), "spooled")
	if st.Written != int64(b.N) {
		b.Fatalf("stats %+v, want %d written", st, b.N)
	}
}

// BenchmarkInfluxSinkRequestPoints: compact points (3 tags, 3 fields), the
// throughput target (>= 200,000 points/s). Use -benchtime 2000000x.
func BenchmarkInfluxSinkRequestPoints(b *testing.B) {
	benchSink(b, requestPoint, 1000)
}

// BenchmarkInfluxSinkSnapshotPoints: full serving snapshot points (about 50
// fields each), as written once per interval per task.
func BenchmarkInfluxSinkSnapshotPoints(b *testing.B) {
	meta := loadgen.Summary{Experiment: "bench", Task: "t0", Workload: "poisson", Target: "http://127.0.0.1:8000/v1", Protocol: "http"}
	q := loadgen.Quantiles{Count: 1000, Min: time.Millisecond, Mean: 3 * time.Millisecond, P25: 2 * time.Millisecond, P50: 3 * time.Millisecond,
		P75: 4 * time.Millisecond, P90: 5 * time.Millisecond, P95: 6 * time.Millisecond, P99: 9 * time.Millisecond, P999: 12 * time.Millisecond, Max: 15 * time.Millisecond}
	benchSink(b, func(i int, base time.Time) Point {
		m := meta
		m.Task = "t" + strconv.Itoa(i%16)
		st := base.Add(time.Duration(i/16) * time.Second)
		pts := SnapshotPoints(m, loadgen.Snapshot{Interval: i / 16, Start: st, End: st.Add(time.Second), Offered: 1000, Sent: 1000,
			Completed: 990, SLOMet: 980, OfferedRate: 1000, AchievedRate: 990, Goodput: 980, Latency: q, Service: q, Lateness: q})
		return pts[0]
	}, 100)
}

// BenchmarkInfluxSinkServerDown streams 1,000 points/s while InfluxDB is
// down for GPUORCH_BENCH_DOWN_SECONDS (default 60), samples the heap every
// second, then starts the server and measures how long the spool takes to
// drain. Every point must arrive exactly once.
func BenchmarkInfluxSinkServerDown(b *testing.B) {
	secs := 60
	if v := os.Getenv("GPUORCH_BENCH_DOWN_SECONDS"); v != "" {
		secs, _ = strconv.Atoi(v)
	}
	d := startPrivateInfluxd(b, influxdOpts{})
	influxQL(b, d.URL, "", "CREATE DATABASE gpuorch")
	cfg := InfluxConfig{URL: d.URL, Bucket: "gpuorch", FlushInterval: time.Second, Timeout: 5 * time.Second, RetryMax: 2 * time.Second}
	s, err := NewInfluxSink(cfg, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	d.Stop()
	base := time.Now().Add(-time.Hour)
	var maxHeap, firstHeap uint64
	sample := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	ctx := context.Background()
	n := 0
	// 1,000 points/s on an absolute schedule: point i is due at start + i ms.
	start := time.Now()
	total := secs * 1000
	for n < total {
		due := int(time.Since(start) / time.Millisecond)
		for ; n < min(due, total); n++ {
			if err := s.Write(ctx, requestPoint(n, base)); err != nil {
				b.Fatal(err)
			}
			if n%1000 == 999 {
				h := sample()
				if firstHeap == 0 {
					firstHeap = h
				}
				maxHeap = max(maxHeap, h)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.Start()
	upAt := time.Now()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	drain := time.Since(upAt)
	got := countPoints(b, d.URL, "gpuorch", "bench_request", "latency_ms")
	if got != int64(n) {
		b.Fatalf("read back %d points, wrote %d", got, n)
	}
	b.ReportMetric(float64(n), "points")
	b.ReportMetric(float64(firstHeap)/(1<<20), "heapMiB-first")
	b.ReportMetric(float64(maxHeap)/(1<<20), "heapMiB-max")
	b.ReportMetric(drain.Seconds(), "drain-s")
}

// BenchmarkInfluxSourceLoad: reading an experiment back with Flux (what
// `gpuorch results show` does): 20 tasks × 300 one-second intervals, all
// requests plus two classes per interval (18,000 serving points of about
// 50 fields), compared with the local store on the same points.
func BenchmarkInfluxSourceLoad(b *testing.B) {
	cfg := testDatabase(b)
	expDir := b.TempDir()
	start := time.Now().Add(-6 * time.Hour).Truncate(time.Second)
	for i := 0; i < 20; i++ {
		taskDir := filepath.Join(expDir, "tasks", strconv.Itoa(i))
		local, err := OpenLineFile(filepath.Join(taskDir, layout.MetricsFile))
		if err != nil {
			b.Fatal(err)
		}
		inf, err := NewInfluxSink(cfg, filepath.Join(taskDir, "influx-spool"))
		if err != nil {
			b.Fatal(err)
		}
		sink := Tee(local, inf)
		meta, snaps := syntheticRun("load", i, float64(50*(i+1)), start.Add(time.Duration(i)*5*time.Minute), 300)
		writeRun(b, sink, meta, snaps)
		if err := sink.Close(); err != nil {
			b.Fatal(err)
		}
	}
	for _, src := range []struct {
		name string
		src  Source
	}{{"influx", NewInfluxSource(cfg)}, {"local", NewLocalStore(expDir)}} {
		b.Run(src.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				res, err := Load(context.Background(), src.src, "load")
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Tasks) != 20 {
					b.Fatalf("%d tasks", len(res.Tasks))
				}
			}
		})
	}
}

// BenchmarkInfluxClientAsyncWriter is the peer in the same run: the client
// library's own non-blocking writer (what most Go tools use), batch 5000,
// on the same points. It has no spool and drops 400 partial writes
// silently; it is here for the throughput comparison only.
func BenchmarkInfluxClientAsyncWriter(b *testing.B) {
	cfg := testDatabase(b)
	c := influxdb2.NewClientWithOptions(cfg.URL, "", influxdb2.DefaultOptions().SetBatchSize(5000).SetLogLevel(0).SetPrecision(time.Nanosecond))
	defer c.Close()
	w := c.WriteAPI(cfg.Org, cfg.Bucket)
	errs := w.Errors()
	go func() {
		for err := range errs {
			b.Error(err)
		}
	}()
	base := time.Now().Add(-24 * time.Hour)
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		p := requestPoint(i, base)
		w.WritePoint(influxdb2.NewPoint(p.Measurement, p.Tags, p.Fields, p.Time))
	}
	w.Flush()
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "client-cpu-ns/point")
	b.ReportMetric(float64(b.N)/el.Seconds(), "points/s")
	if got := countPoints(b, cfg.URL, cfg.Bucket, "bench_request", "latency_ms"); got != int64(b.N) {
		b.Fatalf("read back %d, wrote %d", got, b.N)
	}
}
