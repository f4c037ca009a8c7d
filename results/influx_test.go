package results

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/testgate"
)

// testPoint is point i of a stream: one series per task, a fixed timestamp
// per i, so writing it twice overwrites.
func testPoint(i int, base time.Time) Point {
	return Point{
		Measurement: "stream",
		Tags:        map[string]string{TagExperiment: "exp1", TagTask: "t" + strconv.Itoa(i%4)},
		Fields:      map[string]any{"seq": int64(i), "latency_p99": float64(i%97) * 1.5, "offered": int64(100)},
		Time:        base.Add(time.Duration(i) * time.Millisecond),
	}
}

func TestInfluxSinkWritesEverything(t *testing.T) {
	cfg := testDatabase(t)
	cfg.BatchSize = 500
	s, err := NewInfluxSink(cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	const n = 12345
	for i := 0; i < n; i++ {
		if err := s.Write(context.Background(), testPoint(i, base)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := countPoints(t, cfg.URL, cfg.Bucket, "stream", "seq"); got != n {
		t.Fatalf("read back %d points, wrote %d", got, n)
	}
	st := s.Stats()
	if st.Written != n || st.Pending != 0 || st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A field-type conflict makes InfluxDB answer 400 "partial write": the sink
// must surface it with the server's message, keep the batch aside, and not
// retry it.
func TestInfluxSinkSurfacesPartialWrite(t *testing.T) {
	cfg := testDatabase(t)
	spool := t.TempDir()
	s, err := NewInfluxSink(cfg, spool)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ts := time.Now().Add(-time.Minute)
	if err := s.Write(ctx, Point{Measurement: "m", Fields: map[string]any{"v": 1.5}, Time: ts}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// v as a string now: a type conflict on one point of the batch.
	err = s.Write(ctx,
		Point{Measurement: "m", Fields: map[string]any{"v": "text"}, Time: ts.Add(time.Second)},
		Point{Measurement: "m", Fields: map[string]any{"v": 2.5}, Time: ts.Add(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Flush(ctx)
	if err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), "partial write") {
		t.Fatalf("Flush err = %v, want a 400 partial write with the server's message", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after the error was returned: %v", err)
	}
	if st := s.Stats(); st.Rejected != 2 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
	if rej, _ := filepath.Glob(filepath.Join(spool, "rejected-*.lp")); len(rej) != 1 {
		t.Fatalf("rejected batch not kept: %v", rej)
	}
}

func TestCheckMissingDatabase(t *testing.T) {
	cfg := testDatabase(t)
	cfg.Bucket = "gpuorch_no_such_db"
	err := Check(context.Background(), cfg)
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Kind != CheckNoDatabase || !strings.Contains(err.Error(), "CREATE DATABASE gpuorch_no_such_db") {
		t.Fatalf("err = %v, want no-database with a hint", err)
	}
	// And the sink, started anyway, keeps the points in the spool and says why.
	s, err := NewInfluxSink(cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.Write(context.Background(), testPoint(1, time.Now()))
	err = s.Close()
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("Close err = %v, want HTTP 404", err)
	}
	if s.Stats().Pending != 1 {
		t.Fatalf("stats %+v, want the point spooled", s.Stats())
	}
}

func TestCheckUnreachable(t *testing.T) {
	testgate.InfluxDB(t)
	cfg := InfluxConfig{URL: "http://127.0.0.1:1", Bucket: "x", Timeout: time.Second}
	err := Check(context.Background(), cfg)
	if !errors.Is(err, errkind.ErrUnavailable) || !strings.Contains(err.Error(), "test/influxdb/up.sh") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Ping(context.Background(), cfg); !errors.Is(err, errkind.ErrUnavailable) {
		t.Fatalf("ping err = %v", err)
	}
}

func TestCheckAuthAndFlux(t *testing.T) {
	t.Parallel() // its influxd starts while other tests run
	d := startPrivateInfluxd(t, influxdOpts{auth: true, noFlux: true})
	if _, err := influxQLErr(d.URL, "", "admin:secret", "CREATE DATABASE gpuorch"); err != nil {
		t.Fatal(err)
	}
	cfg := InfluxConfig{URL: d.URL, Bucket: "gpuorch", Token: "admin:wrong", Timeout: 5 * time.Second}
	err := Check(context.Background(), cfg)
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Kind != CheckUnauthorized || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: err = %v", err)
	}
	if strings.Contains(err.Error(), "wrong") && strings.Contains(err.Error(), "admin:wrong") {
		t.Fatalf("token leaked into the error: %v", err)
	}
	cfg.Token = "admin:secret"
	if err := Check(context.Background(), cfg); err != nil {
		t.Fatalf("right token: %v", err)
	}
	rep, err := Ping(context.Background(), cfg)
	if !errors.As(err, &ce) || ce.Kind != CheckFluxDisabled || rep.Write != "ok" || !strings.Contains(rep.Query, "flux-enabled") {
		t.Fatalf("flux disabled: report %+v err %v", rep, err)
	}
}

// Stop InfluxDB in the middle of a stream of writes and start it again:
// every point arrives exactly once.
func TestInfluxSinkSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	d := startPrivateInfluxd(t, influxdOpts{})
	influxQL(t, d.URL, "", "CREATE DATABASE gpuorch")
	cfg := InfluxConfig{URL: d.URL, Bucket: "gpuorch", BatchSize: 200, FlushInterval: 50 * time.Millisecond,
		QueueBatches: 4, Timeout: 2 * time.Second, RetryMax: 300 * time.Millisecond}
	s, err := NewInfluxSink(cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	const n = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the load generator: a steady stream, never blocked
		defer wg.Done()
		for i := 0; i < n; i++ {
			if err := s.Write(context.Background(), testPoint(i, base)); err != nil {
				t.Error(err)
				return
			}
			if i%100 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	d.Stop()
	time.Sleep(700 * time.Millisecond)
	if s.Stats().Spooled == 0 {
		t.Errorf("nothing spooled while the server was down: %+v", s.Stats())
	}
	d.Start()
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if got := countPoints(t, d.URL, "gpuorch", "stream", "seq"); got != n || st.Pending != 0 {
		t.Fatalf("read back %d points, wrote %d; stats %+v", got, n, st)
	}
	t.Logf("stats: %+v", st)
}

// The writer process is killed while InfluxDB is unreachable: its spool
// survives and a later push delivers it, in full, to the server.
func TestSpoolSurvivesKilledWriter(t *testing.T) {
	cfg := testDatabase(t)
	spool := t.TempDir()
	cmd := exec.Command(os.Args[0])
	// The writer's server is unreachable (nothing listens on port 1), so
	// everything it writes goes to its spool.
	cmd.Env = append(os.Environ(), helperWriterEnv+"=1", "GPUORCH_HELPER_URL=http://127.0.0.1:1", "GPUORCH_HELPER_SPOOL="+spool)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the writer has spooled a good amount, then kill -9 it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if segs, _ := filepath.Glob(filepath.Join(spool, "seg-*.lp")); len(segs) > 0 {
			if fi, err := os.Stat(segs[len(segs)-1]); err == nil && fi.Size() > 200_000 {
				break
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("writer did not spool")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	sp, err := OpenSpool(spool) // the killed writer's lock died with it
	if err != nil {
		t.Fatal(err)
	}
	want := sp.Pending()
	sp.Close()
	res, err := PushSpool(context.Background(), cfg, spool)
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != want || res.Pending != 0 {
		t.Fatalf("push %+v, spool held %d", res, want)
	}
	if got := countPoints(t, cfg.URL, cfg.Bucket, "stream", "seq"); got != want || want < 1000 {
		t.Fatalf("read back %d, spool held %d", got, want)
	}
	// Pushing again finds nothing, and a second push of the same points
	// (e.g. from the local store) would not double count.
	res, err = PushSpool(context.Background(), cfg, spool)
	if err != nil || res.Delivered != 0 {
		t.Fatalf("second push: %+v %v", res, err)
	}
}

// While InfluxDB is down, a 1,000 points/s stream costs disk, not memory.
func TestInfluxSinkMemoryBoundedWhileDown(t *testing.T) {
	testgate.InfluxDB(t)
	cfg := InfluxConfig{URL: "http://127.0.0.1:1", Bucket: "gpuorch", BatchSize: 100, QueueBatches: 4,
		FlushInterval: 50 * time.Millisecond, Timeout: time.Second, RetryMax: 200 * time.Millisecond}
	s, err := NewInfluxSink(cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := time.Now()
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if err := s.Write(context.Background(), testPoint(i, base)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 20000)
	h1 := heap()
	write(20000, 120000) // five times as much again
	h2 := heap()
	st := s.Stats()
	if st.Pending != 120000 {
		t.Fatalf("stats %+v, want all 120000 points spooled", st)
	}
	// Kept in memory, 100,000 more points would take tens of MiB; the bound
	// leaves room for goroutines of earlier tests still winding down.
	if h2 > h1+16<<20 {
		t.Fatalf("heap grew from %d to %d bytes while spooling 100000 more points", h1, h2)
	}
	t.Logf("heap %d -> %d bytes; %+v", h1, h2, st)
	_ = fmt.Sprint
}
