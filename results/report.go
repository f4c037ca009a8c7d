package results

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"html"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/components"
	"github.com/go-echarts/go-echarts/v2/opts"
)

// echartsJS is Apache ECharts 5.6.0, inlined into every report so the page
// works offline (see report_assets/README.md for its origin and license).
//
//go:embed report_assets/echarts.min.js
var echartsJS []byte

// ReportData is what an HTML report shows: the review model plus the raw
// points the charts need.
type ReportData struct {
	Experiment string
	Source     string // where the points came from, for the header
	Generated  time.Time
	Results    *Results
	Summary    []Point // serving_summary points (breakdown total and step)
	Intervals  []Point // serving points for all requests (no class or model)
	Training   []Point // training points (Metaseq logs: train_inner, valid…, train)
	// Decisions are the deployment points of kind decision (tasks that
	// ran against a deployment of replicas).
	Decisions []Point
}

// LoadReport reads what a report on experiment needs from src: of a task
// that ran more than once, its latest attempt (as Load).
func LoadReport(ctx context.Context, src Source, experiment, sourceName string) (*ReportData, error) {
	res, sum, ivl, err := load(ctx, src, experiment, true)
	if err != nil {
		return nil, err
	}
	q := Query{Measurement: MeasTraining}
	if experiment != "" {
		q.Experiments = []string{experiment}
	}
	tr, err := src.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read %s points: %w", MeasTraining, err)
	}
	q.Measurement = MeasDeployment
	dep, err := src.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read %s points: %w", MeasDeployment, err)
	}
	d := &ReportData{Experiment: experiment, Source: sourceName, Generated: time.Now(), Results: res, Summary: sum, Training: tr}
	for _, p := range dep {
		if p.Tags[TagKind] == KindDecision {
			d.Decisions = append(d.Decisions, p)
		}
	}
	// The all-requests series of a task has neither class nor model; a task
	// swept over models tags every point with its model, and then that
	// series is the task's.
	type tk struct{ exp, task string }
	hasAll := map[tk]bool{}
	for _, p := range ivl {
		if p.Tags[TagClass] == "" && p.Tags[TagModel] == "" {
			hasAll[tk{p.Tags[TagExperiment], p.Tags[TagTask]}] = true
		}
	}
	for _, p := range ivl {
		if p.Tags[TagClass] != "" {
			continue
		}
		if p.Tags[TagModel] == "" || !hasAll[tk{p.Tags[TagExperiment], p.Tags[TagTask]}] {
			d.Intervals = append(d.Intervals, p)
		}
	}
	return d, nil
}

var cdfQuantiles = []struct {
	field string
	q     float64
}{{"min", 0}, {"p25", 25}, {"p50", 50}, {"p75", 75}, {"p90", 90}, {"p95", 95}, {"p99", 99}, {"p999", 99.9}, {"max", 100}}

const chartWidth, chartHeight = "1100px", "420px"

func baseOpts(title, sub, xName, xType, yName string) []charts.GlobalOpts {
	return []charts.GlobalOpts{
		charts.WithInitializationOpts(opts.Initialization{Width: chartWidth, Height: chartHeight}),
		charts.WithTitleOpts(opts.Title{Title: title, Subtitle: sub, Left: "center"}),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "52", Type: "scroll"}),
		charts.WithGridOpts(opts.Grid{Top: "95", Left: "80", Right: "50", Bottom: "60"}),
		charts.WithXAxisOpts(opts.XAxis{Name: xName, Type: xType, NameLocation: "middle", NameGap: 30, Scale: opts.Bool(xType == "value")}),
		charts.WithYAxisOpts(opts.YAxis{Name: yName, Type: "value"}),
		charts.WithAnimation(false),
	}
}

func lineOpts() charts.SeriesOpts {
	return charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(true), SymbolSize: 6})
}

func xy(x, y float64) opts.LineData { return opts.LineData{Value: []any{round4(x), round4(y)}} }

