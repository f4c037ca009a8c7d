package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/gpuslice"
)

// TestSliceJobScriptRuns renders a slice job and runs it with bash (as
// slurmd would run the batch script): the command gets the MPS and slice
// environment, its exit code is the script's, and a hostile argument stays
// one word.
func TestSliceJobScriptRuns(t *testing.T) {
	m, err := gpuslice.LoadModel("../../examples/pools.toml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.PlanOverride(gpuslice.Override{Profile: "small-infer", VRAMLimit: 6 * gpuslice.GiB})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	script, err := SliceJob(s, "true", []string{"sh", "-c", `echo "$CUDA_MPS_PINNED_DEVICE_MEM_LIMIT $GPUORCH_SLICE_VRAM_LIMIT [$1]"; exit 7`, "x", "$(touch " + marker + ")"}).Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#SBATCH --partition=gs_a100", "#SBATCH --qos=gs_medium", "#SBATCH --gres=shard:1", "#SBATCH --requeue"} {
		if !strings.Contains(script, want+"\n") {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	path := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", path).CombinedOutput()
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	want := "0=6144M 6442450944 [$(touch " + marker + ")]\n"
	if string(out) != want {
		t.Fatalf("output %q, want %q", out, want)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("argument ran as code")
	}
}
