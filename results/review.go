package results

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Dist is one latency distribution of a row, in milliseconds.
type Dist struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Row is one line of a results table: a whole task (breakdown "total"), one
// class of a task ("class") or one SLO-factor step of a task ("step").
type Row struct {
	Experiment string            `json:"experiment"`
	Task       string            `json:"task"`
	Breakdown  string            `json:"breakdown"`
	Class      string            `json:"class,omitempty"`
	Model      string            `json:"model,omitempty"`
	Step       int               `json:"step"` // -1 unless breakdown is "step"
	Workload   string            `json:"workload,omitempty"`
	Target     string            `json:"target,omitempty"`
	Protocol   string            `json:"protocol,omitempty"`
	Params     map[string]string `json:"params,omitempty"` // the task's sweep point
	// Status is completed, interrupted or failed (from the run's summary),
	// or "incomplete" when the task wrote interval points but no summary
	// (still running, or killed): its counts and rates then come from the
	// interval points and its percentiles are unknown.
	Status    string  `json:"status"`
	Error     string  `json:"error,omitempty"`
	DurationS float64 `json:"duration_s,omitempty"`
	SLOFactor float64 `json:"slo_factor,omitempty"`

	Offered   int64 `json:"offered"`
	Sent      int64 `json:"sent"`
	Completed int64 `json:"completed"`
	Errors    int64 `json:"errors"`
	Timeouts  int64 `json:"timeouts"`
	Dropped   int64 `json:"dropped"`
	Cancelled int64 `json:"cancelled"`
	SLOMet    int64 `json:"slo_met"`

	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	Goodput      float64 `json:"goodput"`
	// SLOAttainment is slo_met/offered; nil when nothing was offered.
	SLOAttainment *float64 `json:"slo_attainment"`

	Latency  *Dist `json:"latency,omitempty"` // corrected (from intended send)
	Service  *Dist `json:"service,omitempty"` // uncorrected (from actual send)
	Lateness *Dist `json:"lateness,omitempty"`
	TTFT     *Dist `json:"ttft,omitempty"`
	TPOT     *Dist `json:"tpot,omitempty"`
	ITL      *Dist `json:"itl,omitempty"`
	E2EL     *Dist `json:"e2el,omitempty"`

	InputTokens  int64 `json:"input_tokens,omitempty"`
	OutputTokens int64 `json:"output_tokens,omitempty"`

	// Predicted is the task's roofline prediction (gpuorch bench), with
	// its error against the measurements; nil when there is none.
	Predicted *Prediction `json:"predicted,omitempty"`
}

// StatusIncomplete marks a task with interval points but no summary.
const StatusIncomplete = "incomplete"

// HasLLM reports whether the row has LLM streaming metrics.
func (r *Row) HasLLM() bool { return r.TTFT != nil || r.TPOT != nil || r.ITL != nil || r.E2EL != nil }

// Results is the review model of one experiment (or of every experiment in
// a source): rows per task, per class and per SLO step.
type Results struct {
	Tasks   []Row `json:"tasks"`
	Classes []Row `json:"classes,omitempty"`
	Steps   []Row `json:"steps,omitempty"`
	// ParamKeys is the sorted union of the tasks' sweep keys.
	ParamKeys []string `json:"param_keys,omitempty"`

	// predictions are the serving_prediction points by task, kept so rows
	// added later (AddTaskStates) get theirs too.
	predictions map[taskKey]Point
}

// HasLLM reports whether any task row has LLM metrics.
func (r *Results) HasLLM() bool {
	for i := range r.Tasks {
		if r.Tasks[i].HasLLM() {
			return true
		}
	}
	return false
}

// Load reads one experiment's serving points from src and builds its
// review model. experiment "" takes every experiment in src (a local
// experiment directory holds only its own). A task that ran more than once
// is reported from its latest attempt (see attempt.go).
func Load(ctx context.Context, src Source, experiment string) (*Results, error) {
	res, _, _, err := load(ctx, src, experiment, false)
	return res, err
}

