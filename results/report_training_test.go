package results_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/results/trainlog"
)

// trainingReport stores two training runs parsed from metaseq-shaped logs
// (one with validation lines, one that diverges) in a local store, as
// train follow does, and writes their report.
func trainingReport(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, run := range []struct{ exp, log string }{{"opt-valid", "metaseq-validation.log"}, {"opt-diverged", "metaseq-diverged.log"}} {
		f, err := os.Open(filepath.Join("trainlog", "testdata", run.log))
		if err != nil {
			t.Fatal(err)
		}
		c := &trainlog.Collector{Tags: map[string]string{"experiment": run.exp, "task": "0", "job": "7"}}
		if _, err := trainlog.Parse(f, c); err != nil {
			t.Fatal(err)
		}
		f.Close()
		lf, err := results.OpenLineFile(filepath.Join(dir, run.exp, "metrics.lp"))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range c.Records() {
			if err := lf.Write(context.Background(), r.Point(c.Tags)); err != nil {
				t.Fatal(err)
			}
		}
		if err := lf.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// The two run directories, as a store reads them (DIR/metrics.lp of
	// each; the store does not search a parent directory for them).
	d, err := results.LoadReport(context.Background(), results.NewLocalStore(filepath.Join(dir, "opt-valid"), filepath.Join(dir, "opt-diverged")), "", "local store")
	if err != nil {
		t.Fatal(err)
	}
	d.Experiment = "training"
	var buf bytes.Buffer
	if err := results.WriteReport(&buf, d); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestWriteReportTraining(t *testing.T) {
	out := trainingReport(t)
	for _, want := range []string{"Training and validation loss", "Training throughput", "2 training run(s)",
		"opt-diverged/0/7 DIVERGED at update 15", "opt-valid/0/7 valid/combined", "opt-valid/0/7 train_inner",
		"12.41 (valid/combined, update 85)", "DIVERGED at update 15</td>"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if n := strings.Count(out, "echarts.init("); n != 2 {
		t.Errorf("report has %d charts, want 2 (no serving charts for a training run)", n)
	}
	if strings.Contains(out, "Latency CDF") {
		t.Error("a training report has serving charts")
	}
}

// TestTrainingReportInChromium: both training charts draw.
func TestTrainingReportInChromium(t *testing.T) {
	chromium := testgate.Chromium(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(trainingReport(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--virtual-time-budget=5000", "--dump-dom", "file://"+page)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	if n := bytes.Count(dom, []byte("<canvas")); n != 2 {
		t.Fatalf("rendered DOM has %d canvases, want 2", n)
	}
}
