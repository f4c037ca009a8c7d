// Package gpucheck runs test/gpu/check.sh from go test, so that CI runs what
// it can: on a machine without an NVIDIA GPU, the script's skip; on one
// with a GPU, the whole check (docs/gpu-slicing.md, "The GPU check").
package gpucheck

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestCheckScript(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "bash", "check.sh").CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("check.sh: %v (after %s)\n%s", err, took, out)
	}
	if first, _, _ := strings.Cut(string(out), "\n"); strings.HasPrefix(first, "SKIP: no NVIDIA GPU") {
		t.Skip(first)
	}
	t.Logf("check.sh passed in %s:\n%s", took, out)
	if took > 4*time.Minute {
		t.Errorf("check.sh took %s, more than 4 minutes", took)
	}
}

// The check only reads device state: nvidia-smi only ever queries.
func TestCheckScriptOnlyReadsTheDevice(t *testing.T) {
	src, err := os.ReadFile("check.sh")
	if err != nil {
		t.Fatal(err)
	}
	readOnly := regexp.MustCompile(`nvidia-smi (pmon -c 1|--query-\S+)`)
	for i, l := range strings.Split(string(src), "\n") {
		code, _, _ := strings.Cut(l, "#")
		if strings.Contains(code, "nvidia-smi ") && !readOnly.MatchString(code) {
			t.Errorf("check.sh:%d runs nvidia-smi beyond a query: %s", i+1, strings.TrimSpace(l))
		}
	}
}
