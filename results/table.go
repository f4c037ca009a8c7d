package results

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// Table is rendered output: a header and rows of cells, written as aligned
// text for people or CSV for programs.
type Table struct {
	Title   string
	Columns []string
	Rows    [][]string
}

// WriteText writes t as aligned columns (with its title, if any, on the
// line before). Empty cells show as "-".
func (t *Table) WriteText(w io.Writer) error {
	if t.Title != "" {
		if _, err := fmt.Fprintln(w, t.Title); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	hdr := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		hdr[i] = textCell(c)
	}
	fmt.Fprintln(tw, strings.Join(hdr, "\t"))
	for _, r := range t.Rows {
		cells := make([]string, len(r))
		for i, c := range r {
			if c == "" {
				c = "-"
			}
			cells[i] = textCell(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// textCell makes a cell safe for an aligned terminal table: tabs and line
// breaks would break the layout and control characters (escape sequences in
// a free-text sweep value) could drive the terminal, so they become '?';
// spaces stay.
func textCell(s string) string {
	ok := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// WriteCSV writes t as CSV with a header line. Empty cells stay empty.
func (t *Table) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(t.Columns); err != nil {
		return err
	}
	if err := cw.WriteAll(t.Rows); err != nil { // WriteAll flushes
		return err
	}
	return cw.Error()
}

// Format says how numbers are rendered: rounded for people, or in full
// precision for programs (CSV).
type Format int

const (
	Human Format = iota
	Machine
)

func (f Format) num(v float64) string {
	if f == Machine {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	a := v
	if a < 0 {
		a = -a
	}
	switch {
	case a == 0:
		return "0"
	case a < 1:
		return strconv.FormatFloat(v, 'f', 3, 64)
	case a < 100:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
}

func (f Format) ratio(p *float64) string {
	if p == nil {
		return ""
	}
	if f == Machine {
		return strconv.FormatFloat(*p, 'g', -1, 64)
	}
	return strconv.FormatFloat(*p*100, 'f', 2, 64) + "%"
}

func (f Format) dist(d *Dist, pick func(*Dist) float64) string {
	if d == nil {
		return ""
	}
	return f.num(pick(d))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// paramColumns names the columns for sweep keys, prefixing those that clash
// with a fixed column.
func paramColumns(keys []string, fixed []string) []string {
	taken := map[string]bool{}
	for _, c := range fixed {
		taken[c] = true
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		if taken[k] {
			k = "param_" + k
		}
		out[i] = k
	}
	return out
}

type column struct {
	name string
	cell func(f Format, r *Row) string
}

func distCols(prefix string, get func(*Row) *Dist, which ...string) []column {
	var cols []column
	for _, w := range which {
		var pick func(*Dist) float64
		switch w {
		case "p50":
			pick = func(d *Dist) float64 { return d.P50 }
		case "p90":
			pick = func(d *Dist) float64 { return d.P90 }
		case "p99":
			pick = func(d *Dist) float64 { return d.P99 }
		case "p99.9":
			pick = func(d *Dist) float64 { return d.P999 }
		case "mean":
			pick = func(d *Dist) float64 { return d.Mean }
		case "max":
			pick = func(d *Dist) float64 { return d.Max }
		}
		cols = append(cols, column{prefix + w + "_ms", func(f Format, r *Row) string { return f.dist(get(r), pick) }})
	}
	return cols
}

var (
	colTask      = column{"task", func(_ Format, r *Row) string { return r.Task }}
	colStatus    = column{"status", func(_ Format, r *Row) string { return r.Status }}
	colOfferRate = column{"offered_rps", func(f Format, r *Row) string { return f.num(r.OfferedRate) }}
	colAchRate   = column{"achieved_rps", func(f Format, r *Row) string { return f.num(r.AchievedRate) }}
	colErrors    = column{"errors", func(_ Format, r *Row) string { return itoa(r.Errors) }}
	colTimeouts  = column{"timeouts", func(_ Format, r *Row) string { return itoa(r.Timeouts) }}
	colDropped   = column{"dropped", func(_ Format, r *Row) string { return itoa(r.Dropped) }}
	colAttain    = column{"slo_attainment", func(f Format, r *Row) string { return f.ratio(r.SLOAttainment) }}
	colGoodput   = column{"goodput_rps", func(f Format, r *Row) string { return f.num(r.Goodput) }}
	colStep      = column{"step", func(_ Format, r *Row) string { return strconv.Itoa(r.Step) }}
	colFactor    = column{"slo_factor", func(f Format, r *Row) string { return f.num(r.SLOFactor) }}
	colClass     = column{"class", func(_ Format, r *Row) string { return r.Class }}
	colOffered   = column{"offered", func(_ Format, r *Row) string { return itoa(r.Offered) }}
	colCompleted = column{"completed", func(_ Format, r *Row) string { return itoa(r.Completed) }}
	colSLOMet    = column{"slo_met", func(_ Format, r *Row) string { return itoa(r.SLOMet) }}
	colLatency   = distCols("", func(r *Row) *Dist { return r.Latency }, "p50", "p90", "p99", "p99.9")
	colOutTokS   = column{"out_tok_s", func(f Format, r *Row) string {
		if r.OutputTokens == 0 || r.DurationS <= 0 {
			return ""
		}
		return f.num(float64(r.OutputTokens) / r.DurationS)
	}}
)

func llmCols() []column {
	var cols []column
	cols = append(cols, distCols("ttft_", func(r *Row) *Dist { return r.TTFT }, "p50", "p99")...)
	cols = append(cols, distCols("tpot_", func(r *Row) *Dist { return r.TPOT }, "p50", "p99")...)
	cols = append(cols, distCols("itl_", func(r *Row) *Dist { return r.ITL }, "p50", "p99")...)
	cols = append(cols, distCols("e2el_", func(r *Row) *Dist { return r.E2EL }, "p50", "p99")...)
	return append(cols, colOutTokS)
}

func build(title string, f Format, rows []Row, keys []string, before, after []column) Table {
	var fixed []string
	for _, c := range append(append([]column{}, before...), after...) {
		fixed = append(fixed, c.name)
	}
	t := Table{Title: title}
	for _, c := range before {
		t.Columns = append(t.Columns, c.name)
	}
	t.Columns = append(t.Columns, paramColumns(keys, fixed)...)
	for _, c := range after {
		t.Columns = append(t.Columns, c.name)
	}
	for i := range rows {
		r := &rows[i]
		cells := make([]string, 0, len(t.Columns))
		for _, c := range before {
			cells = append(cells, c.cell(f, r))
		}
		for _, k := range keys {
			cells = append(cells, r.Params[k])
		}
		for _, c := range after {
			cells = append(cells, c.cell(f, r))
		}
		t.Rows = append(t.Rows, cells)
	}
	return t
}

// TaskTable is the main table of `gpuorch results show`: one row per task
// with its sweep point, rates, corrected latency percentiles, failures, SLO
// attainment and goodput; LLM columns when any task has LLM metrics.
func (r *Results) TaskTable(f Format) Table {
	after := []column{colStatus, colOfferRate, colAchRate}
	after = append(after, colLatency...)
	after = append(after, colErrors, colTimeouts, colDropped, colAttain, colGoodput)
	if r.HasLLM() {
		after = append(after, llmCols()...)
	}
	return build("", f, r.Tasks, r.ParamKeys, []column{colTask}, after)
}

// StepTable has one row per task and SLO-factor step: the attainment and
// goodput curve that an SLO sweep (slo-exp-1) exists to draw.
func (r *Results) StepTable(f Format) Table {
	after := []column{colStep, colFactor, colOffered, colCompleted, colSLOMet, colAttain, colGoodput}
	after = append(after, distCols("", func(r *Row) *Dist { return r.Latency }, "p50", "p99")...)
	return build("SLO steps", f, r.Steps, r.ParamKeys, []column{colTask}, after)
}

// ClassTable has one row per task and request class (e.g. slo-exp-2's
// foreground and background).
func (r *Results) ClassTable(f Format) Table {
	after := []column{colClass, colOfferRate, colAchRate}
	after = append(after, colLatency...)
	after = append(after, colErrors, colTimeouts, colDropped, colAttain, colGoodput)
	return build("Classes", f, r.Classes, r.ParamKeys, []column{colTask}, after)
}

// exportBefore are FlatTable's leading columns; sweep keys follow them.
var exportBefore = []column{
	{"experiment", func(_ Format, r *Row) string { return r.Experiment }},
	colTask,
	{"breakdown", func(_ Format, r *Row) string { return r.Breakdown }},
	colClass,
	{"step", func(_ Format, r *Row) string {
		if r.Step < 0 {
			return ""
		}
		return strconv.Itoa(r.Step)
	}},
	{"model", func(_ Format, r *Row) string { return r.Model }},
	{"workload", func(_ Format, r *Row) string { return r.Workload }},
	{"target", func(_ Format, r *Row) string { return r.Target }},
	{"protocol", func(_ Format, r *Row) string { return r.Protocol }},
}

func exportAfter() []column {
	cols := []column{
		colStatus,
		{"error", func(_ Format, r *Row) string { return r.Error }},
		{"duration_s", func(f Format, r *Row) string { return f.num(r.DurationS) }},
		colFactor, colOffered,
		{"sent", func(_ Format, r *Row) string { return itoa(r.Sent) }},
		colCompleted, colErrors, colTimeouts, colDropped,
		{"cancelled", func(_ Format, r *Row) string { return itoa(r.Cancelled) }},
		colSLOMet, colOfferRate, colAchRate, colGoodput, colAttain,
	}
	cols = append(cols, distCols("latency_", func(r *Row) *Dist { return r.Latency }, "mean", "p50", "p90", "p99", "p99.9", "max")...)
	cols = append(cols, distCols("service_", func(r *Row) *Dist { return r.Service }, "p50", "p99")...)
	cols = append(cols, distCols("lateness_", func(r *Row) *Dist { return r.Lateness }, "p50", "p99")...)
	cols = append(cols, llmCols()...)
	cols = append(cols,
		column{"input_tokens", func(_ Format, r *Row) string { return itoa(r.InputTokens) }},
		column{"output_tokens", func(_ Format, r *Row) string { return itoa(r.OutputTokens) }})
	return cols
}

// FlatTable is the export form: every column, always in the same order
// (LLM columns included, empty where absent), so scripts can rely on it.
// rows may mix breakdowns; the breakdown, class and step columns tell them
// apart. When any row has a prediction (gpuorch bench), the measured means,
// predictions and errors follow as the last columns.
func FlatTable(rows []Row, paramKeys []string, f Format) Table {
	after := exportAfter()
	for i := range rows {
		if rows[i].Predicted != nil {
			after = append(after, predictionCols(f, false)...)
			break
		}
	}
	return build("", f, rows, paramKeys, exportBefore, after)
}
