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
}

// LoadReport reads what a report on experiment needs from src.
func LoadReport(ctx context.Context, src Source, experiment, sourceName string) (*ReportData, error) {
	res, err := Load(ctx, src, experiment)
	if err != nil {
		return nil, err
	}
	q := Query{Measurement: MeasServingSummary}
	if experiment != "" {
		q.Experiments = []string{experiment}
	}
	sum, err := src.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read %s points: %w", MeasServingSummary, err)
	}
	q.Measurement = MeasServing
	ivl, err := src.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read %s points: %w", MeasServing, err)
	}
	d := &ReportData{Experiment: experiment, Source: sourceName, Generated: time.Now(), Results: res, Summary: sum}
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

// WriteReport writes a self-contained HTML page: a header with the task
// table and four charts, with ECharts inlined (no network needed).
func WriteReport(w io.Writer, d *ReportData) error {
	if d.Results == nil || (len(d.Results.Tasks) == 0 && len(d.Intervals) == 0) {
		return fmt.Errorf("report: experiment %q has no serving points", d.Experiment)
	}
	page := components.NewPage()
	page.SetPageTitle("gpuorch report: " + d.Experiment)
	page.SetLayout(components.PageFlexLayout)
	page.AddCharts(
		latencyVsRate(d),
		overTime(d, "Throughput over time", "completed requests/s per interval, per task", "achieved_rate", "throughput (req/s)"),
		overTime(d, "p99 latency over time", "corrected p99 per interval, per task", "latency_p99", "p99 latency (ms)"),
		sloAttainment(d),
		latencyCDF(d),
	)
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
	fmt.Fprintf(&b, `<div class="meta">%d tasks · source: %s · generated %s</div>`+"\n",
		len(d.Results.Tasks), html.EscapeString(d.Source), d.Generated.UTC().Format("2006-01-02 15:04:05 UTC"))
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
