package main

import (
	"encoding/json"
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
extra_args = ["--max-update", "30", "--log-interval", "5", "--validate-interval-updates", "15"]
`), 0o644)
	out, errOut, code := runInProcess(t, "train", "submit", "--preflight", "--follow", spec)
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "updates 5-30 in 6 intervals") || !strings.Contains(out, "COMPLETED") ||
		!strings.Contains(out, "validation valid: last loss 15.84 at update 30, best 15.84 at update 30 (2 evaluations)") {
		t.Errorf("output:\n%s", out)
	}
	if strings.Contains(errOut, "bad JSON") {
		t.Errorf("the config dump was parsed as a stats line:\n%s", errOut)
	}
	lps, _ := filepath.Glob(filepath.Join(home, "*", "metrics.lp"))
	if len(lps) != 1 {
		t.Fatalf("metrics files: %v", lps)
	}
	tags := map[string]int{}
	err := results.ReadLineFile(lps[0], "training", func(p results.Point) {
		tags[p.Tags["tag"]]++
		if p.Tags["job"] == "" || !strings.HasPrefix(p.Tags["experiment"], "standin-") {
			t.Errorf("point tags %v", p.Tags)
		}
	}, nil)
	if err != nil || tags["train_inner"] != 6 || tags["valid"] != 2 || tags["train"] != 1 || len(tags) != 3 {
		t.Errorf("training points stored by tag: %v (err %v), want 6 train_inner, 2 valid, 1 train", tags, err)
	}
	// results show finds the run by its id and reads the same from the store.
	t.Setenv("GPUORCH_RESULTS_SOURCE", "local")
	id := filepath.Base(filepath.Dir(lps[0]))
	if show, errOut, code := runInProcess(t, "results", "show", id); code != 0 || !strings.Contains(show, "validation valid: last loss 15.84 at update 30") {
		t.Errorf("results show %s: exit %d\n%s%s", id, code, show, errOut)
	}

	// A run that diverges: the stand-in's loss becomes inf at update 15,
	// NaN at 20, and it fails as metaseq does.
	os.WriteFile(spec, []byte(`[experiment]
name = "diverge"
[training]
nodes = 1
gpus_per_node = 2
cpus_per_task = 1
mem = "200M"
time = "5:00"
runtime = "none"
script = "`+bin+`"
extra_args = ["--max-update", "30", "--log-interval", "5"]
[training.env]
STANDIN_DIVERGE_AT = "15"
`), 0o644)
	out, errOut, code = runInProcess(t, "train", "submit", "--follow", spec)
	if code != exitFailure || !strings.Contains(out, "DIVERGED at update 15: train_inner logged loss=inf,ppl=inf") ||
		!strings.Contains(out, "last finite loss 15.7 bits/token at update 10") || strings.Contains(out, "final loss 0") ||
		!strings.Contains(errOut, "ended FAILED: training diverged at update 15") {
		t.Errorf("diverged run: exit %d\n%s%s", code, out, errOut)
	}
}

// The log shapes metaseq writes (config dump, validation and end-of-epoch
// lines; a loss that becomes inf, then NaN): train parse summarises them
// without warnings, a diverged run exits 1 and says where, and results show
// reads the same from the stored points of a training run.
func TestTrainParseSeedLogs(t *testing.T) {
	valid := filepath.Join("..", "..", "results", "trainlog", "testdata", "metaseq-validation.log")
	diverged := filepath.Join("..", "..", "results", "trainlog", "testdata", "metaseq-diverged.log")
	out, errOut, code := runInProcess(t, "train", "parse", valid)
	if code != 0 || errOut != "" {
		t.Fatalf("validation log: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"final loss 12.29 bits/token",
		"validation valid: last loss 12.41 at update 85, best 12.41 at update 85 (2 evaluations)",
		"validation valid/combined: last loss 12.41 at update 85"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, errOut, code = runInProcess(t, "train", "parse", diverged)
	if code != exitFailure || !strings.Contains(out, "DIVERGED at update 15: train_inner logged gnorm=inf,loss=inf,ppl=inf") ||
		strings.Contains(out, "final loss 0") || errOut != "" {
		t.Errorf("diverged log: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = runInProcess(t, "train", "parse", "--json", diverged)
	var sum struct {
		FinalLoss float64 `json:"final_loss"`
		Diverged  *struct {
			Update int64  `json:"update"`
			Values string `json:"values"`
		} `json:"diverged"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil || code != exitFailure || sum.Diverged == nil || sum.Diverged.Update != 15 || sum.FinalLoss != 14.102 {
		t.Errorf("--json: exit %d, %+v %v\n%s", code, sum, err, out)
	}

	// A training run directory as train submit leaves it, its points
	// written by train parse --points.
	home := t.TempDir()
	t.Setenv("GPUORCH_HOME", home)
	t.Setenv("GPUORCH_RESULTS_SOURCE", "local")
	for _, run := range []struct{ id, log string }{{"opt-valid", valid}, {"opt-diverged", diverged}} {
		dir := filepath.Join(home, run.id)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "job.json"), []byte(`{"id": "`+run.id+`", "dir": "`+dir+`", "job_id": "7"}`), 0o644)
		pts, _, _ := runInProcess(t, "train", "parse", "--points", "--experiment", run.id, "--job", "7", run.log)
		os.WriteFile(filepath.Join(dir, "metrics.lp"), []byte(pts), 0o644)
	}
	out, errOut, code = runInProcess(t, "results", "show", "opt-valid")
	if code != 0 || !strings.Contains(out, "valid_best_loss") || !strings.Contains(out, "validation valid: last loss 12.41 at update 85, best 12.41") {
		t.Errorf("results show opt-valid: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runInProcess(t, "results", "show", filepath.Join(home, "opt-diverged"))
	if code != 0 || !strings.Contains(out, "DIVERGED at update 15") || !strings.Contains(out, "train_inner: gnorm=inf,loss=inf,ppl=inf") {
		t.Errorf("results show DIR of a diverged run: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = runInProcess(t, "results", "show", "--json", "opt-diverged")
	var runs []struct {
		Experiment string
		Summary    struct {
			Diverged struct{ Update int64 } `json:"diverged"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &runs); err != nil || len(runs) != 1 || runs[0].Experiment != "opt-diverged" || runs[0].Summary.Diverged.Update != 15 {
		t.Errorf("results show --json: %+v %v\n%s", runs, err, out)
	}
	out, _, _ = runInProcess(t, "results", "show", "--csv", "opt-valid")
	if !strings.HasPrefix(out, "experiment,task,job,first_update,last_update,mean_wps,seconds_per_update,final_loss,final_loss_update,valid_last_loss,valid_best_loss,valid_best_update,") ||
		!strings.Contains(out, "opt-valid,,7,1,85,726164,3.392857142857143,12.291,85,12.406,12.406,85,") {
		t.Errorf("results show --csv:\n%s", out)
	}
}
