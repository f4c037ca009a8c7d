package trainlog_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/limitio/limitiotest"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/results/trainlog"
)

const sample = `{"epoch": 1, "loss": "15.864", "ppl": "59660.5", "wps": "739601", "ups": "0.71", "wpb": "1.04858e+06", "bsz": "512", "num_updates": "2", "lr": "5.60224e-07", "gnorm": null, "wall": "75"}`

func TestParseLine(t *testing.T) {
	ts := time.Date(2022, 11, 11, 14, 5, 29, 0, time.UTC)
	tests := []struct {
		name    string
		line    string
		ok      bool
		wantErr string
		prefix  string
		tag     string
	}{
		{"plain", "2022-11-11 14:05:29 | INFO | train_inner | " + sample, true, "", "", "train_inner"},
		{"legacy prefix", "slurm_procid 0 : 2022-11-11 14:05:29 | INFO | train_inner | " + sample, true, "", "slurm_procid 0 :", "train_inner"},
		{"srun label", "0: 2022-11-11 14:05:29 | INFO | train_inner | " + sample + "\r\n", true, "", "0:", "train_inner"},
		{"valid tag", "2022-11-11 14:05:29 | INFO | valid/dummy | " + sample, true, "", "", "valid/dummy"},
		{"not stats", "2022-11-11 14:05:29 | INFO | metaseq_cli.train | training on 8 devices (GPUs/TPUs)", false, "", "", ""},
		// metaseq.cli.train logs its config as a Python dict: not JSON, not a metric, not a warning.
		{"config dump", "2022-11-11 14:04:10 | INFO | metaseq.cli.train | {'_name': None, 'common': {'_name': None, 'log_format': 'json', 'fp16': True}}", false, "", "", ""},
		{"module logger with JSON", `2022-11-11 14:04:10 | INFO | metaseq.trainer | {"loss": "1"}`, false, "", "", ""},
		{"empty", "", false, "", "", ""},
		{"broken json", `2022-11-11 14:05:29 | INFO | train_inner | {"loss": "1", }`, true, "bad JSON", "", ""},
		{"bad time", "2022-13-45 14:05:29 | INFO | train_inner | " + sample, true, "bad timestamp", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, ok, err := trainlog.ParseLine(tc.line)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return
			}
			if rec.Prefix != tc.prefix || rec.Tag != tc.tag || !rec.Time.Equal(ts) || rec.Level != "INFO" {
				t.Errorf("record = %+v", rec)
			}
			want := map[string]float64{"epoch": 1, "loss": 15.864, "ppl": 59660.5, "wps": 739601, "ups": 0.71,
				"wpb": 1.04858e6, "bsz": 512, "num_updates": 2, "lr": 5.60224e-07, "wall": 75}
			if len(rec.Values) != len(want) {
				t.Errorf("values = %v", rec.Values)
			}
			for k, v := range want {
				if rec.Values[k] != v {
					t.Errorf("%s = %v, want %v", k, rec.Values[k], v)
				}
			}
			if len(rec.Nulls) != 1 || rec.Nulls[0] != "gnorm" {
				t.Errorf("nulls = %v", rec.Nulls)
			}
		})
	}
}

func TestPointSchema(t *testing.T) {
	rec, _, err := trainlog.ParseLine("2022-11-11 14:05:29 | INFO | train_inner | " + sample)
	if err != nil {
		t.Fatal(err)
	}
	p := rec.Point(map[string]string{"experiment": "e1", "job": "42", "task": ""})
	if p.Measurement != "training" || p.Tags["experiment"] != "e1" || p.Tags["job"] != "42" || p.Tags["tag"] != "train_inner" {
		t.Errorf("point = %+v", p)
	}
	if _, ok := p.Tags["task"]; ok {
		t.Error("empty tag kept")
	}
	if p.Fields["num_updates"] != int64(2) || p.Fields["bsz"] != int64(512) || p.Fields["wps"] != 739601.0 {
		t.Errorf("fields = %#v", p.Fields)
	}
	if _, ok := p.Fields["gnorm"]; ok {
		t.Error("null value stored as a field")
	}
	if _, err := results.AppendLine(nil, p); err != nil {
		t.Fatalf("point does not encode as line protocol: %v", err)
	}
}

