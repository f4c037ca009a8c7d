package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/sif/siftest"
)

// TestTrainSubmitRefusesBadImage: the image is checked before anything is
// created or submitted, so this needs no cluster.
func TestTrainSubmitRefusesBadImage(t *testing.T) {
	testgate.Mksquashfs(t)
	dir := t.TempDir()
	home := filepath.Join(dir, "runs")
	t.Setenv("GPUORCH_HOME", home)
	img := filepath.Join(dir, "metaseq_f7ffa5f_2306.sif")
	if err := siftest.Build(img, siftest.Options{Files: map[string]string{"/opt/train.sh": "#!/bin/sh\n"}}); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "t.toml")
	os.WriteFile(spec, []byte(`[experiment]
name = "badimage"
[training]
nodes = 1
gpus_per_node = 1
image = "`+img+`"
image_version = "f7ffa5f_2401"
script = "/opt/missing.sh"
`), 0o644)
	_, errOut, code := runInProcess(t, "train", "submit", spec)
	if code != exitFailure || !strings.Contains(errOut, "nothing submitted") || !strings.Contains(errOut, `want "f7ffa5f_2401"`) ||
		!strings.Contains(errOut, "/opt/missing.sh") {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	if _, err := os.Stat(home); err == nil {
		t.Error("a run directory was created for a refused submission")
	}
}

// TestTrainSubmitFollowOnSlurm submits the stand-in trainer (runtime none)
// to the test cluster through the CLI and follows its log into metrics.lp.
func TestTrainSubmitFollowOnSlurm(t *testing.T) {
	testgate.Slurm(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "standin")
	if out, err := exec.Command("go", "build", "-o", bin, "../../test/training/standin").CombinedOutput(); err != nil {
		t.Fatalf("build stand-in: %v\n%s", err, out)
	}
	home := filepath.Join(dir, "runs")
	t.Setenv("GPUORCH_HOME", home)
	spec := filepath.Join(dir, "t.toml")
	os.WriteFile(spec, []byte(`[experiment]
name = "standin"
[training]
nodes = 2
gpus_per_node = 2
cpus_per_task = 1
mem = "200M"
time = "5:00"
runtime = "none"
script = "`+bin+`"
extra_args = ["--max-update", "30", "--log-interval", "5"]
`), 0o644)
	out, errOut, code := runInProcess(t, "train", "submit", "--preflight", "--follow", spec)
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "updates 5-30 in 6 intervals") || !strings.Contains(out, "COMPLETED") {
		t.Errorf("output:\n%s", out)
	}
	lps, _ := filepath.Glob(filepath.Join(home, "*", "metrics.lp"))
	if len(lps) != 1 {
		t.Fatalf("metrics files: %v", lps)
	}
	n := 0
	err := results.ReadLineFile(lps[0], "training", func(p results.Point) {
		n++
		if p.Tags["job"] == "" || !strings.HasPrefix(p.Tags["experiment"], "standin-") {
			t.Errorf("point tags %v", p.Tags)
		}
	}, nil)
	if err != nil || n != 6 {
		t.Errorf("%d training points stored (err %v), want 6", n, err)
	}
}
