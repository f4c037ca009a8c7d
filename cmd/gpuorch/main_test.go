package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// TestExitCodeKinds: one exit code per error kind, whatever wraps it.
func TestExitCodeKinds(t *testing.T) {
	base := errors.New("boom")
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"plain failure", base, exitFailure},
		{"invalid input", errkind.Invalid(base), exitUsage},
		{"unavailable service", errkind.Unavailable(base), exitUnavailable},
		{"interrupted", errkind.Interrupted(base), exitInterrupted},
		{"cancelled context", fmt.Errorf("run: %w", context.Canceled), exitInterrupted},
		{"deadline is a failure, not an interruption", context.DeadlineExceeded, exitFailure},
		{"reported keeps its kind", errkind.Reported(errkind.Unavailable(base)), exitUnavailable},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", errkind.Invalid(base))), exitUsage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := exitCode(c.err); got != c.want {
				t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
			}
		})
	}
}

// TestExitCodesFromTheCLI: what a user sees for each kind, through the real
// app and run (the message printed once, the code from exitCode).
func TestExitCodesFromTheCLI(t *testing.T) {
	// A directory review accepts (results show refuses one that holds no
	// experiment before it looks at the source).
	expDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(expDir, "tasks", "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(expDir, "tasks", "0", "metrics.lp"), []byte("serving,task=t0 offered=1i 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want int
		msg  string
	}{
		{"unknown command", nil, []string{"bogus"}, exitUsage, `gpuorch: unknown command "bogus"`},
		{"unknown command, suggestion", nil, []string{"rnu"}, exitUsage, "Did you mean"},
		{"unknown subcommand", nil, []string{"results", "shwo"}, exitUsage, `gpuorch: results: unknown command "shwo"`},
		{"unknown flag", nil, []string{"run", "--no-such-flag", "x.toml"}, exitUsage, "no-such-flag"},
		{"bad flag value", nil, []string{"status", "--interval", "soon", "x"}, exitUsage, "soon"},
		{"bad results source", map[string]string{"GPUORCH_RESULTS_SOURCE": "bogus"}, []string{"results", "show", expDir}, exitUsage, "GPUORCH_RESULTS_SOURCE"},
		{"missing experiment", nil, []string{"status", "no-such-experiment"}, exitUsage, "no-such-experiment"},
		{"missing spec file", nil, []string{"run", "--dry-run", "/no/such/spec.toml"}, exitUsage, "/no/such/spec.toml"},
		{"unreachable service", map[string]string{"GPUORCH_INFLUX_URL": "http://127.0.0.1:1", "GPUORCH_CONFIG": "/dev/null"}, []string{"results", "ping"}, exitUnavailable, "127.0.0.1:1"},
		{"a check that ran and failed", nil, []string{"train", "parse", "/dev/null"}, exitFailure, ""},
		{"help is success", nil, []string{"results"}, exitOK, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			_, errOut, code := runCLI(t, t.TempDir(), c.args...)
			if code != c.want || !strings.Contains(errOut, c.msg) {
				t.Errorf("%v: exit %d, want %d; stderr %q, want it to mention %q", c.args, code, c.want, errOut, c.msg)
			}
			if n := strings.Count("\n"+errOut, "\ngpuorch: "); n > 1 {
				t.Errorf("%v: the error is printed %d times:\n%s", c.args, n, errOut)
			}
		})
	}
}
