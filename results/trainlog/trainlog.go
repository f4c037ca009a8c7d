// Package trainlog parses Metaseq training logs (--log-format json) into
// metric points of measurement "training", follows a growing log while the
// job runs, and summarises a run (steady-state throughput, time per update,
// final loss). Schema: docs/training.md.
package trainlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/results"
)

// Measurement is the measurement name of training points.
const Measurement = results.MeasTraining

// TagTrainInner is the progress-bar tag of periodic training lines.
const TagTrainInner = "train_inner"

// lineRE matches `YYYY-MM-DD HH:MM:SS | LEVEL | tag | {json}` after any
// prefix (srun --label "0: ", the legacy "slurm_procid 0 : ").
var lineRE = regexp.MustCompile(`^(.*?)(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) \| (\w+) \| ([^|]+?) \| (\{.*\})\s*$`)

// Progress tags metaseq logs under (the progress bar renames its logger to
// the tag): periodic training lines, end-of-epoch training lines, and
// validation lines (valid, valid_<subset>, valid/<subset>, valid/combined).
const (
	TagTrain = "train"
	TagValid = "valid"
)

// IsValidTag reports whether tag is a validation subset's tag.
func IsValidTag(tag string) bool { return strings.HasPrefix(tag, TagValid) }

// isProgressTag tells progress-bar lines from the lines of module loggers
// (metaseq.cli.train, metaseq.trainer, …), which log free text — among it
// the whole config as a Python dict, `{'_name': None, …}`, which is not
// JSON and not a metric. A logger name is a dotted module path; a progress
// tag never is, except a validation subset that happens to hold a dot.
func isProgressTag(tag string) bool {
	return !strings.Contains(tag, ".") || IsValidTag(tag) || strings.HasPrefix(tag, TagTrain)
}

// Record is one parsed stats line.
type Record struct {
	Time   time.Time // UTC, second resolution as logged
	Level  string    // INFO
	Tag    string    // train_inner, train, valid, valid/<subset>
	Prefix string    // text before the timestamp, trimmed ("0:", "slurm_procid 0 :")
	// Values are every finite numeric value (the JSON strings parsed with
	// strconv.ParseFloat; epoch and update as numbers). Keys lose the tag
	// prefix end-of-epoch and validation lines carry (metaseq's progress
	// bar logs "valid_loss" under tag "valid", "valid/combined_loss" under
	// "valid/combined"): every tag's loss is "loss".
	Values map[string]float64
	// Nulls lists keys whose value was null (a meter without data).
	Nulls []string
	// NonFinite holds keys whose value was inf or NaN, as logged ("inf",
	// "nan"): a diverged run. InfluxDB stores no such floats, so they are
	// not in Values.
	NonFinite map[string]string
}

// Diverged reports whether the record's loss (any "loss" or "*_loss" key)
// is infinite or NaN.
func (r Record) Diverged() bool {
	for k := range r.NonFinite {
		if isLossKey(k) {
			return true
		}
	}
	return false
}

func isLossKey(k string) bool { return k == "loss" || strings.HasSuffix(k, "_loss") }

// nonFiniteText is the NonFinite map as one field value, "loss=inf,ppl=inf".
func (r Record) nonFiniteText() string {
	keys := make([]string, 0, len(r.NonFinite))
	for k := range r.NonFinite {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + r.NonFinite[k]
	}
	return strings.Join(keys, ",")
}