func TestParseFileAndSummary(t *testing.T) {
	f, err := os.Open("testdata/metaseq-prs507.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := &trainlog.Collector{Tags: map[string]string{"experiment": "opt125m"}}
	errs, err := trainlog.Parse(f, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "line 7:") {
		t.Errorf("errs = %v, want one for line 7", errs)
	}
	tags := map[string]int{}
	for _, r := range c.Records() {
		tags[r.Tag]++
	}
	if len(c.Records()) != 4 || tags["train_inner"] != 3 || tags["valid/dummy"] != 1 {
		t.Fatalf("records by tag = %v, want 3 train_inner and 1 valid/dummy", tags)
	}
	s := c.Summary()
	if s.Intervals != 3 || s.SteadyIntervals != 2 || !s.HasSteadyState {
		t.Errorf("summary = %+v", s)
	}
	if got, want := s.MeanWPS, (739601.0+712727.0)/2; got != want {
		t.Errorf("mean wps = %v, want %v (first interval excluded)", got, want)
	}
	if s.LastWPS != 712727 || s.FinalLoss != 12.291 || s.FinalPPL != 5012.42 || s.FirstUpdate != 1 || s.LastUpdate != 85 {
		t.Errorf("summary = %+v", s)
	}
	if got, want := s.SecondsPerUpdate, (358.0-73.0)/84.0; math.Abs(got-want) > 1e-12 {
		t.Errorf("seconds/update = %v, want %v", got, want)
	}
	if s.MaxCUDAGB != 22.4 {
		t.Errorf("max cuda = %v", s.MaxCUDAGB)
	}
}

func TestCollectorUniqueTimes(t *testing.T) {
	var c trainlog.Collector
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var prev time.Time
	for i := 0; i < 5; i++ {
		p, ok := c.Add(trainlog.Record{Time: ts, Tag: "train_inner", Values: map[string]float64{"num_updates": float64(i)}})
		if !ok {
			t.Fatal("train_inner not collected")
		}
		if !p.Time.After(prev) {
			t.Fatalf("point %d time %v not after %v", i, p.Time, prev)
		}
		prev = p.Time
	}
	// Every progress line is collected by default; Include narrows it.
	if _, ok := c.Add(trainlog.Record{Time: ts, Tag: "valid/dummy"}); !ok {
		t.Error("valid line not collected by default")
	}
	only := trainlog.Collector{Include: func(tag string) bool { return tag == "train_inner" }}
	if _, ok := only.Add(trainlog.Record{Time: ts, Tag: "valid"}); ok {
		t.Error("Include did not leave the valid line out")
	}
}

// A summary rebuilt from the stored points (what results show does) is the
// summary of the log, through line protocol and back.
func TestSummarizePointsRoundTrip(t *testing.T) {
	for _, name := range []string{"metaseq-prs507.log", "metaseq-validation.log", "metaseq-diverged.log"} {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			c := &trainlog.Collector{Tags: map[string]string{"experiment": "e"}}
			trainlog.Parse(f, c)
			lp := filepath.Join(t.TempDir(), "metrics.lp")
			var b []byte
			for _, r := range c.Records() {
				var err error
				if b, err = results.AppendLine(b, r.Point(c.Tags)); err != nil {
					t.Fatal(err)
				}
			}
			os.WriteFile(lp, b, 0o644)
			var pts []results.Point
			if err := results.ReadLineFile(lp, "training", func(p results.Point) { pts = append(pts, p) }, nil); err != nil {
				t.Fatal(err)
			}
			if got, want := trainlog.SummarizePoints(pts), c.Summary(); !reflect.DeepEqual(got, want) {
				t.Errorf("from points %+v\nfrom log    %+v", got, want)
			}
			runs := trainlog.SummarizeRuns(pts)
			if len(runs) != 1 || runs[0].Experiment != "e" || !reflect.DeepEqual(runs[0].Summary, c.Summary()) {
				t.Errorf("runs = %+v", runs)
			}
		})
	}
}