func round4(v float64) float64 {
	s := fmt.Sprintf("%.4g", v)
	var f float64
	fmt.Sscan(s, &f)
	return f
}

// latencyVsRate: corrected latency percentiles of each task against its
// offered rate.
func latencyVsRate(d *ReportData) *charts.Line {
	c := charts.NewLine()
	c.SetGlobalOptions(baseOpts("Latency percentiles vs offered rate", "corrected latency (from the intended send time), one point per task",
		"offered rate (req/s)", "value", "latency (ms)")...)
	rows := append([]Row(nil), d.Results.Tasks...)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].OfferedRate < rows[j].OfferedRate })
	type pick struct {
		name string
		get  func(*Dist) float64
	}
	for _, p := range []pick{{"p50", func(x *Dist) float64 { return x.P50 }}, {"p90", func(x *Dist) float64 { return x.P90 }},
		{"p99", func(x *Dist) float64 { return x.P99 }}, {"p99.9", func(x *Dist) float64 { return x.P999 }}} {
		var data []opts.LineData
		for _, r := range rows {
			if r.Latency != nil && r.Latency.Count > 0 {
				data = append(data, xy(r.OfferedRate, p.get(r.Latency)))
			}
		}
		c.AddSeries(p.name, data, lineOpts())
	}
	return c
}

// overTime: one series per task of a serving field against time.
func overTime(d *ReportData, title, sub, field, yName string) *charts.Line {
	c := charts.NewLine()
	c.SetGlobalOptions(append(baseOpts(title, sub, "time", "time", yName),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "inside"}))...)
	byTask := map[string][]Point{}
	var tasks []string
	for _, p := range d.Intervals {
		t := p.Tags[TagTask]
		if _, ok := byTask[t]; !ok {
			tasks = append(tasks, t)
		}
		byTask[t] = append(byTask[t], p)
	}
	sort.Slice(tasks, func(i, j int) bool { return NaturalLess(tasks[i], tasks[j]) })
	for _, t := range tasks {
		pts := byTask[t]
		sort.Slice(pts, func(i, j int) bool { return pts[i].Time.Before(pts[j].Time) })
		var data []opts.LineData
		for _, p := range pts {
			if v, ok := fieldFloat(p.Fields, field); ok {
				data = append(data, opts.LineData{Value: []any{p.Time.UnixMilli(), round4(v)}})
			}
		}
		c.AddSeries(t, data, charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false)}))
	}
	return c
}

// replicasOverTime: for each task run against a deployment, its ready and
// desired replicas (steps, left axis) beside its corrected p99 latency per
// interval (right axis), against time.
func replicasOverTime(d *ReportData) *charts.Line {
	c := charts.NewLine()
	c.SetGlobalOptions(append(baseOpts("Replicas over time beside latency",
		"deployment: ready and desired replicas (steps, left) and corrected p99 per interval (right), per task", "time", "time", "replicas"),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "inside"}),
		charts.WithYAxisOpts(opts.YAxis{Name: "replicas", Type: "value", Min: 0, MinInterval: 1}))...)
	c.ExtendYAxis(opts.YAxis{Name: "p99 latency (ms)", Type: "value", Position: "right"})
	byTask := map[string][]Point{}
	var tasks []string
	for _, p := range d.Decisions {
		t := p.Tags[TagTask]
		if _, ok := byTask[t]; !ok {
			tasks = append(tasks, t)
		}
		byTask[t] = append(byTask[t], p)
	}
	sort.Slice(tasks, func(i, j int) bool { return NaturalLess(tasks[i], tasks[j]) })
	step := charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false), Step: "end"})
	for _, t := range tasks {
		pts := byTask[t]
		sort.Slice(pts, func(i, j int) bool { return pts[i].Time.Before(pts[j].Time) })
		var ready, desired []opts.LineData
		for _, p := range pts {
			at := p.Time.UnixMilli()
			ready = append(ready, opts.LineData{Value: []any{at, fieldInt(p.Fields, "ready")}})
			desired = append(desired, opts.LineData{Value: []any{at, fieldInt(p.Fields, "desired")}})
		}
		c.AddSeries("ready "+t, ready, step)
		c.AddSeries("desired "+t, desired, step, charts.WithLineStyleOpts(opts.LineStyle{Type: "dashed"}))
		var p99 []opts.LineData
		for _, p := range d.Intervals {
			if p.Tags[TagTask] != t {
				continue
			}
			if v, ok := fieldFloat(p.Fields, "latency_p99"); ok {
				p99 = append(p99, opts.LineData{Value: []any{p.Time.UnixMilli(), round4(v)}})
			}
		}
		sort.Slice(p99, func(i, j int) bool { return p99[i].Value.([]any)[0].(int64) < p99[j].Value.([]any)[0].(int64) })
		c.AddSeries("p99 "+t, p99, charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false), YAxisIndex: 1}))
	}
	return c
}

