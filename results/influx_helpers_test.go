package results

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/testgate"
)

// Tests against a real InfluxDB 1.8.10: the shared server
// (testgate.InfluxDB). Tests that stop and start the server, or need auth or
// Flux off, run a private influxd from the same binary (testgate.Influxd).

// helperWriterEnv=1 makes the test binary the writer process of
// TestSpoolSurvivesKilledWriter instead of running the tests.
const helperWriterEnv = "GPUORCH_HELPER_WRITER"

func TestMain(m *testing.M) {
	if os.Getenv(helperWriterEnv) == "1" {
		helperWriter()
	}
	os.Exit(m.Run())
}

// helperWriter streams points into an InfluxDB sink
// (GPUORCH_HELPER_URL, spooling to GPUORCH_HELPER_SPOOL) until it is killed.
func helperWriter() {
	cfg := InfluxConfig{URL: os.Getenv("GPUORCH_HELPER_URL"), Bucket: "gpuorch", BatchSize: 500,
		FlushInterval: 20 * time.Millisecond, Timeout: time.Second, RetryMax: 200 * time.Millisecond}
	s, err := NewInfluxSink(cfg, os.Getenv("GPUORCH_HELPER_SPOOL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper writer:", err)
		os.Exit(1)
	}
	base := time.Now().Add(-time.Hour)
	for i := 0; ; i++ {
		s.Write(context.Background(), testPoint(i, base))
		if i%500 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
}

var dbSeq atomic.Int64

// testDatabase creates a fresh database on the shared server and drops it
// when the test ends; it returns a config pointing at it.
func testDatabase(t testing.TB) InfluxConfig {
	t.Helper()
	u := testgate.InfluxDB(t)
	db := fmt.Sprintf("gpuorch_t_%d_%d", os.Getpid(), dbSeq.Add(1))
	influxQL(t, u, "", "CREATE DATABASE "+db)
	t.Cleanup(func() { influxQL(t, u, "", "DROP DATABASE "+db) })
	return InfluxConfig{URL: u, Bucket: db, FlushInterval: 100 * time.Millisecond, Timeout: 5 * time.Second, RetryMax: 500 * time.Millisecond}.withDefaults()
}

// influxQL runs an InfluxQL statement through /query and returns the first
// series' values.
func influxQL(t testing.TB, base, db, q string) [][]any {
	t.Helper()
	vals, err := influxQLErr(base, db, "", q)
	if err != nil {
		t.Fatalf("influxql %q: %v", q, err)
	}
	return vals
}

func influxQLErr(base, db, auth, q string) ([][]any, error) {
	form := url.Values{"q": {q}}
	if db != "" {
		form.Set("db", db)
	}
	req, _ := http.NewRequest(http.MethodPost, strings.TrimRight(base, "/")+"/query", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if u, p, ok := strings.Cut(auth, ":"); ok {
		req.SetBasicAuth(u, p)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Error  string `json:"error"`
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
	}
	if out.Error != "" {
		return nil, fmt.Errorf("%s", out.Error)
	}
	if len(out.Results) == 0 {
		return nil, nil
	}
	if out.Results[0].Error != "" {
		return nil, fmt.Errorf("%s", out.Results[0].Error)
	}
	var vals [][]any
	for _, s := range out.Results[0].Series {
		vals = append(vals, s.Values...)
	}
	return vals, nil
}

// countPoints counts the points of measurement m (by field f) in db.
func countPoints(t testing.TB, base, db, m, f string) int64 {
	t.Helper()
	vals := influxQL(t, base, db, fmt.Sprintf(`SELECT count(%q) FROM %q`, f, m))
	if len(vals) == 0 {
		return 0
	}
	return int64(vals[0][1].(float64))
}

// privateInfluxd is an influxd this test starts, stops and restarts.
type privateInfluxd struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	URL    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

type influxdOpts struct {
	auth   bool // auth-enabled, with user admin:secret
	noFlux bool
}

// influxdStartMu serialises picking ports and starting private servers, so
// that tests running in parallel cannot pick the same free port.
var influxdStartMu sync.Mutex

func freePort(t testing.TB) (int, net.Listener) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Addr().(*net.TCPAddr).Port, l
}

func startPrivateInfluxd(t testing.TB, o influxdOpts) *privateInfluxd {
	t.Helper()
	bin := testgate.Influxd(t)
	var d *privateInfluxd
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		dir := t.TempDir()
		influxdStartMu.Lock()
		port, l1 := freePort(t)
		rpc, l2 := freePort(t)
		l1.Close()
		l2.Close()
		conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = %q
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:%d"
  flux-enabled = %v
  auth-enabled = %v
  log-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "error"
`, rpc, dir+"/meta", dir+"/data", dir+"/wal", port, !o.noFlux, o.auth)
		if err := os.WriteFile(dir+"/influxdb.conf", []byte(conf), 0o600); err != nil {
			influxdStartMu.Unlock()
			t.Fatal(err)
		}
		d = &privateInfluxd{t: t, bin: bin, dir: dir, port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
		err = d.start()
		influxdStartMu.Unlock()
		if err == nil {
			break
		}
		t.Logf("private influxd, attempt %d: %v", attempt+1, err)
		d.Stop()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	if o.auth {
		if _, err := influxQLErr(d.URL, "", "", "CREATE USER admin WITH PASSWORD 'secret' WITH ALL PRIVILEGES"); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// Start (re)starts the server on its port and data directory.
func (d *privateInfluxd) Start() {
	d.t.Helper()
	influxdStartMu.Lock()
	defer influxdStartMu.Unlock()
	if err := d.start(); err != nil {
		d.t.Fatal(err)
	}
}

func (d *privateInfluxd) start() error {
	cmd := exec.Command(d.bin, "run", "-config", d.dir+"/influxdb.conf")
	logf, _ := os.OpenFile(d.dir+"/influxd.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(d.exited)
	// influxd starts in about a second on an idle machine, but initialising
	// Flux is CPU-heavy: allow for a machine busy with other builds.
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			d.cmd = nil
			log, _ := os.ReadFile(d.dir + "/influxd.log")
			return fmt.Errorf("influxd exited: %s", log)
		default:
		}
		// /debug/vars carries the command line: make sure the server that
		// answers is this one, not another on a reused port.
		resp, err := http.Get(d.URL + "/debug/vars")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), d.dir) {
				return nil
			}
			return fmt.Errorf("another server answers on %s", d.URL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(d.dir + "/influxd.log")
	return fmt.Errorf("private influxd did not start in 90 s: %s", log)
}

// Stop kills influxd with SIGKILL: the harshest stop (a crash or an OOM
// kill), and fast. Writes it acknowledged are in its fsync'd WAL.
func (d *privateInfluxd) Stop() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Kill()
	<-d.exited
	d.cmd = nil
}
