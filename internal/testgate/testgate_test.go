package testgate

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeTB records what a gate did: skip, fail, or neither (the test runs).
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls gate in its own goroutine, since a skip or failure ends it.
func run(t *testing.T, gate func(testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); gate(f) }()
	<-done
	return f
}

type outcome int

const (
	runs outcome = iota
	skips
	fails
)

func check(t *testing.T, f *fakeTB, want outcome, msg string) {
	t.Helper()
	got, text := runs, ""
	if f.skipped != "" {
		got, text = skips, f.skipped
	}
	if f.failed != "" {
		got, text = fails, f.failed
	}
	if got != want || !strings.Contains(text, msg) {
		t.Errorf("outcome %d %q, want %d with %q", got, text, want, msg)
	}
}

// stubs writes executable scripts into a fresh directory and makes it PATH.
func stubs(t *testing.T, scripts map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
}

func TestSlurm(t *testing.T) {
	up := map[string]string{
		"sinfo": "exit 0", "sbatch": "exit 0", "sacctmgr": "echo normal",
		"scontrol": "echo 'Slurmctld(primary) at localhost is UP'",
	}
	include := filepath.Join(t.TempDir(), "pools.conf")
	if err := os.WriteFile(include, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		env    string
		change map[string]string
		gate   func(testing.TB)
		want   outcome
		msg    string
	}{
		{"off", "", nil, Slurm, skips, "test/slurm/up.sh"},
		{"up", "1", nil, Slurm, runs, ""},
		{"no sinfo", "1", map[string]string{"sinfo": ""}, Slurm, fails, "sinfo is not on PATH"},
		{"down", "1", map[string]string{"scontrol": "echo 'Slurmctld(primary) at localhost is DOWN'; exit 1"}, Slurm, fails, "slurmctld does not answer"},
		{"accounting", "1", nil, SlurmAccounting, runs, ""},
		{"accounting down", "1", map[string]string{"sacctmgr": "echo 'Connection refused' >&2; exit 1"}, SlurmAccounting, fails, "Connection refused"},
		{"accounting off", "", nil, SlurmAccounting, skips, EnvSlurm},
		{"admin", "1", nil, func(t testing.TB) { SlurmAdmin(t, include) }, runs, ""},
		{"admin no include file", "1", nil, func(t testing.TB) { SlurmAdmin(t, include+".missing") }, fails, "pools.conf.missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			scripts := map[string]string{}
			for k, v := range up {
				scripts[k] = v
			}
			for k, v := range c.change {
				if v == "" {
					delete(scripts, k)
				} else {
					scripts[k] = v
				}
			}
			stubs(t, scripts)
			t.Setenv(EnvSlurm, c.env)
			check(t, run(t, c.gate), c.want, c.msg)
		})
	}
}

func TestInfluxDB(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ping" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ok.Close()
	bad := httptest.NewServer(http.NotFoundHandler())
	defer bad.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, c := range []struct {
		url  string
		want outcome
		msg  string
	}{
		{"", skips, "test/influxdb/up.sh --test-env"},
		{ok.URL + "/", runs, ""},
		{bad.URL, fails, "HTTP 404"},
		{closed.URL, fails, "does not answer"},
	} {
		t.Setenv(EnvInfluxURL, c.url)
		var got string
		f := run(t, func(tb testing.TB) { got = InfluxDB(tb) })
		check(t, f, c.want, c.msg)
		if c.want == runs && got != ok.URL {
			t.Errorf("InfluxDB() = %q, want %q", got, ok.URL)
		}
	}
}

func TestInfluxd(t *testing.T) {
	dir := t.TempDir()
	exe, plain := filepath.Join(dir, "influxd"), filepath.Join(dir, "plain")
	for p, mode := range map[string]os.FileMode{exe: 0o755, plain: 0o644} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		path string
		want outcome
		msg  string
	}{
		{"", skips, "test/influxdb/build.sh"},
		{exe, runs, ""},
		{plain, fails, "not an executable file"},
		{dir, fails, "not an executable file"},
		{filepath.Join(dir, "missing"), fails, "no such file"},
	} {
		t.Setenv(EnvInfluxd, c.path)
		var got string
		check(t, run(t, func(tb testing.TB) { got = Influxd(tb) }), c.want, c.msg)
		if c.want == runs && got != exe {
			t.Errorf("Influxd() = %q", got)
		}
	}
}

func TestTool(t *testing.T) {
	stubs(t, map[string]string{"chromium-browser": "exit 0"})
	for _, c := range []struct {
		tools string
		gate  func(testing.TB) string
		want  outcome
		msg   string
	}{
		{"", Mksquashfs, skips, "apt-get install squashfs-tools"},
		{"1", Mksquashfs, fails, "mksquashfs not on PATH"},
		{"1", Chromium, runs, ""},
	} {
		t.Setenv(EnvTools, c.tools)
		var got string
		check(t, run(t, func(tb testing.TB) { got = c.gate(tb) }), c.want, c.msg)
		if c.want == runs && filepath.Base(got) != "chromium-browser" {
			t.Errorf("Chromium() = %q", got)
		}
	}
}