// sloAttainment: attainment (%) against SLO factor, one series per task,
// from the run's SLO-step breakdown, or from the interval points when the
// run had no steps.
func sloAttainment(d *ReportData) *charts.Line {
	c := charts.NewLine()
	c.SetGlobalOptions(baseOpts("SLO attainment vs SLO factor", "share of offered requests completed within factor × batch-1 latency",
		"SLO factor", "value", "SLO attainment (%)")...)
	type pt struct{ f, a float64 }
	series := map[string][]pt{}
	var tasks []string
	add := func(task string, f, a float64) {
		if _, ok := series[task]; !ok {
			tasks = append(tasks, task)
		}
		series[task] = append(series[task], pt{f, a})
	}
	for _, r := range d.Results.Steps {
		if r.SLOAttainment != nil && r.SLOFactor > 0 {
			add(r.Task, r.SLOFactor, *r.SLOAttainment*100)
		}
	}
	if len(tasks) == 0 { // no steps: group intervals by the factor in force
		type key struct {
			task string
			f    float64
		}
		met, off := map[key]float64{}, map[key]float64{}
		var keys []key
		for _, p := range d.Intervals {
			f, _ := fieldFloat(p.Fields, "slo_factor")
			if f <= 0 {
				continue
			}
			k := key{p.Tags[TagTask], f}
			if _, ok := off[k]; !ok {
				keys = append(keys, k)
			}
			met[k] += float64(fieldInt(p.Fields, "slo_met"))
			off[k] += float64(fieldInt(p.Fields, "offered"))
		}
		for _, k := range keys {
			if off[k] > 0 {
				add(k.task, k.f, met[k]/off[k]*100)
			}
		}
	}
	if len(tasks) == 0 {
		// No SLO factor (an absolute deadline, or none): attainment per task
		// against offered rate says the same thing for this experiment.
		c.SetGlobalOptions(baseOpts("SLO attainment vs offered rate", "this experiment has no SLO factor (absolute deadline or none): one point per task",
			"offered rate (req/s)", "value", "SLO attainment (%)")...)
		rows := append([]Row(nil), d.Results.Tasks...)
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].OfferedRate < rows[j].OfferedRate })
		var data []opts.LineData
		for _, r := range rows {
			if r.SLOAttainment != nil {
				data = append(data, xy(r.OfferedRate, *r.SLOAttainment*100))
			}
		}
		c.AddSeries("SLO attainment", data, lineOpts())
		return c
	}
	sort.Slice(tasks, func(i, j int) bool { return NaturalLess(tasks[i], tasks[j]) })
	for _, t := range tasks {
		s := series[t]
		sort.Slice(s, func(i, j int) bool { return s[i].f < s[j].f })
		var data []opts.LineData
		for _, p := range s {
			data = append(data, xy(p.f, p.a))
		}
		c.AddSeries(t, data, lineOpts())
	}
	return c
}

