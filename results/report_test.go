package results

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/testgate"
)

// reportFixture writes a three-task experiment to a local store and loads
// the report data from it.
func reportFixture(t testing.TB) *ReportData {
	t.Helper()
	expDir := t.TempDir()
	start := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	for i, rate := range []float64{100, 250, 400, 550} {
		lf, err := OpenLineFile(filepath.Join(expDir, "tasks", fmt.Sprint(i), layout.MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		meta, snaps := syntheticRun("report-demo", i, rate, start.Add(time.Duration(i)*40*time.Second), 30)
		writeRun(t, lf, meta, snaps)
		if err := lf.Close(); err != nil {
			t.Fatal(err)
		}
	}
	d, err := LoadReport(context.Background(), NewLocalStore(expDir), "report-demo", "local store "+expDir)
	if err != nil {
		t.Fatal(err)
	}
	d.Generated = start.Add(time.Hour)
	return d
}

func TestWriteReportSelfContained(t *testing.T) {
	d := reportFixture(t)
	var buf bytes.Buffer
	if err := WriteReport(&buf, d); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"Latency percentiles vs offered rate", "Throughput over time", "p99 latency over time",
		"SLO attainment vs SLO factor", "Latency CDF", "t003-rate=550", "Apache ECharts 5.6.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out, `src="http`) || strings.Contains(out, `href="http`) {
		t.Errorf("report references a remote asset")
	}
	if n := strings.Count(out, "echarts.init("); n != 5 {
		t.Errorf("report has %d charts, want 5", n)
	}
	// An empty experiment is an error, not an empty page.
	if err := WriteReport(&bytes.Buffer{}, &ReportData{Experiment: "x", Results: &Results{}}); err == nil {
		t.Error("empty experiment: no error")
	}
}

// TestReportInChromium opens the report in headless Chromium, checks that
// every chart drew a canvas, and takes a screenshot (kept in
// $GPUORCH_REPORT_SCREENSHOT_DIR when set, for a person to look at).
func TestReportInChromium(t *testing.T) {
	chromium := testgate.Chromium(t)
	checkInChromium(t, chromium, reportFixture(t), 5, "report.png")
}

// checkInChromium renders d's report, opens it in headless Chromium, checks
// that each of the charts drew a canvas and that the screenshot is not blank.
func checkInChromium(t *testing.T, chromium string, d *ReportData, charts int, shotName string) {
	t.Helper()
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteReport(f, d); err != nil {
		t.Fatal(err)
	}
	f.Close()
	shotDir := os.Getenv("GPUORCH_REPORT_SCREENSHOT_DIR")
	if shotDir == "" {
		shotDir = dir
	}
	shot := filepath.Join(shotDir, shotName)
	flags := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
		"--user-data-dir=" + filepath.Join(dir, "profile"), "--virtual-time-budget=5000"}
	run := func(extra ...string) []byte {
		cmd := exec.Command(chromium, append(append([]string{}, flags...), extra...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
		}
		return out
	}
	// One launch: the DOM after the scripts ran, and the screenshot.
	dom := run("--dump-dom", "--screenshot="+shot, "--window-size=1200,2600", "file://"+page)
	if n := bytes.Count(dom, []byte("<canvas")); n != charts {
		t.Fatalf("rendered DOM has %d canvases, want %d (one per chart)", n, charts)
	}
	pf, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	img, err := png.Decode(pf)
	if err != nil {
		t.Fatal(err)
	}
	if frac := nonWhite(img); frac < 0.02 {
		t.Fatalf("screenshot is nearly blank (%.3f of pixels drawn)", frac)
	}
	t.Logf("screenshot: %s", shot)
}

func nonWhite(img image.Image) float64 {
	b := img.Bounds()
	n, total := 0, 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			total++
			if r < 0xf000 || g < 0xf000 || bl < 0xf000 {
				n++
			}
		}
	}
	return float64(n) / float64(total)
}
