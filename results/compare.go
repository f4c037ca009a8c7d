package results

import (
	"sort"
	"strconv"
	"strings"
)

// Metric is one number compared across experiments.
type Metric struct {
	Name string
	Get  func(*Row) (float64, bool)
	Kind MetricKind
}

// MetricKind says how a metric's values and deltas are shown to people.
type MetricKind int

const (
	KindNumber MetricKind = iota
	KindCount             // integer counts
	KindRatio             // 0–1, shown as a percentage; delta in points
)

func distMetric(name string, get func(*Row) *Dist, pick func(*Dist) float64) Metric {
	return Metric{Name: name, Get: func(r *Row) (float64, bool) {
		if d := get(r); d != nil {
			return pick(d), true
		}
		return 0, false
	}}
}

func count(name string, get func(*Row) int64) Metric {
	return Metric{Name: name, Kind: KindCount, Get: func(r *Row) (float64, bool) { return float64(get(r)), true }}
}

// CompareMetrics are the numbers `gpuorch results compare` puts side by
// side, in order; LLM metrics are added when a row has them.
var CompareMetrics = []Metric{
	{Name: "offered_rps", Get: func(r *Row) (float64, bool) { return r.OfferedRate, true }},
	{Name: "achieved_rps", Get: func(r *Row) (float64, bool) { return r.AchievedRate, true }},
	distMetric("p50_ms", func(r *Row) *Dist { return r.Latency }, func(d *Dist) float64 { return d.P50 }),
	distMetric("p99_ms", func(r *Row) *Dist { return r.Latency }, func(d *Dist) float64 { return d.P99 }),
	distMetric("p99.9_ms", func(r *Row) *Dist { return r.Latency }, func(d *Dist) float64 { return d.P999 }),
	count("errors", func(r *Row) int64 { return r.Errors }),
	count("timeouts", func(r *Row) int64 { return r.Timeouts }),
	count("dropped", func(r *Row) int64 { return r.Dropped }),
	{Name: "slo_attainment", Kind: KindRatio, Get: func(r *Row) (float64, bool) {
		if r.SLOAttainment == nil {
			return 0, false
		}
		return *r.SLOAttainment, true
	}},
	{Name: "goodput_rps", Get: func(r *Row) (float64, bool) { return r.Goodput, true }},
}

// LLMCompareMetrics are compared when any row has LLM metrics.
var LLMCompareMetrics = []Metric{
	distMetric("ttft_p99_ms", func(r *Row) *Dist { return r.TTFT }, func(d *Dist) float64 { return d.P99 }),
	distMetric("tpot_p99_ms", func(r *Row) *Dist { return r.TPOT }, func(d *Dist) float64 { return d.P99 }),
	distMetric("itl_p99_ms", func(r *Row) *Dist { return r.ITL }, func(d *Dist) float64 { return d.P99 }),
	distMetric("e2el_p99_ms", func(r *Row) *Dist { return r.E2EL }, func(d *Dist) float64 { return d.P99 }),
}

// CompareValue is one experiment's value of a metric; Delta and DeltaPct
// are relative to the first experiment (nil for the first, or when either
// value is missing; DeltaPct also when the base is 0).
type CompareValue struct {
	Experiment string   `json:"experiment"`
	Value      *float64 `json:"value"`
	Delta      *float64 `json:"delta"`
	DeltaPct   *float64 `json:"delta_pct"`
}

// CompareRow is one metric of one matched task (or class, or step) across
// the compared experiments.
type CompareRow struct {
	Key       string         `json:"key"`  // what matched the rows: sweep point or task name
	Task      string         `json:"task"` // task name in the first experiment that has it
	Breakdown string         `json:"breakdown"`
	Class     string         `json:"class,omitempty"`
	Step      int            `json:"step"`
	Metric    string         `json:"metric"`
	Kind      MetricKind     `json:"-"`
	Values    []CompareValue `json:"values"`
}

// Comparison is `gpuorch results compare`'s model.
type Comparison struct {
	Experiments []string     `json:"experiments"`
	Rows        []CompareRow `json:"rows"`
}

// matchKey says which rows of different experiments are the same
// measurement: the workload and sweep point when the task has one (task
// indices may differ between sweeps), otherwise the task name; plus the
// breakdown. Keys repeated within one experiment are numbered in order.
func matchKey(r *Row) string {
	var b strings.Builder
	if len(r.Params) > 0 {
		if r.Workload != "" {
			b.WriteString(r.Workload)
			b.WriteByte(' ')
		}
		keys := sortedKeys(r.Params)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(k + "=" + r.Params[k])
		}
	} else {
		b.WriteString(r.Task)
	}
	switch r.Breakdown {
	case BreakdownClass:
		b.WriteString(" class=" + r.Class)
	case BreakdownStep:
		b.WriteString(" step=" + strconv.Itoa(r.Step))
	}
	return b.String()
}