// latencyCDF: each task's corrected latency distribution, from the
// percentile fields of its whole-run summary.
func latencyCDF(d *ReportData) *charts.Line {
	c := charts.NewLine()
	c.SetGlobalOptions(baseOpts("Latency CDF", "from each task's recorded percentiles (min, p25 … p99.9, max)",
		"latency (ms)", "value", "requests at or below (%)")...)
	var tasks []Point
	for _, p := range d.Summary {
		if p.Tags[TagBreakdown] == BreakdownTotal {
			tasks = append(tasks, p)
		}
	}
	sort.Slice(tasks, func(i, j int) bool { return NaturalLess(tasks[i].Tags[TagTask], tasks[j].Tags[TagTask]) })
	for _, p := range tasks {
		var data []opts.LineData
		for _, q := range cdfQuantiles {
			if v, ok := fieldFloat(p.Fields, "latency_"+q.field); ok {
				data = append(data, xy(v, q.q))
			}
		}
		if len(data) > 0 {
			c.AddSeries(p.Tags[TagTask], data, lineOpts())
		}
	}
	return c
}

var echartsScriptTag = regexp.MustCompile(`<script src="[^"]*echarts\.min\.js"></script>`)

// hasServing reports whether the report has serving results to chart.
func (d *ReportData) hasServing() bool {
	return d.Results != nil && (len(d.Results.Tasks) > 0 || len(d.Intervals) > 0)
}

// trainingRun is one training run's points (same experiment, task, job).
type trainingRun struct {
	label string
	pts   []Point
}

// trainingRuns groups the training points by run, in time order within each.
func (d *ReportData) trainingRuns() []trainingRun {
	var runs []trainingRun
	idx := map[string]int{}
	for _, p := range d.Training {
		var parts []string
		for _, k := range []string{TagExperiment, TagTask, "job"} {
			if v := p.Tags[k]; v != "" {
				parts = append(parts, v)
			}
		}
		label := strings.Join(parts, "/")
		i, ok := idx[label]
		if !ok {
			i = len(runs)
			idx[label] = i
			runs = append(runs, trainingRun{label: label})
		}
		runs[i].pts = append(runs[i].pts, p)
	}
	for _, r := range runs {
		sort.SliceStable(r.pts, func(i, j int) bool { return r.pts[i].Time.Before(r.pts[j].Time) })
	}
	return runs
}

// divergedAt is the update of the run's first diverged point, or -1.
func (r trainingRun) divergedAt() int64 {
	for _, p := range r.pts {
		if b, _ := p.Fields["diverged"].(bool); b {
			return fieldInt(p.Fields, "num_updates")
		}
	}
	return -1
}

// trainingLoss: training loss (train_inner) and each validation subset's
// loss (tags valid…) against the update, one series each per run; a run that
// diverged says at which update in the subtitle (its inf/NaN losses cannot
// be drawn).
func trainingLoss(d *ReportData) *charts.Line {
	c := charts.NewLine()
	runs := d.trainingRuns()
	sub := "bits/token: train_inner lines, and validation lines per subset"
	for _, r := range runs {
		if u := r.divergedAt(); u >= 0 {
			sub += fmt.Sprintf("; %s DIVERGED at update %d", r.label, u)
		}
	}
	var maxUpdate int64
	for _, p := range d.Training {
		maxUpdate = max(maxUpdate, fieldInt(p.Fields, "num_updates"))
	}
	c.SetGlobalOptions(append(baseOpts("Training and validation loss", sub, "update", "value", "loss (bits/token)"),
		// Up to the last update logged, so a divergence's mark shows after
		// the last finite loss.
		charts.WithXAxisOpts(opts.XAxis{Name: "update", Type: "value", NameLocation: "middle", NameGap: 30, Scale: opts.Bool(true), Max: maxUpdate}))...)
	for _, r := range runs {
		var tags []string
		series := map[string][]opts.LineData{}
		for _, p := range r.pts {
			tag := p.Tags["tag"]
			if tag != "train_inner" && !strings.HasPrefix(tag, "valid") {
				continue
			}
			loss, ok := fieldFloat(p.Fields, "loss")
			u, uok := fieldFloat(p.Fields, "num_updates")
			if !ok || !uok {
				continue
			}
			if _, seen := series[tag]; !seen {
				tags = append(tags, tag)
			}
			series[tag] = append(series[tag], xy(u, loss))
		}
		for i, tag := range tags {
			name := tag
			if len(runs) > 1 {
				name = r.label + " " + tag
			}
			so := []charts.SeriesOpts{lineOpts()}
			if u := r.divergedAt(); u >= 0 && i == 0 {
				// A vertical line where the loss became inf or NaN.
				so = append(so, charts.WithMarkLineNameXAxisItemOpts(opts.MarkLineNameXAxisItem{Name: "diverged", XAxis: u}))
			}
			c.AddSeries(name, series[tag], so...)
		}
	}
	return c
}

