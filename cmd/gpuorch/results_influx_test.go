package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/taskrun"
)

// clearInfluxEnv makes a test independent of the developer's InfluxDB
// settings.
func clearInfluxEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"GPUORCH_INFLUX_URL", "GPUORCH_INFLUX_BUCKET", "GPUORCH_INFLUX_TOKEN", "GPUORCH_INFLUX_TOKEN_FILE",
		"GPUORCH_INFLUX_ORG", "GPUORCH_RESULTS_SOURCE", "GPUORCH_INFLUX_BATCH_SIZE", "GPUORCH_INFLUX_FLUSH_INTERVAL", "GPUORCH_INFLUX_QUEUE_BATCHES"} {
		t.Setenv(k, "")
	}
	t.Setenv("GPUORCH_CONFIG", filepath.Join(t.TempDir(), "none.toml"))
	os.WriteFile(os.Getenv("GPUORCH_CONFIG"), nil, 0o600)
}

func TestResultsPingExitCodes(t *testing.T) {
	clearInfluxEnv(t)
	home := t.TempDir()
	_, errOut, code := runCLI(t, home, "results", "ping")
	if code != exitUsage || !strings.Contains(errOut, "not configured") {
		t.Errorf("not configured: exit %d, %s", code, errOut)
	}
	t.Setenv("GPUORCH_INFLUX_URL", "http://127.0.0.1:1")
	out, errOut, code := runCLI(t, home, "results", "ping")
	if code != exitUnavailable || !strings.Contains(errOut, "unreachable") || !strings.Contains(out, "write:    not checked") {
		t.Errorf("unreachable: exit %d\n%s\n%s", code, out, errOut)
	}
	// The token is never printed, whatever happens.
	t.Setenv("GPUORCH_INFLUX_TOKEN", "admin:hunter2")
	out, errOut, _ = runCLI(t, home, "results", "ping", "--json")
	if strings.Contains(out+errOut, "hunter2") || !strings.Contains(out, `"token_set": true`) {
		t.Errorf("token leaked or not reported as set:\n%s\n%s", out, errOut)
	}

	base := testgate.InfluxDB(t)
	t.Setenv("GPUORCH_INFLUX_TOKEN", "")
	t.Setenv("GPUORCH_INFLUX_URL", base)
	t.Setenv("GPUORCH_INFLUX_BUCKET", "gpuorch_no_such_database")
	_, errOut, code = runCLI(t, home, "results", "ping")
	if code != exitFailure || !strings.Contains(errOut, "CREATE DATABASE gpuorch_no_such_database") {
		t.Errorf("missing database: exit %d, %s", code, errOut)
	}
	t.Setenv("GPUORCH_INFLUX_BUCKET", testDB(t, base))
	out, errOut, code = runCLI(t, home, "results", "ping")
	if code != 0 || !strings.Contains(out, "write:    ok") || !strings.Contains(out, "query:    ok") {
		t.Errorf("good: exit %d\n%s\n%s", code, out, errOut)
	}
}

func testDB(t *testing.T, base string) string {
	t.Helper()
	db := fmt.Sprintf("gpuorch_cli_%d_%s", os.Getpid(), strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_"))
	q := func(s string) {
		resp, err := http.PostForm(base+"/query", url.Values{"q": {s}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	q("CREATE DATABASE " + db)
	t.Cleanup(func() { q("DROP DATABASE " + db) })
	return db
}

// With InfluxDB configured, tasks write to both stores; show reads InfluxDB
// and prints exactly what it prints from the local store; a missing
// database stops a task before it writes; push delivers a spool and
// re-sending the local store never double counts.
func TestResultsInfluxEndToEnd(t *testing.T) {
	clearInfluxEnv(t)
	base := testgate.InfluxDB(t)
	home := t.TempDir()
	t.Setenv("GPUORCH_INFLUX_URL", base)
	t.Setenv("GPUORCH_INFLUX_BUCKET", "gpuorch_no_such_database")
	if _, err := taskrun.OpenSink(t.Context(), layout.Task(t.TempDir())); err == nil || !strings.Contains(err.Error(), "database not found") {
		t.Fatalf("missing database: OpenSink err = %v", err)
	}
	db := testDB(t, base)
	t.Setenv("GPUORCH_INFLUX_BUCKET", db)
	exp := makeExperiment(t, home, "influx", 1)

	fromInflux, errOut, code := runCLI(t, home, "results", "show", "--per-step", exp.ID())
	if code != 0 {
		t.Fatalf("show from influx: exit %d %s", code, errOut)
	}
	t.Setenv("GPUORCH_RESULTS_SOURCE", "local")
	fromLocal, _, _ := runCLI(t, home, "results", "show", "--per-step", exp.ID())
	if fromInflux != fromLocal {
		t.Fatalf("show differs:\ninflux:\n%s\nlocal:\n%s", fromInflux, fromLocal)
	}
	t.Setenv("GPUORCH_RESULTS_SOURCE", "")

	// Re-send every local store: idempotent, so show is unchanged.
	out, errOut, code := runCLI(t, home, "results", "push", "--all", exp.ID())
	if code != 0 || !strings.Contains(out, "metrics.lp") {
		t.Fatalf("push --all: exit %d\n%s\n%s", code, out, errOut)
	}
	again, _, _ := runCLI(t, home, "results", "show", "--per-step", exp.ID())
	if again != fromInflux {
		t.Fatalf("show changed after re-sending the local store:\n%s\n%s", again, fromInflux)
	}

	report := filepath.Join(t.TempDir(), "r.html")
	_, errOut, code = runCLI(t, home, "results", "report", "-o", report, exp.ID())
	if code != 0 || !strings.Contains(errOut, "from InfluxDB") {
		t.Fatalf("report: exit %d %s", code, errOut)
	}
	if b, err := os.ReadFile(report); err != nil || !strings.Contains(string(b), "t001-rate=200") {
		t.Fatalf("report: %v", err)
	}
	// The flag may also follow the experiment, as people type it.
	report2 := filepath.Join(t.TempDir(), "r2.html")
	if _, errOut, code := runCLI(t, home, "results", "report", exp.ID(), "-o", report2); code != 0 {
		t.Fatalf("report EXP -o: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(report2); err != nil {
		t.Fatal(err)
	}

	// Unreachable server: push says so with exit 3.
	t.Setenv("GPUORCH_INFLUX_URL", "http://127.0.0.1:1")
	_, _, code = runCLI(t, home, "results", "push", exp.ID())
	if code != exitUnavailable {
		t.Fatalf("push to an unreachable server: exit %d", code)
	}
}