// TestFollow writes a log line by line (with a line split across writes)
// while Follow tails it into a real local line-protocol file.
func TestFollow(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "train.log")
	sink, err := results.OpenLineFile(filepath.Join(dir, "metrics.lp"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type out struct {
		res trainlog.Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		r, err := trainlog.Follow(ctx, logPath, trainlog.FollowOptions{
			Sink: sink, Poll: 10 * time.Millisecond, StopAtDone: true,
			Collector: &trainlog.Collector{Tags: map[string]string{"experiment": "follow", "job": "7"}},
		})
		done <- out{r, err}
	}()
	time.Sleep(50 * time.Millisecond) // the log does not exist yet
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	countPoints := func() int {
		sink.Flush(ctx)
		n := 0
		results.ReadLineFile(filepath.Join(dir, "metrics.lp"), "training", func(results.Point) { n++ }, nil)
		return n
	}
	for i := 1; i <= 10; i++ {
		line := fmt.Sprintf(`0: 2026-01-01 00:00:%02d | INFO | train_inner | {"loss": "%g", "wps": "%d", "ups": "1", "num_updates": "%d", "wall": "%d"}`+"\n",
			i, 10-float64(i)/10, 1000*i*min(i-1, 1), 5*i, 10+5*i)
		half := len(line) / 2
		lf.WriteString(line[:half])
		time.Sleep(15 * time.Millisecond)
		lf.WriteString(line[half:])
		if i == 5 {
			// Points reach the sink while the job runs.
			deadline := time.Now().Add(5 * time.Second)
			for countPoints() < 5 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := countPoints(); n != 5 {
				t.Fatalf("after 5 lines the sink has %d points", n)
			}
		}
	}
	lf.WriteString("0: 2026-01-01 00:01:00 | INFO | metaseq_cli.train | done training in 60.0 seconds\n")
	lf.Close()
	var o out
	select {
	case o = <-done:
	case <-ctx.Done():
		t.Fatal("Follow did not stop at the done line")
	}
	if o.err != nil || !o.res.Finished || o.res.Points != 10 {
		t.Fatalf("result = %+v, err %v", o.res, o.err)
	}
	if o.res.Summary.LastUpdate != 50 || o.res.Summary.SecondsPerUpdate != 1 || o.res.Summary.FinalLoss != 9 {
		t.Errorf("summary = %+v", o.res.Summary)
	}
	sink.Close()
	var got []results.Point
	results.ReadLineFile(filepath.Join(dir, "metrics.lp"), "training", func(p results.Point) { got = append(got, p) }, nil)
	if len(got) != 10 || got[0].Tags["job"] != "7" || got[9].Fields["num_updates"] != int64(50) {
		t.Errorf("stored %d points, first %+v", len(got), got)
	}
}

func TestFollowReplacedLog(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "train.log")
	line := func(u int) string {
		return fmt.Sprintf(`2026-01-01 00:00:%02d | INFO | train_inner | {"num_updates": "%d", "wps": "1", "ups": "1"}`+"\n", u, u)
	}
	os.WriteFile(p, []byte(line(1)+line(2)+line(3)), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan trainlog.Result, 1)
	go func() {
		r, _ := trainlog.Follow(ctx, p, trainlog.FollowOptions{Poll: 10 * time.Millisecond, StopAtDone: true})
		done <- r
	}()
	time.Sleep(100 * time.Millisecond)
	// A new log replaces the old one (a restarted job writing afresh).
	tmp := filepath.Join(dir, "new.log")
	os.WriteFile(tmp, []byte(line(4)+"2026-01-01 00:00:09 | INFO | metaseq_cli.train | done training in 9 seconds\n"), 0o644)
	os.Rename(tmp, p)
	select {
	case r := <-done:
		if r.Points != 4 || !r.Finished || r.Summary.LastUpdate != 4 {
			t.Fatalf("result = %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("follow did not notice the replaced log")
	}
}

func TestFollowCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := trainlog.Follow(ctx, filepath.Join(t.TempDir(), "never.log"), trainlog.FollowOptions{Poll: 10 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add("slurm_procid 0 : 2022-11-11 14:05:29 | INFO | train_inner | " + sample)
	f.Add(`0: 2022-11-11 14:05:29 | INFO | train_inner | {"a": null, "b": "1e309", "c": "nan", "d": 3}`)
	f.Add("2022-11-11 14:05:29 | INFO | x | {}")
	f.Fuzz(func(t *testing.T, line string) {
		rec, ok, err := trainlog.ParseLine(line)
		if !ok || err != nil {
			return
		}
		p := rec.Point(map[string]string{"experiment": "fuzz"})
		for k, v := range p.Fields {
			if x, isF := v.(float64); isF && (math.IsNaN(x) || math.IsInf(x, 0)) {
				t.Fatalf("field %s = %v", k, x)
			}
		}
		if _, err := results.AppendLine(nil, p); err != nil && len(p.Fields) > 0 {
			t.Fatalf("parsed point does not encode: %v (%+v)", err, p)
		}
	})
}

// Validation and end-of-epoch lines as metaseq's progress bar writes them
// (keys prefixed with the tag), between the config dump and the other lines
// of a real log: stored with their tag, keys without the prefix, and
// summarised per subset.
func TestValidationLog(t *testing.T) {
	f, err := os.Open("testdata/metaseq-validation.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := &trainlog.Collector{}
	errs, err := trainlog.Parse(f, c)
	if err != nil || len(errs) != 0 {
		t.Fatalf("errs = %v, err %v (the config dump must not warn)", errs, err)
	}
	tags := map[string]int{}
	var valid, train *trainlog.Record
	for i, r := range c.Records() {
		tags[r.Tag]++
		switch r.Tag {
		case "valid":
			valid = &c.Records()[i]
		case "train":
			train = &c.Records()[i]
		}
	}
	if want := map[string]int{"train_inner": 3, "valid": 2, "valid/combined": 2, "train": 1}; !reflect.DeepEqual(tags, want) {
		t.Fatalf("records by tag = %v, want %v", tags, want)
	}
	if valid.Values["loss"] != 12.406 || valid.Values["num_updates"] != 85 || valid.Values["best_loss"] != 12.406 {
		t.Errorf("valid values = %v", valid.Values)
	}
	if train.Values["loss"] != 13.016 || train.Values["train_wall"] != 132 || train.Values["wall"] != 365 {
		t.Errorf("train values = %v", train.Values)
	}
	p := valid.Point(map[string]string{"experiment": "e"})
	if p.Tags["tag"] != "valid" || p.Fields["loss"] != 12.406 || p.Fields["num_updates"] != int64(85) {
		t.Errorf("valid point = %+v", p)
	}
	s := c.Summary()
	want := []trainlog.Validation{
		{Subset: "valid", Evaluations: 2, LastLoss: 12.406, LastPPL: 5427.01, LastUpdate: 85, BestLoss: 12.406, BestUpdate: 85},
		{Subset: "valid/combined", Evaluations: 2, LastLoss: 12.406, LastPPL: 5427.01, LastUpdate: 85, BestLoss: 12.406, BestUpdate: 85},
	}
	if !reflect.DeepEqual(s.Validation, want) || s.EpochEnds != 1 || s.Intervals != 3 || s.Diverged != nil {
		t.Errorf("summary = %+v", s)
	}
	var b strings.Builder
	s.WriteText(&b)
	if !strings.Contains(b.String(), "validation valid: last loss 12.41 at update 85, best 12.41 at update 85 (2 evaluations)") {
		t.Errorf("text:\n%s", b.String())
	}
	// A subset named valid_<subset> (metaseq's valid_subset list) keys its
	// values valid_<subset>_…: the same field names.
	rec, ok, err := trainlog.ParseLine(`2022-11-11 16:04:31 | INFO | valid_wiki | {"epoch": 1, "valid_wiki_loss": "3.25", "valid_wiki_ppl": "9.51", "valid_wiki_num_updates": "40"}`)
	if !ok || err != nil || !trainlog.IsValidTag(rec.Tag) || rec.Values["loss"] != 3.25 || rec.Values["ppl"] != 9.51 || rec.Values["num_updates"] != 40 {
		t.Errorf("valid_wiki: %+v %v %v", rec, ok, err)
	}
	// The best is the lowest loss, not the last one.
	recs := append([]trainlog.Record(nil), c.Records()...)
	recs = append(recs, trainlog.Record{Tag: "valid", Values: map[string]float64{"loss": 12.9, "num_updates": 90}})
	if v := trainlog.Summarize(recs).Validation[0]; v.LastLoss != 12.9 || v.LastUpdate != 90 || v.BestLoss != 12.406 || v.BestUpdate != 85 || v.Evaluations != 3 {
		t.Errorf("after a worse evaluation: %+v", v)
	}
}

// A run whose loss becomes inf, then NaN (Python's {:g} of them): recorded
// as diverged at the update of the first such line, never as loss 0.
func TestDivergedLog(t *testing.T) {
	f, err := os.Open("testdata/metaseq-diverged.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := &trainlog.Collector{}
	if errs, err := trainlog.Parse(f, c); err != nil || len(errs) != 0 {
		t.Fatalf("errs = %v, err %v", errs, err)
	}
	s := c.Summary()
	d := s.Diverged
	if d == nil || d.Update != 15 || d.Tag != "train_inner" || d.Values != "gnorm=inf,loss=inf,ppl=inf" {
		t.Fatalf("diverged = %+v", d)
	}
	if s.FinalLoss != 14.102 || s.FinalLossUpdate != 10 || s.LastUpdate != 20 || s.Intervals != 4 {
		t.Errorf("summary = %+v", s)
	}
	if s.Failed() == "" || !strings.Contains(s.Failed(), "update 15") {
		t.Errorf("Failed() = %q", s.Failed())
	}
	recs := c.Records()
	p := recs[3].Point(nil)
	if p.Fields["diverged"] != true || p.Fields["nonfinite"] != "gnorm=nan,loss=nan,ppl=nan" {
		t.Errorf("NaN point fields = %v", p.Fields)
	}
	if _, ok := p.Fields["loss"]; ok {
		t.Error("a NaN loss became a field")
	}
	if p.Fields["num_updates"] != int64(20) || p.Fields["wps"] != 740112.0 {
		t.Errorf("finite values of the diverged line lost: %v", p.Fields)
	}
	if _, err := results.AppendLine(nil, p); err != nil {
		t.Fatal(err)
	}
	if p := recs[1].Point(nil); p.Fields["diverged"] != nil || p.Fields["nonfinite"] != nil {
		t.Errorf("a finite line is marked: %v", p.Fields)
	}
	var b strings.Builder
	s.WriteText(&b)
	text := b.String()
	for _, want := range []string{"last finite loss 14.1 bits/token at update 10", "DIVERGED at update 15: train_inner logged gnorm=inf,loss=inf,ppl=inf"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "final loss 0") {
		t.Errorf("text reports a final loss of 0:\n%s", text)
	}
	// A non-finite value that is not a loss (an fp16 overflow's gnorm) is
	// kept as nonfinite but is not a divergence.
	rec, _, _ := trainlog.ParseLine(`2023-06-08 09:01:24 | INFO | train_inner | {"loss": "14.1", "gnorm": "inf", "num_updates": "15"}`)
	if rec.Diverged() || rec.NonFinite["gnorm"] != "inf" || rec.Values["loss"] != 14.1 {
		t.Errorf("gnorm overflow: %+v", rec)
	}
	// Beyond float64 is infinite too.
	rec, _, _ = trainlog.ParseLine(`2023-06-08 09:01:24 | INFO | valid | {"valid_loss": "1e999", "valid_num_updates": "15"}`)
	if !rec.Diverged() {
		t.Errorf("valid_loss 1e999: %+v", rec)
	}
}

// train parse reads its log within limitio.Log's line limit; a log has no
// size limit (train follow reads it as it grows).
func TestParseFileRefusesHostileFiles(t *testing.T) {
	for _, c := range limitiotest.Cases(t, limitio.Log, "train.log") {
		t.Run(c.Name, func(t *testing.T) {
			_, err := trainlog.ParseFile(t.Context(), c.Path, &trainlog.Collector{})
			limitiotest.Check(t, c, err)
		})
	}
}

// Follow reports a line over the limit, naming the file, the line and the
// limit, skips it and goes on: the log belongs to a job still running.
func TestFollowSkipsAnOverlongLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "train.log")
	stats := func(u int) string {
		return fmt.Sprintf(`2026-01-01 00:00:%02d | INFO | train_inner | {"num_updates": "%d", "wps": "1", "ups": "1"}`+"\n", u, u)
	}
	log := stats(1) + strings.Repeat("x", limitio.Log.Line+1) + stats(99)[20:] + stats(2) +
		"2026-01-01 00:00:09 | INFO | metaseq_cli.train | done training in 9 seconds\n"
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	var reported []error
	res, err := trainlog.Follow(t.Context(), p, trainlog.FollowOptions{Poll: 10 * time.Millisecond, StopAtDone: true,
		OnError: func(e error) { reported = append(reported, e) }})
	if err != nil || !res.Finished || res.Summary.Intervals != 2 {
		t.Fatalf("got %+v, %v; want both stats lines and the end", res, err)
	}
	if len(reported) != 1 || reported[0].Error() != p+":2: line longer than 1 MiB, the limit for a training log" {
		t.Fatalf("reported %v", reported)
	}
}