// trainingThroughput: words (tokens)/s of the train_inner lines against the
// update, one series per run.
func trainingThroughput(d *ReportData) *charts.Line {
	c := charts.NewLine()
	c.SetGlobalOptions(baseOpts("Training throughput", "words (tokens)/s across all GPUs, train_inner lines (the first interval's 0 includes start-up)",
		"update", "value", "words/s")...)
	for _, r := range d.trainingRuns() {
		var data []opts.LineData
		for _, p := range r.pts {
			if p.Tags["tag"] != "train_inner" {
				continue
			}
			wps, ok := fieldFloat(p.Fields, "wps")
			u, uok := fieldFloat(p.Fields, "num_updates")
			if ok && uok {
				data = append(data, xy(u, wps))
			}
		}
		c.AddSeries(r.label, data, lineOpts())
	}
	return c
}

// WriteReport writes a self-contained HTML page, with ECharts inlined (no
// network needed): for serving results a header with the task table and
// five charts; for training runs a table of runs and charts of the loss
// (training and validation) and throughput against the update.
func WriteReport(w io.Writer, d *ReportData) error {
	if !d.hasServing() && len(d.Training) == 0 {
		return fmt.Errorf("report: experiment %q has no serving or training points", d.Experiment)
	}
	page := components.NewPage()
	page.SetPageTitle("gpuorch report: " + d.Experiment)
	page.SetLayout(components.PageFlexLayout)
	if d.hasServing() {
		page.AddCharts(
			latencyVsRate(d),
			overTime(d, "Throughput over time", "completed requests/s per interval, per task", "achieved_rate", "throughput (req/s)"),
			overTime(d, "p99 latency over time", "corrected p99 per interval, per task", "latency_p99", "p99 latency (ms)"),
			sloAttainment(d),
			latencyCDF(d),
		)
		if len(d.Decisions) > 0 {
			page.AddCharts(replicasOverTime(d))
		}
	}
	if len(d.Training) > 0 {
		page.AddCharts(trainingLoss(d), trainingThroughput(d))
	}
	var buf bytes.Buffer
	if err := page.Render(&buf); err != nil {
		return fmt.Errorf("report: render: %w", err)
	}
	out := buf.String()
	loc := echartsScriptTag.FindStringIndex(out)
	if loc == nil {
		return fmt.Errorf("report: go-echarts output has no echarts.min.js script tag to inline")
	}
	// echarts.min.js contains no "</script"; guard anyway so the inlined code
	// cannot end the element early.
	js := strings.ReplaceAll(string(echartsJS), "</script", `<\/script`)
	out = out[:loc[0]] + "<script>/* Apache ECharts 5.6.0, Apache License 2.0 */\n" + js + "\n</script>" + out[loc[1]:]
	if strings.Contains(out, "https://") && strings.Contains(out, "go-echarts-assets") {
		return fmt.Errorf("report: a remote asset is still referenced")
	}
	i := strings.Index(out, "<body>")
	if i < 0 {
		return fmt.Errorf("report: go-echarts output has no <body>")
	}
	i += len("<body>")
	out = out[:i] + reportHeader(d) + out[i:]
	_, err := io.WriteString(w, out)
	return err
}