// load reads what Load needs and returns the summary and interval points of
// each task's latest attempt beside the model. allIntervals reads the
// interval points of every task; otherwise those of tasks whose latest
// attempt completed are left out (their summary says everything).
func load(ctx context.Context, src Source, experiment string, allIntervals bool) (*Results, []Point, []Point, error) {
	q := Query{Measurement: MeasServingSummary}
	if experiment != "" {
		q.Experiments = []string{experiment}
	}
	sum, err := src.Query(ctx, q)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read %s points: %w", MeasServingSummary, err)
	}
	sum = MergeShards(sum)
	// Task names are unique within one experiment, which is what this
	// reads; a task whose latest attempt failed or was interrupted may
	// have run again since, so its interval points are read too.
	q.Measurement = MeasServing
	if !allIntervals && oneExperiment(sum) {
		if done := finishedTasks(sum); len(done) > 0 {
			q.Exclude = map[string][]string{TagTask: done}
		}
	}
	ivl, err := src.Query(ctx, q)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read %s points: %w", MeasServing, err)
	}
	ivl = MergeShards(ivl)
	q.Measurement, q.Exclude = MeasServingPrediction, nil
	preds, err := src.Query(ctx, q)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read %s points: %w", MeasServingPrediction, err)
	}
	sum, ivl = latestAttempts(sum, ivl)
	res := Build(sum, ivl)
	res.AddPredictions(preds)
	return res, sum, ivl, nil
}

func oneExperiment(pts []Point) bool {
	for _, p := range pts {
		if p.Tags[TagExperiment] != pts[0].Tags[TagExperiment] {
			return false
		}
	}
	return true
}

type taskKey struct{ experiment, task string }

// Build makes the review model from serving_summary and serving points,
// keeping of each task only its latest attempt. A task with a summary gets
// its rows from it; a task with only interval points gets an "incomplete"
// row summed from them.
func Build(summary, intervals []Point) *Results {
	summary, intervals = latestAttempts(summary, intervals)
	res := &Results{}
	haveSummary := map[taskKey]bool{}
	paramKeys := map[string]bool{}
	for _, p := range summary {
		if p.Measurement != MeasServingSummary {
			continue
		}
		row := rowFromPoint(p)
		haveSummary[taskKey{row.Experiment, row.Task}] = true
		switch row.Breakdown {
		case BreakdownClass:
			res.Classes = append(res.Classes, row)
		case BreakdownStep:
			res.Steps = append(res.Steps, row)
		default:
			res.Tasks = append(res.Tasks, row)
		}
	}
	// Tasks without a summary: sum their interval points.
	pending := map[taskKey][]Point{}
	var order []taskKey
	for _, p := range intervals {
		if p.Measurement != MeasServing {
			continue
		}
		k := taskKey{p.Tags[TagExperiment], p.Tags[TagTask]}
		if haveSummary[k] {
			continue
		}
		if _, ok := pending[k]; !ok {
			order = append(order, k)
		}
		pending[k] = append(pending[k], p)
	}
	for _, k := range order {
		res.Tasks = append(res.Tasks, rowFromIntervals(pending[k]))
	}
	for _, rows := range [][]Row{res.Tasks, res.Classes, res.Steps} {
		sortRows(rows)
	}
	for i := range res.Tasks {
		for k := range res.Tasks[i].Params {
			paramKeys[k] = true
		}
	}
	res.ParamKeys = sortedKeys(paramKeys)
	return res
}

func sortRows(rows []Row) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := &rows[i], &rows[j]
		if a.Experiment != b.Experiment {
			return NaturalLess(a.Experiment, b.Experiment)
		}
		if a.Task != b.Task {
			return NaturalLess(a.Task, b.Task)
		}
		if a.Step != b.Step {
			return a.Step < b.Step
		}
		return NaturalLess(a.Class, b.Class)
	})
}

// identityKeys are tags that are never sweep parameters.
var identityKeys = map[string]bool{
	TagExperiment: true, TagTask: true, TagWorkload: true, TagTarget: true, TagProtocol: true,
	TagBreakdown: true, TagStep: true, TagClass: true, TagModel: true, TagShard: true,
}

