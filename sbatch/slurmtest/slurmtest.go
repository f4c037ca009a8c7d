// Package slurmtest gates integration tests on the real Slurm test cluster
// (test/slurm/up.sh): tests skip, saying how to start it, when it is not
// running, and fail instead when GPUORCH_TEST_SLURM=1 (set by CI, where the
// cluster must be up).
package slurmtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EnvRequire is the variable that turns a missing cluster into a failure.
const EnvRequire = "GPUORCH_TEST_SLURM"

const hint = "Slurm test cluster not running: start it with `sudo test/slurm/up.sh` (from the repository root)"

// Require skips (or, with GPUORCH_TEST_SLURM=1, fails) the test unless
// Slurm's tools are installed and slurmctld answers.
func Require(t testing.TB) {
	t.Helper()
	fail := t.Skip
	if os.Getenv(EnvRequire) == "1" {
		fail = t.Fatal
	}
	if _, err := exec.LookPath("sinfo"); err != nil {
		fail(hint + " (sinfo not found)")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "scontrol", "ping").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "is UP") {
		fail(hint + " (scontrol ping: " + strings.TrimSpace(string(out)) + ")")
		return
	}
}

// UnreachableConf writes a slurm.conf that points Slurm's clients at a
// closed port with a 1 s message timeout, and returns the environment entry
// (SLURM_CONF=…) that makes a client use it: a real "slurmctld down" without
// stopping the shared test cluster.
func UnreachableConf(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/etc/slurm/slurm.conf")
	if err != nil {
		t.Fatalf("read slurm.conf: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		k, _, _ := strings.Cut(strings.TrimSpace(l), "=")
		switch strings.ToLower(k) {
		case "slurmctldport", "messagetimeout":
			continue
		}
		lines = append(lines, l)
	}
	lines = append(lines, "SlurmctldPort=9", "MessageTimeout=1")
	path := filepath.Join(t.TempDir(), "slurm.conf")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return "SLURM_CONF=" + path
}