// ParseError is a line that looks like a stats line but cannot be decoded.
type ParseError struct {
	Line int // 1-based, 0 when unknown
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// ParseLine parses one log line. ok is false for lines that are not
// progress lines (the many other lines of a training log, including the
// config metaseq.cli.train logs as a Python dict); err is set for progress
// lines with a broken JSON object or value.
func ParseLine(line string) (rec Record, ok bool, err error) {
	line = strings.TrimRight(line, "\r\n")
	if !strings.Contains(line, " | ") || !strings.HasSuffix(strings.TrimSpace(line), "}") {
		return Record{}, false, nil // cheap pre-filter: most lines are not stats
	}
	m := lineRE.FindStringSubmatch(line)
	if m == nil || !isProgressTag(strings.TrimSpace(m[4])) {
		return Record{}, false, nil
	}
	t, err := time.Parse(time.DateTime, m[2])
	if err != nil {
		return Record{}, true, &ParseError{Msg: fmt.Sprintf("bad timestamp %q: %v", m[2], err)}
	}
	rec = Record{Time: t.UTC(), Prefix: strings.TrimSpace(m[1]), Level: m[3], Tag: strings.TrimSpace(m[4]), Values: map[string]float64{}}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(m[5]), &raw); err != nil {
		return Record{}, true, &ParseError{Msg: fmt.Sprintf("%s: bad JSON: %v", rec.Tag, err)}
	}
	prefix := rec.Tag + "_"
	for k, v := range raw {
		name := k
		if short, cut := strings.CutPrefix(k, prefix); cut && short != "" {
			// Keep the prefix only where the short name is logged as well
			// (a key that keeps its own name); "train_train_wall" of a train
			// line becomes train_wall, since "train_wall" becomes wall.
			if _, clash := raw[short]; !clash || strings.HasPrefix(short, prefix) {
				name = short
			}
		}
		s := strings.TrimSpace(string(v))
		switch {
		case s == "null":
			rec.Nulls = append(rec.Nulls, name)
			continue
		case strings.HasPrefix(s, `"`):
			if err := json.Unmarshal(v, &s); err != nil {
				return Record{}, true, &ParseError{Msg: fmt.Sprintf("%s: key %q: %v", rec.Tag, k, err)}
			}
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			// Non-numeric values (none in current metaseq) are not metrics.
			continue
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			// "inf", "nan" (Python's {:g}), or a number beyond float64.
			if rec.NonFinite == nil {
				rec.NonFinite = map[string]string{}
			}
			rec.NonFinite[name] = strings.ToLower(strings.TrimSpace(s))
			continue
		}
		rec.Values[name] = f
	}
	sort.Strings(rec.Nulls)
	return rec, true, nil
}

// Standard keys (docs/training.md); others are kept as optional fields.
var intKeys = map[string]bool{"num_updates": true, "epoch": true, "bsz": true}

// Fields a diverged record's point carries besides its finite values.
const (
	FieldDiverged  = "diverged"  // true: the loss was inf or NaN
	FieldNonFinite = "nonfinite" // "loss=inf,ppl=inf": the keys and what was logged
)

// fieldName makes a key safe as a field name (metaseq keys already are;
// older builds' valid lines carry "valid/<subset>_…" keys).
func fieldName(k string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == ',' || r == '=' || r == '"' || r == '\\' {
			return '_'
		}
		return r
	}, k)
}

// Point turns a record into a point of measurement "training" with the given
// tags (experiment, task, job) plus tag=<progress tag>. A record with
// non-finite values gets the field nonfinite (what was logged), and diverged
// = true when one of them is a loss.
func (r Record) Point(tags map[string]string) results.Point {
	t := make(map[string]string, len(tags)+1)
	for k, v := range tags {
		if v != "" {
			t[k] = v
		}
	}
	t["tag"] = r.Tag
	f := make(map[string]any, len(r.Values)+2)
	for k, v := range r.Values {
		name := fieldName(k)
		if name == "" || name == FieldDiverged || name == FieldNonFinite {
			continue
		}
		if intKeys[k] && v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			f[name] = int64(v)
		} else {
			f[name] = v
		}
	}
	if len(r.NonFinite) > 0 {
		f[FieldNonFinite] = r.nonFiniteText()
		if r.Diverged() {
			f[FieldDiverged] = true
		}
	}
	return results.Point{Measurement: Measurement, Tags: t, Fields: f, Time: r.Time}
}

// Collector turns records into points and accumulates the summary. Log
// times have one-second resolution, and two points with the same time and
// tags overwrite each other in InfluxDB; the collector therefore moves a
// record that is not after the previous one to 1 ms past it.
type Collector struct {
	Tags map[string]string
	// Tags to collect; nil means every progress line (train_inner, train,
	// valid…).
	Include func(tag string) bool

	last    time.Time
	records []Record
}

// Add records r (if included) and returns its point.
func (c *Collector) Add(r Record) (results.Point, bool) {
	if c.Include != nil && !c.Include(r.Tag) {
		return results.Point{}, false
	}
	if !r.Time.After(c.last) && !c.last.IsZero() {
		r.Time = c.last.Add(time.Millisecond)
	}
	c.last = r.Time
	c.records = append(c.records, r)
	return r.Point(c.Tags), true
}

// Records returns what was collected so far.
func (c *Collector) Records() []Record { return c.records }

// Summary returns the summary of the records so far.
func (c *Collector) Summary() Summary { return Summarize(c.records) }