// params recovers a point's sweep point: from the sweep_tags field when the
// point has one (exact), otherwise every non-identity tag.
func params(p Point) map[string]string {
	out := map[string]string{}
	if s, ok := p.Fields["sweep_tags"].(string); ok {
		for _, k := range strings.Split(s, ",") {
			if v, ok := p.Tags[SweepTagKey(k)]; ok && k != "" {
				out[k] = v
			}
		}
	} else {
		for k, v := range p.Tags {
			if identityKeys[k] {
				continue
			}
			if base, ok := strings.CutPrefix(k, "sweep_"); ok && identityTags[base] {
				k = base
			}
			out[k] = v
		}
	}
	// A sweep key that only repeats an identity tag (as points written
	// before sweepKeys dropped them do) is no parameter.
	for k, v := range out {
		if identityTags[k] && p.Tags[k] == v {
			delete(out, k)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func fieldInt(f map[string]any, k string) int64 {
	switch v := f[k].(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	case uint64:
		return int64(v)
	}
	return 0
}

func fieldFloat(f map[string]any, k string) (float64, bool) {
	switch v := f[k].(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	}
	return 0, false
}

func fieldFloat0(f map[string]any, k string) float64 { v, _ := fieldFloat(f, k); return v }

func dist(f map[string]any, prefix string) *Dist {
	n := fieldInt(f, prefix+"_count")
	if _, ok := fieldFloat(f, prefix+"_p50"); n == 0 || !ok {
		return nil
	}
	return &Dist{
		Count: n,
		Mean:  fieldFloat0(f, prefix+"_mean"),
		P50:   fieldFloat0(f, prefix+"_p50"),
		P90:   fieldFloat0(f, prefix+"_p90"),
		P99:   fieldFloat0(f, prefix+"_p99"),
		P999:  fieldFloat0(f, prefix+"_p999"),
		Max:   fieldFloat0(f, prefix+"_max"),
	}
}

func rowFromPoint(p Point) Row {
	f := p.Fields
	r := Row{
		Experiment: p.Tags[TagExperiment], Task: p.Tags[TagTask],
		Breakdown: p.Tags[TagBreakdown], Class: p.Tags[TagClass], Model: p.Tags[TagModel], Step: -1,
		Workload: p.Tags[TagWorkload], Target: p.Tags[TagTarget], Protocol: p.Tags[TagProtocol],
		Params:  params(p),
		Offered: fieldInt(f, "offered"), Sent: fieldInt(f, "sent"), Completed: fieldInt(f, "completed"),
		Errors: fieldInt(f, "errors"), Timeouts: fieldInt(f, "timeouts"), Dropped: fieldInt(f, "dropped"),
		Cancelled: fieldInt(f, "cancelled"), SLOMet: fieldInt(f, "slo_met"),
		OfferedRate: fieldFloat0(f, "offered_rate"), AchievedRate: fieldFloat0(f, "achieved_rate"),
		Goodput: fieldFloat0(f, "goodput"), SLOFactor: fieldFloat0(f, "slo_factor"),
		DurationS: fieldFloat0(f, "duration_s"),
		Latency:   dist(f, "latency"), Service: dist(f, "service"), Lateness: dist(f, "lateness"),
		TTFT: dist(f, "ttft"), TPOT: dist(f, "tpot"), ITL: dist(f, "itl"), E2EL: dist(f, "e2el"),
		InputTokens: fieldInt(f, "input_tokens"), OutputTokens: fieldInt(f, "output_tokens"),
	}
	if r.Breakdown == "" {
		r.Breakdown = BreakdownTotal
	}
	if r.Breakdown == BreakdownStep {
		if n, err := strconv.Atoi(p.Tags[TagStep]); err == nil {
			r.Step = n
		}
	}
	r.Status, _ = f["status"].(string)
	r.Error, _ = f["error"].(string)
	if a, ok := fieldFloat(f, "slo_attainment"); ok {
		r.SLOAttainment = &a
	}
	return r
}

// rowFromIntervals sums one task's interval points into an incomplete row.
// It uses the all-requests series (no class tag); when that is split by
// model, the models are added up.
func rowFromIntervals(pts []Point) Row {
	var all []Point
	models := map[string]bool{}
	for _, p := range pts {
		if p.Tags[TagClass] == "" {
			all = append(all, p)
			models[p.Tags[TagModel]] = true
		}
	}
	if len(models) > 1 && models[""] {
		// Both an unsplit series and per-model ones: keep the unsplit.
		kept := all[:0]
		for _, p := range all {
			if p.Tags[TagModel] == "" {
				kept = append(kept, p)
			}
		}
		all = kept
	}
	if len(all) == 0 {
		all = pts
	}
	first := all[0]
	r := Row{
		Experiment: first.Tags[TagExperiment], Task: first.Tags[TagTask], Breakdown: BreakdownTotal, Step: -1,
		Workload: first.Tags[TagWorkload], Target: first.Tags[TagTarget], Protocol: first.Tags[TagProtocol],
		Params: params(first), Status: StatusIncomplete,
	}
	if len(models) == 1 {
		r.Model = first.Tags[TagModel]
		if r.Params != nil {
			delete(r.Params, TagModel)
		}
	}
	// Span: sum of distinct intervals' lengths (per-model points share
	// intervals, so count each index once).
	seen := map[int64]bool{}
	var span float64
	for _, p := range all {
		f := p.Fields
		r.Offered += fieldInt(f, "offered")
		r.Sent += fieldInt(f, "sent")
		r.Completed += fieldInt(f, "completed")
		r.Errors += fieldInt(f, "errors")
		r.Timeouts += fieldInt(f, "timeouts")
		r.Dropped += fieldInt(f, "dropped")
		r.Cancelled += fieldInt(f, "cancelled")
		r.SLOMet += fieldInt(f, "slo_met")
		r.InputTokens += fieldInt(f, "input_tokens")
		r.OutputTokens += fieldInt(f, "output_tokens")
		if idx := fieldInt(f, "interval"); !seen[idx] {
			seen[idx] = true
			span += fieldFloat0(f, "interval_s")
		}
	}
	if span > 0 {
		r.DurationS = span
		r.OfferedRate = float64(r.Offered) / span
		r.AchievedRate = float64(r.Completed) / span
		r.Goodput = float64(r.SLOMet) / span
	}
	if r.Offered > 0 {
		a := float64(r.SLOMet) / float64(r.Offered)
		r.SLOAttainment = &a
	}
	return r
}

// NaturalLess orders strings with embedded numbers numerically:
// "t2" < "t10", "tasks/9/x" < "tasks/10/x".
func NaturalLess(a, b string) bool {
	for a != "" && b != "" {
		ca, cb := a[0], b[0]
		if isDigit(ca) && isDigit(cb) {
			na, ra := leadingDigits(a)
			nb, rb := leadingDigits(b)
			ta, tb := strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if len(ta) != len(tb) {
				return len(ta) < len(tb)
			}
			if ta != tb {
				return ta < tb
			}
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			a, b = ra, rb
			continue
		}
		if ca != cb {
			return ca < cb
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func leadingDigits(s string) (string, string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// TaskInfo is what the executor knows about a task, for tasks that have
// written no summary (or nothing at all) yet.
type TaskInfo struct {
	Experiment string
	Task       string
	Workload   string
	Params     map[string]string
	State      string // executor state: pending, running, failed, …
	Error      string
}

// AddTaskStates completes the model with the executor's view: a task with no
// points at all gets a row with its state (so a task that failed before
// measuring anything is not silently missing), and an "incomplete" row takes
// the executor's state when it says more (running, failed, timeout, …).
func (r *Results) AddTaskStates(tasks []TaskInfo) {
	// Matched by task name: Results hold one experiment here, and its
	// points may carry an id the executor spells differently (a copied
	// directory).
	have := map[string]int{}
	for i, row := range r.Tasks {
		have[row.Task] = i
	}
	keys := map[string]bool{}
	for _, k := range r.ParamKeys {
		keys[k] = true
	}
	for _, t := range tasks {
		if i, ok := have[t.Task]; ok {
			row := &r.Tasks[i]
			if row.Status == StatusIncomplete && t.State != "" && t.State != "completed" {
				row.Status = t.State
				if row.Error == "" {
					row.Error = t.Error
				}
			}
			continue
		}
		params := map[string]string{}
		for k, v := range t.Params {
			if k == TagWorkload && v == t.Workload { // as sweepKeys does
				continue
			}
			params[k] = v
		}
		if len(params) == 0 {
			params = nil
		}
		t.Params = params
		r.Tasks = append(r.Tasks, Row{
			Experiment: t.Experiment, Task: t.Task, Workload: t.Workload, Params: t.Params,
			Breakdown: BreakdownTotal, Step: -1, Status: t.State, Error: t.Error,
		})
		for k := range t.Params {
			keys[k] = true
		}
	}
	sortRows(r.Tasks)
	r.ParamKeys = sortedKeys(keys)
	r.attachPredictions()
}
