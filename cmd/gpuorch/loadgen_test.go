package main

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
)

// loadgenProc starts the gpuorch CLI as a subprocess (see TestMain).
func loadgenProc(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	raw, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "GPUORCH_TEST_MAIN_ARGS="+string(raw), "GPUORCH_INFLUX_URL=")
	return cmd
}

func procExitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func writeManifest(t *testing.T, dir string, cfg loadgen.Config) string {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readSummary(t *testing.T, dir string) loadgen.Summary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s loadgen.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoadgenRunManifest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	dir := t.TempDir()
	m := writeManifest(t, dir, loadgen.Config{
		Experiment: "e1", Task: "0", Seed: 1, Duration: loadgen.Duration(1500 * time.Millisecond),
		Target:   loadgen.TargetConfig{URL: srv.URL},
		Workload: loadgen.WorkloadConfig{Arrival: "fixed", Rate: 100},
		Tags:     map[string]string{"rate": "100"},
	})
	cmd := loadgenProc(t, "loadgen", "run", "--manifest", m, "--json")
	out, err := cmd.Output()
	if code := procExitCode(err); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	var printed loadgen.Summary
	if err := json.Unmarshal(out, &printed); err != nil {
		t.Fatalf("--json output is not a summary: %v\n%s", err, out)
	}
	s := readSummary(t, dir)
	if s.Status != loadgen.StatusCompleted || s.Total.Offered != 150 || s.Total.Completed != 150 || printed.Total.Completed != 150 {
		t.Errorf("summary status %q offered %d completed %d", s.Status, s.Total.Offered, s.Total.Completed)
	}
	snaps, _ := os.ReadFile(filepath.Join(dir, "snapshots.jsonl"))
	if n := strings.Count(string(snaps), "\n"); n != 2 {
		t.Errorf("%d snapshot lines, want 2", n)
	}
	lp, _ := os.ReadFile(filepath.Join(dir, "metrics.lp"))
	if !strings.Contains(string(lp), "serving,") || !strings.Contains(string(lp), "serving_summary,") {
		t.Errorf("metrics.lp lacks serving points:\n%.300s", lp)
	}
}

func TestLoadgenRunExitCodes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"duration":"1s","target":{"url":"http://127.0.0.1:1"},"workload":{"arrival":"poisson","rate":1},"wrokload":{}}`), 0o644)
	unreachDir := filepath.Join(dir, "unreach")
	os.MkdirAll(unreachDir, 0o755)
	unreach := writeManifest(t, unreachDir, loadgen.Config{Duration: loadgen.Duration(time.Second),
		Target: loadgen.TargetConfig{URL: closed, Protocol: "kserve"}, Workload: loadgen.WorkloadConfig{Arrival: "poisson", Rate: 1}})
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown manifest key", []string{"--manifest", bad}, exitUsage, "wrokload"},
		{"unreachable", []string{"--manifest", unreach}, exitUnavailable, "unreachable"},
		{"bad protocol", []string{"--target", closed, "--protocol", "grpc", "--rate", "1", "--duration", "1s"}, exitUsage, "unknown protocol"},
		{"bad url", []string{"--target", "127.0.0.1:80", "--rate", "1", "--duration", "1s"}, exitUsage, "bad target URL"},
		{"unknown workload", []string{"--target", closed, "--duration", "1s", "no-such-workload"}, exitUsage, "unknown workload"},
		{"no target", []string{"--rate", "1"}, exitUsage, "--manifest"},
	}
	for _, tt := range tests {
		cmd := loadgenProc(t, append([]string{"loadgen", "run"}, tt.args...)...)
		out, err := cmd.CombinedOutput()
		if code := procExitCode(err); code != tt.code || !strings.Contains(string(out), tt.msg) {
			t.Errorf("%s: exit %d (want %d), output:\n%s", tt.name, code, tt.code, out)
		}
	}
	if s := readSummary(t, unreachDir); s.Status != loadgen.StatusFailed || !strings.Contains(s.Error, "unreachable") {
		t.Errorf("unreachable target: summary status %q error %q", s.Status, s.Error)
	}
}

func TestLoadgenRunInterrupted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	dir := t.TempDir()
	cmd := loadgenProc(t, "loadgen", "run", "--target", srv.URL, "--rate", "100", "--duration", "1m", "--out", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if code := procExitCode(err); code != exitInterrupted {
			t.Fatalf("exit %d after SIGINT, want %d", code, exitInterrupted)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("no exit 10 s after SIGINT")
	}
	s := readSummary(t, dir)
	if s.Status != loadgen.StatusInterrupted || s.Total.Offered < 50 {
		t.Errorf("summary status %q offered %d", s.Status, s.Total.Offered)
	}
}