// Summary describes a training run: throughput and the training loss from
// its train_inner lines, the validation loss per subset from its valid
// lines, and whether and where it diverged.
type Summary struct {
	Intervals   int       `json:"intervals"` // train_inner lines
	FirstUpdate int64     `json:"first_update"`
	LastUpdate  int64     `json:"last_update"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	// Steady state excludes the first interval, whose wps is 0 (it
	// includes start-up and compilation).
	SteadyIntervals int     `json:"steady_intervals"`
	MeanWPS         float64 `json:"mean_wps"` // tokens/s, global
	LastWPS         float64 `json:"last_wps"`
	MeanUPS         float64 `json:"mean_ups"` // updates/s
	LastUPS         float64 `json:"last_ups"`
	// SecondsPerUpdate is Δwall/Δnum_updates over the steady state (falls
	// back to 1/MeanUPS when wall is missing).
	SecondsPerUpdate float64 `json:"seconds_per_update"`
	// FinalLoss and FinalPPL are the last train_inner line's with a finite
	// loss, logged at update FinalLossUpdate: after a divergence, the last
	// loss before it.
	FinalLoss       float64 `json:"final_loss"` // bits/token
	FinalPPL        float64 `json:"final_ppl"`
	FinalLossUpdate int64   `json:"final_loss_update"`
	WPB             float64 `json:"wpb"`              // tokens per update
	MaxCUDAGB       float64 `json:"max_cuda_gb"`      // peak cuda_gb_allocated
	HasSteadyState  bool    `json:"has_steady_state"` // at least two intervals
	// Validation has one entry per validation subset (tag), in the order
	// they first appear.
	Validation []Validation `json:"validation,omitempty"`
	// EpochEnds counts end-of-epoch (tag train) lines.
	EpochEnds int `json:"epoch_ends,omitempty"`
	// Diverged is the first line whose loss was inf or NaN; nil when none.
	Diverged *Divergence `json:"diverged,omitempty"`
}

// Validation is one validation subset's loss over the run.
type Validation struct {
	Subset      string  `json:"subset"`      // the line's tag: valid, valid/combined, …
	Evaluations int     `json:"evaluations"` // lines with a finite loss
	LastLoss    float64 `json:"last_loss"`   // bits/token
	LastPPL     float64 `json:"last_ppl,omitempty"`
	LastUpdate  int64   `json:"last_update"`
	BestLoss    float64 `json:"best_loss"` // the lowest (metaseq's default best_checkpoint_metric)
	BestUpdate  int64   `json:"best_update"`
}

// Divergence is where a run's loss first became inf or NaN.
type Divergence struct {
	Update int64     `json:"update"` // num_updates of that line (0 when it has none)
	Tag    string    `json:"tag"`    // train_inner, valid, …
	Values string    `json:"values"` // what was logged: "loss=inf,ppl=inf"
	Time   time.Time `json:"time"`
}

// Summarize computes the summary of records in log order.
func Summarize(recs []Record) Summary {
	var tr []Record
	var s Summary
	validIdx := map[string]int{}
	for _, r := range recs {
		if s.Diverged == nil && r.Diverged() {
			s.Diverged = &Divergence{Update: int64(r.Values["num_updates"]), Tag: r.Tag, Values: r.nonFiniteText(), Time: r.Time}
		}
		switch {
		case r.Tag == TagTrainInner:
			tr = append(tr, r)
		case r.Tag == TagTrain:
			s.EpochEnds++
		case IsValidTag(r.Tag):
			loss, ok := r.Values["loss"]
			if !ok {
				continue
			}
			i, seen := validIdx[r.Tag]
			if !seen {
				i = len(s.Validation)
				validIdx[r.Tag] = i
				s.Validation = append(s.Validation, Validation{Subset: r.Tag, BestLoss: loss, BestUpdate: int64(r.Values["num_updates"])})
			}
			v := &s.Validation[i]
			v.Evaluations++
			v.LastLoss, v.LastPPL, v.LastUpdate = loss, r.Values["ppl"], int64(r.Values["num_updates"])
			if loss < v.BestLoss {
				v.BestLoss, v.BestUpdate = loss, v.LastUpdate
			}
		}
	}
	s.Intervals = len(tr)
	if len(tr) == 0 {
		return s
	}
	first, last := tr[0], tr[len(tr)-1]
	s.Start, s.End = first.Time, last.Time
	s.FirstUpdate, s.LastUpdate = int64(first.Values["num_updates"]), int64(last.Values["num_updates"])
	s.WPB = last.Values["wpb"]
	for i := len(tr) - 1; i >= 0; i-- {
		if loss, ok := tr[i].Values["loss"]; ok {
			s.FinalLoss, s.FinalPPL, s.FinalLossUpdate = loss, tr[i].Values["ppl"], int64(tr[i].Values["num_updates"])
			break
		}
	}
	for _, r := range tr {
		s.MaxCUDAGB = math.Max(s.MaxCUDAGB, r.Values["cuda_gb_allocated"])
	}
	steady := tr[1:]
	s.SteadyIntervals = len(steady)
	if len(steady) == 0 {
		return s
	}
	s.HasSteadyState = true
	var wps, ups float64
	var nw, nu int
	for _, r := range steady {
		if v, ok := r.Values["wps"]; ok {
			wps += v
			nw++
		}
		if v, ok := r.Values["ups"]; ok {
			ups += v
			nu++
		}
	}
	if nw > 0 {
		s.MeanWPS = wps / float64(nw)
	}
	if nu > 0 {
		s.MeanUPS = ups / float64(nu)
	}
	s.LastWPS, s.LastUPS = last.Values["wps"], last.Values["ups"]
	w0, ok0 := first.Values["wall"]
	w1, ok1 := last.Values["wall"]
	du := last.Values["num_updates"] - first.Values["num_updates"]
	switch {
	case ok0 && ok1 && du > 0 && w1 > w0:
		s.SecondsPerUpdate = (w1 - w0) / du
	case s.MeanUPS > 0:
		s.SecondsPerUpdate = 1 / s.MeanUPS
	}
	return s
}

// RecordFromPoint rebuilds a record from a stored training point (the
// inverse of Record.Point, up to key names made safe as field names).
func RecordFromPoint(p results.Point) Record {
	r := Record{Time: p.Time, Tag: p.Tags["tag"], Values: map[string]float64{}}
	for k, v := range p.Fields {
		switch x := v.(type) {
		case float64:
			r.Values[k] = x
		case int64:
			r.Values[k] = float64(x)
		case uint64:
			r.Values[k] = float64(x)
		}
	}
	if s, ok := p.Fields[FieldNonFinite].(string); ok && s != "" {
		r.NonFinite = map[string]string{}
		for _, kv := range strings.Split(s, ",") {
			k, v, _ := strings.Cut(kv, "=")
			r.NonFinite[k] = v
		}
	}
	return r
}

// SummarizePoints rebuilds a summary from stored training points (for
// `results show`): points of other measurements are ignored. Points of
// several experiments or tasks must be split first (SummarizeRuns).
func SummarizePoints(pts []results.Point) Summary {
	var recs []Record
	for _, p := range pts {
		if p.Measurement == Measurement {
			recs = append(recs, RecordFromPoint(p))
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time.Before(recs[j].Time) })
	return Summarize(recs)
}

// Run is one training run among stored points: its experiment, task and
// job tags, and its summary.
type Run struct {
	Experiment string  `json:"experiment,omitempty"`
	Task       string  `json:"task,omitempty"`
	Job        string  `json:"job,omitempty"`
	Summary    Summary `json:"summary"`
}

// Label names the run for people: "opt125m-… task 0 job 1234", leaving
// out what it has not.
func (r Run) Label() string {
	var parts []string
	for _, p := range [][2]string{{"", r.Experiment}, {"task ", r.Task}, {"job ", r.Job}} {
		if p[1] != "" {
			parts = append(parts, p[0]+p[1])
		}
	}
	if len(parts) == 0 {
		return "training run"
	}
	return strings.Join(parts, " ")
}

// SummarizeRuns splits training points by experiment, task and job and
// summarises each, in the order the runs first appear.
func SummarizeRuns(pts []results.Point) []Run {
	type key struct{ exp, task, job string }
	var order []key
	by := map[key][]results.Point{}
	for _, p := range pts {
		if p.Measurement != Measurement {
			continue
		}
		k := key{p.Tags[results.TagExperiment], p.Tags[results.TagTask], p.Tags["job"]}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], p)
	}
	runs := make([]Run, 0, len(order))
	for _, k := range order {
		runs = append(runs, Run{Experiment: k.exp, Task: k.task, Job: k.job, Summary: SummarizePoints(by[k])})
	}
	return runs
}
