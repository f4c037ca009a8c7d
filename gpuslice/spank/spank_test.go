package main

import (
	"context"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/testgate"
)

// TestSPANKPluginOnCluster runs test.sh: it builds the plugin (cgo, against
// libslurm-dev), loads it on the Slurm test cluster for the length of the
// test, and checks --gpu-slice/--gpu-qos in sbatch and srun. This file has
// no build tag, so `go test ./...` runs it; the plugin's own files need
// -tags spank.
var passed = regexp.MustCompile(`(?m)^PASS: `)

func TestSPANKPluginOnCluster(t *testing.T) {
	testgate.SlurmSPANK(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "test.sh")
	// SIGTERM, so that the script removes its plugstack.conf.d entry.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || !passed.Match(out) {
		t.Fatalf("test.sh: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
