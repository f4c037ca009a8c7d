// Package trainlog parses Metaseq training logs (--log-format json) into
// metric points of measurement "training", follows a growing log while the
// job runs, and summarises a run (steady-state throughput, time per update,
// final loss). Schema: docs/training.md.
package trainlog

import (
	"encoding/json"
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
const Measurement = "training"

// TagTrainInner is the progress-bar tag of periodic training lines.
const TagTrainInner = "train_inner"

// lineRE matches `YYYY-MM-DD HH:MM:SS | LEVEL | tag | {json}` after any
// prefix (srun --label "0: ", the legacy "slurm_procid 0 : ").
var lineRE = regexp.MustCompile(`^(.*?)(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) \| (\w+) \| ([^|]+?) \| (\{.*\})\s*$`)

// Record is one parsed stats line.
type Record struct {
	Time   time.Time // UTC, second resolution as logged
	Level  string    // INFO
	Tag    string    // train_inner, train, valid/<subset>
	Prefix string    // text before the timestamp, trimmed ("0:", "slurm_procid 0 :")
	// Values are every numeric value (the JSON strings parsed with
	// strconv.ParseFloat; epoch and update as numbers).
	Values map[string]float64
	// Nulls lists keys whose value was null (a meter without data).
	Nulls []string
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

// ParseLine parses one log line. ok is false for lines that are not stats
// lines (the many other lines of a training log); err is set for lines that
// have the shape but a broken JSON object or value.
func ParseLine(line string) (rec Record, ok bool, err error) {
	line = strings.TrimRight(line, "\r\n")
	if !strings.Contains(line, " | ") || !strings.HasSuffix(strings.TrimSpace(line), "}") {
		return Record{}, false, nil // cheap pre-filter: most lines are not stats
	}
	m := lineRE.FindStringSubmatch(line)
	if m == nil {
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
	for k, v := range raw {
		s := strings.TrimSpace(string(v))
		switch {
		case s == "null":
			rec.Nulls = append(rec.Nulls, k)
			continue
		case strings.HasPrefix(s, `"`):
			if err := json.Unmarshal(v, &s); err != nil {
				return Record{}, true, &ParseError{Msg: fmt.Sprintf("%s: key %q: %v", rec.Tag, k, err)}
			}
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			// Non-numeric values (none in current metaseq) are not metrics.
			continue
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			// InfluxDB rejects them; a diverged loss shows as null instead.
			rec.Nulls = append(rec.Nulls, k)
			continue
		}
		rec.Values[k] = f
	}
	sort.Strings(rec.Nulls)
	return rec, true, nil
}

// Standard keys (docs/training.md); others are kept as optional fields.
var intKeys = map[string]bool{"num_updates": true, "epoch": true, "bsz": true}

// fieldName makes a key safe as a field name (metaseq keys already are;
// valid lines carry "valid/<subset>_loss").
func fieldName(k string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == ',' || r == '=' || r == '"' || r == '\\' {
			return '_'
		}
		return r
	}, k)
}

// Point turns a record into a point of measurement "training" with the given
// tags (experiment, task, job) plus tag=<progress tag>.
func (r Record) Point(tags map[string]string) results.Point {
	t := make(map[string]string, len(tags)+1)
	for k, v := range tags {
		if v != "" {
			t[k] = v
		}
	}
	t["tag"] = r.Tag
	f := make(map[string]any, len(r.Values))
	for k, v := range r.Values {
		name := fieldName(k)
		if name == "" {
			continue
		}
		if intKeys[k] && v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			f[name] = int64(v)
		} else {
			f[name] = v
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
	// Tags to collect; nil means only train_inner.
	Include func(tag string) bool

	last    time.Time
	records []Record
}

// Add records r (if included) and returns its point.
func (c *Collector) Add(r Record) (results.Point, bool) {
	inc := c.Include
	if inc == nil {
		inc = func(t string) bool { return t == TagTrainInner }
	}
	if !inc(r.Tag) {
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

// Summary returns the summary of the train_inner records so far.
func (c *Collector) Summary() Summary { return Summarize(c.records) }

// Summary describes a training run from its train_inner lines.
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
	FinalLoss        float64 `json:"final_loss"` // bits/token
	FinalPPL         float64 `json:"final_ppl"`
	WPB              float64 `json:"wpb"`              // tokens per update
	MaxCUDAGB        float64 `json:"max_cuda_gb"`      // peak cuda_gb_allocated
	HasSteadyState   bool    `json:"has_steady_state"` // at least two intervals
}

// Summarize computes the summary of train_inner records (others are
// ignored), in log order.
func Summarize(recs []Record) Summary {
	var tr []Record
	for _, r := range recs {
		if r.Tag == TagTrainInner {
			tr = append(tr, r)
		}
	}
	s := Summary{Intervals: len(tr)}
	if len(tr) == 0 {
		return s
	}
	first, last := tr[0], tr[len(tr)-1]
	s.Start, s.End = first.Time, last.Time
	s.FirstUpdate, s.LastUpdate = int64(first.Values["num_updates"]), int64(last.Values["num_updates"])
	s.FinalLoss, s.FinalPPL, s.WPB = last.Values["loss"], last.Values["ppl"], last.Values["wpb"]
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

// SummarizePoints rebuilds a summary from stored training points (for
// `results show`): points of other measurements or tags are ignored.
func SummarizePoints(pts []results.Point) Summary {
	var recs []Record
	for _, p := range pts {
		if p.Measurement != Measurement || p.Tags["tag"] != TagTrainInner {
			continue
		}
		r := Record{Time: p.Time, Tag: TagTrainInner, Values: map[string]float64{}}
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
		recs = append(recs, r)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time.Before(recs[j].Time) })
	return Summarize(recs)
}