// Compare puts the rows of several experiments side by side. names label
// the experiments (same order as rs); rows are matched with matchKey and
// listed in the order they first appear (first experiment first). Only
// task rows are compared unless steps or classes are asked for.
func Compare(names []string, rs []*Results, steps, classes bool) *Comparison {
	metrics := append([]Metric{}, CompareMetrics...)
	for _, r := range rs {
		if r.HasLLM() {
			metrics = append(metrics, LLMCompareMetrics...)
			break
		}
	}
	var order []string
	first := map[string]*Row{}
	byExp := make([]map[string]*Row, len(rs))
	for i, res := range rs {
		byExp[i] = map[string]*Row{}
		count := map[string]int{}
		var rows []*Row
		for j := range res.Tasks {
			rows = append(rows, &res.Tasks[j])
		}
		if classes {
			for j := range res.Classes {
				rows = append(rows, &res.Classes[j])
			}
		}
		if steps {
			for j := range res.Steps {
				rows = append(rows, &res.Steps[j])
			}
		}
		for _, row := range rows {
			k := matchKey(row)
			count[k]++
			if n := count[k]; n > 1 {
				k += " #" + strconv.Itoa(n)
			}
			byExp[i][k] = row
			if _, ok := first[k]; !ok {
				first[k] = row
				order = append(order, k)
			}
		}
	}
	// Keep a stable, readable order: by task of first appearance, then
	// breakdown (total, class, step).
	rank := map[string]int{BreakdownTotal: 0, BreakdownClass: 1, BreakdownStep: 2}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := first[order[i]], first[order[j]]
		if a.Task != b.Task {
			return NaturalLess(a.Task, b.Task)
		}
		if rank[a.Breakdown] != rank[b.Breakdown] {
			return rank[a.Breakdown] < rank[b.Breakdown]
		}
		if a.Step != b.Step {
			return a.Step < b.Step
		}
		return NaturalLess(a.Class, b.Class)
	})
	c := &Comparison{Experiments: names}
	for _, k := range order {
		f := first[k]
		for _, m := range metrics {
			cr := CompareRow{Key: k, Task: f.Task, Breakdown: f.Breakdown, Class: f.Class, Step: f.Step, Metric: m.Name, Kind: m.Kind}
			var base *float64
			for i := range rs {
				cv := CompareValue{Experiment: names[i]}
				if row := byExp[i][k]; row != nil {
					if v, ok := m.Get(row); ok {
						cv.Value = &v
					}
				}
				if i == 0 {
					base = cv.Value
				} else if base != nil && cv.Value != nil {
					d := *cv.Value - *base
					cv.Delta = &d
					if *base != 0 {
						p := d / *base * 100
						cv.DeltaPct = &p
					}
				}
				cr.Values = append(cr.Values, cv)
			}
			c.Rows = append(c.Rows, cr)
		}
	}
	return c
}

// Table renders the comparison: key and metric, each experiment's value,
// and for every experiment after the first its delta against the first
// (text: "+1.23 (+4.5%)"; CSV: separate delta and delta_pct columns).
func (c *Comparison) Table(f Format) Table {
	t := Table{Columns: []string{"key", "task", "breakdown", "class", "step", "metric"}}
	if f == Human {
		t.Columns = []string{"key", "metric"}
	}
	for _, e := range c.Experiments {
		t.Columns = append(t.Columns, e)
	}
	for _, e := range c.Experiments[min(1, len(c.Experiments)):] {
		if f == Human {
			t.Columns = append(t.Columns, "Δ "+e)
		} else {
			t.Columns = append(t.Columns, "delta_"+e, "delta_pct_"+e)
		}
	}
	val := func(p *float64, k MetricKind) string {
		switch {
		case p == nil:
			return ""
		case f == Machine:
			return f.num(*p)
		case k == KindCount:
			return strconv.FormatFloat(*p, 'f', 0, 64)
		case k == KindRatio:
			return f.ratio(p)
		}
		return f.num(*p)
	}
	for _, r := range c.Rows {
		step := ""
		if r.Step >= 0 {
			step = strconv.Itoa(r.Step)
		}
		cells := []string{r.Key, r.Task, r.Breakdown, r.Class, step, r.Metric}
		if f == Human {
			cells = []string{r.Key, r.Metric}
		}
		for _, v := range r.Values {
			cells = append(cells, val(v.Value, r.Kind))
		}
		for _, v := range r.Values[min(1, len(r.Values)):] {
			if f == Human {
				s := ""
				switch {
				case v.Delta == nil:
				case r.Kind == KindRatio: // percentage points, not relative
					s = signed(strconv.FormatFloat(*v.Delta*100, 'f', 2, 64)) + " pp"
				case *v.Delta == 0:
					s = "0"
				default:
					if r.Kind == KindCount {
						s = signed(strconv.FormatFloat(*v.Delta, 'f', 0, 64))
					} else {
						s = signed(f.num(*v.Delta))
					}
					if v.DeltaPct != nil {
						s += " (" + signed(strconv.FormatFloat(*v.DeltaPct, 'f', 1, 64)) + "%)"
					}
				}
				cells = append(cells, s)
			} else {
				cells = append(cells, val(v.Delta, r.Kind), val(v.DeltaPct, r.Kind))
			}
		}
		t.Rows = append(t.Rows, cells)
	}
	return t
}

func signed(s string) string {
	if strings.HasPrefix(s, "-") {
		return s
	}
	return "+" + s
}