func reportHeader(d *ReportData) string {
	var b strings.Builder
	b.WriteString(`
<style>
 body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #222; }
 h1 { font-size: 22px; margin: 0 0 4px 0; } .meta { color: #666; font-size: 13px; margin-bottom: 14px; }
 table.tasks { border-collapse: collapse; font-size: 13px; margin: 0 auto 18px auto; }
 table.tasks th, table.tasks td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
 table.tasks th { background: #f3f5f8; } table.tasks td.l, table.tasks th.l { text-align: left; }
 .item { margin: 10px auto !important; border: 1px solid #e6e6e6; border-radius: 6px; padding: 6px; }
</style>
`)
	fmt.Fprintf(&b, "<h1>gpuorch report: %s</h1>\n", html.EscapeString(d.Experiment))
	runs := d.trainingRuns()
	what := fmt.Sprintf("%d tasks", len(d.Results.Tasks))
	if !d.hasServing() {
		what = fmt.Sprintf("%d training run(s)", len(runs))
	}
	fmt.Fprintf(&b, `<div class="meta">%s · source: %s · generated %s</div>`+"\n",
		what, html.EscapeString(d.Source), d.Generated.UTC().Format("2006-01-02 15:04:05 UTC"))
	if len(runs) > 0 {
		b.WriteString(`<table class="tasks"><tr><th class="l">training run</th><th>updates</th><th>last loss</th><th>last validation loss</th><th class="l">status</th></tr>` + "\n")
		for _, r := range runs {
			var first, last int64 = -1, -1
			loss, vloss := "–", "–"
			for _, p := range r.pts {
				u := fieldInt(p.Fields, "num_updates")
				tag := p.Tags["tag"]
				if tag == "train_inner" {
					if first < 0 {
						first = u
					}
					last = u
					if v, ok := fieldFloat(p.Fields, "loss"); ok {
						loss = fmt.Sprintf("%.4g (update %d)", v, u)
					}
				}
				if v, ok := fieldFloat(p.Fields, "loss"); ok && strings.HasPrefix(tag, "valid") {
					vloss = fmt.Sprintf("%.4g (%s, update %d)", v, tag, u)
				}
			}
			status := "ok"
			if u := r.divergedAt(); u >= 0 {
				status = fmt.Sprintf("DIVERGED at update %d", u)
			}
			fmt.Fprintf(&b, `<tr><td class="l">%s</td><td>%d–%d</td><td>%s</td><td>%s</td><td class="l">%s</td></tr>`+"\n",
				html.EscapeString(r.label), first, last, html.EscapeString(loss), html.EscapeString(vloss), html.EscapeString(status))
		}
		b.WriteString("</table>\n")
		if !d.hasServing() {
			return b.String()
		}
	}
	b.WriteString(`<table class="tasks"><tr><th class="l">task</th><th class="l">status</th><th>offered/s</th><th>achieved/s</th><th>goodput/s</th><th>SLO att.</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>errors</th><th>timeouts</th><th>dropped</th></tr>` + "\n")
	for _, r := range d.Results.Tasks {
		att := "–"
		if r.SLOAttainment != nil {
			att = fmt.Sprintf("%.1f%%", *r.SLOAttainment*100)
		}
		p50, p99, p999 := "–", "–", "–"
		if r.Latency != nil && r.Latency.Count > 0 {
			p50, p99, p999 = fmt.Sprintf("%.2f", r.Latency.P50), fmt.Sprintf("%.2f", r.Latency.P99), fmt.Sprintf("%.2f", r.Latency.P999)
		}
		fmt.Fprintf(&b, `<tr><td class="l">%s</td><td class="l">%s</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%d</td></tr>`+"\n",
			html.EscapeString(r.Task), html.EscapeString(r.Status), r.OfferedRate, r.AchievedRate, r.Goodput, att, p50, p99, p999, r.Errors, r.Timeouts, r.Dropped)
	}
	b.WriteString("</table>\n")
	return b.String()
}
