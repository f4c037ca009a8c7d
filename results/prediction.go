package results

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gpuorch/gpuorch/internal/layout"
)

// MeasServingPrediction is the measurement of a task's predicted serving
// metrics (gpuorch bench's roofline model), one point per task with the
// task's experiment, task, workload, protocol and concurrency tags.
const MeasServingPrediction = "serving_prediction"

// Prediction is a task's predicted serving metrics beside the error of the
// prediction against what was measured.
type Prediction struct {
	Concurrency      int     `json:"concurrency,omitempty"`
	TTFT             float64 `json:"ttft_ms"`
	TPOT             float64 `json:"tpot_ms"`
	E2EL             float64 `json:"e2el_ms"`
	OutputTokensPerS float64 `json:"output_tokens_per_s"`
	RequestsPerS     float64 `json:"requests_per_s,omitempty"`
	Batch            int64   `json:"batch,omitempty"`
	KVCapacity       int64   `json:"kv_capacity,omitempty"`
	QueueMS          float64 `json:"queue_ms,omitempty"`
	// ErrorPct is 100 × (predicted − measured) / measured, keyed ttft,
	// tpot, e2el (against the measured mean) and output_tokens_per_s
	// (against the task's output tokens over its duration). A metric that
	// was not measured (or is zero on either side) has no entry.
	ErrorPct map[string]float64 `json:"error_pct,omitempty"`
}

// Measured is what a prediction is compared with; zero means not measured.
type Measured struct {
	TTFT, TPOT, E2EL float64 // means, ms
	OutputTokensPerS float64
}

// Error keys of Prediction.ErrorPct.
const (
	ErrKeyTTFT      = "ttft"
	ErrKeyTPOT      = "tpot"
	ErrKeyE2EL      = "e2el"
	ErrKeyOutTokens = "output_tokens_per_s"
)

// PredictionFromPoint reads a serving_prediction point (nil for any other
// measurement).
func PredictionFromPoint(p Point) *Prediction {
	if p.Measurement != MeasServingPrediction {
		return nil
	}
	f := p.Fields
	pr := &Prediction{
		TTFT: fieldFloat0(f, "ttft_ms"), TPOT: fieldFloat0(f, "tpot_ms"), E2EL: fieldFloat0(f, "e2el_ms"),
		OutputTokensPerS: fieldFloat0(f, "output_tokens_per_s"), RequestsPerS: fieldFloat0(f, "requests_per_s"),
		Batch: fieldInt(f, "batch"), KVCapacity: fieldInt(f, "kv_capacity"), QueueMS: fieldFloat0(f, "queue_ms"),
	}
	pr.Concurrency, _ = strconv.Atoi(p.Tags["concurrency"])
	return pr
}

// ReadTaskPrediction reads the prediction in a task directory's
// prediction.lp; nil, nil when the task has none.
func ReadTaskPrediction(taskDir string) (*Prediction, error) {
	path := filepath.Join(taskDir, layout.PredictionFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var pr *Prediction
	err := ReadLineFile(path, MeasServingPrediction, func(p Point) { pr = PredictionFromPoint(p) }, nil)
	if err != nil {
		return nil, err
	}
	return pr, nil
}

// RelErrorPct is 100 × (pred − meas) / meas; ok is false when either is not
// positive (nothing to compare).
func RelErrorPct(pred, meas float64) (float64, bool) {
	if pred <= 0 || meas <= 0 {
		return 0, false
	}
	return 100 * (pred - meas) / meas, true
}

// Against sets p.ErrorPct from the measured values (nil when none).
func (p *Prediction) Against(m Measured) {
	p.ErrorPct = nil
	for _, c := range []struct {
		key        string
		pred, meas float64
	}{
		{ErrKeyTTFT, p.TTFT, m.TTFT}, {ErrKeyTPOT, p.TPOT, m.TPOT}, {ErrKeyE2EL, p.E2EL, m.E2EL},
		{ErrKeyOutTokens, p.OutputTokensPerS, m.OutputTokensPerS},
	} {
		if e, ok := RelErrorPct(c.pred, c.meas); ok {
			if p.ErrorPct == nil {
				p.ErrorPct = map[string]float64{}
			}
			p.ErrorPct[c.key] = e
		}
	}
}

// OutputTokensPerS is the row's output tokens over its duration (0 when
// unknown).
func (r *Row) OutputTokensPerS() float64 {
	if r.OutputTokens == 0 || r.DurationS <= 0 {
		return 0
	}
	return float64(r.OutputTokens) / r.DurationS
}

// Measured is what the row measured, for comparison with a prediction.
func (r *Row) Measured() Measured {
	mean := func(d *Dist) float64 {
		if d == nil {
			return 0
		}
		return d.Mean
	}
	return Measured{TTFT: mean(r.TTFT), TPOT: mean(r.TPOT), E2EL: mean(r.E2EL), OutputTokensPerS: r.OutputTokensPerS()}
}

// HasPredictions reports whether any task row has a prediction.
func (r *Results) HasPredictions() bool {
	for i := range r.Tasks {
		if r.Tasks[i].Predicted != nil {
			return true
		}
	}
	return false
}

// AddPredictions attaches serving_prediction points to the task rows they
// predict, with the error against each row's measurements. A point matches
// a row by experiment and task, or by task name alone when the row's
// experiment differs (a copied directory) and that name is unambiguous. Of
// several points for one task the last wins (the local store may hold the
// same prediction twice: prediction.lp and a copy in metrics.lp).
func (r *Results) AddPredictions(pts []Point) {
	if len(pts) == 0 {
		return
	}
	if r.predictions == nil {
		r.predictions = map[taskKey]Point{}
	}
	for _, p := range pts {
		if p.Measurement == MeasServingPrediction && p.Tags[TagTask] != "" {
			r.predictions[taskKey{p.Tags[TagExperiment], p.Tags[TagTask]}] = p
		}
	}
	r.attachPredictions()
}

func (r *Results) attachPredictions() {
	if len(r.predictions) == 0 {
		return
	}
	byTask := map[string][]Point{}
	for k, p := range r.predictions {
		byTask[k.task] = append(byTask[k.task], p)
	}
	for i := range r.Tasks {
		row := &r.Tasks[i]
		p, ok := r.predictions[taskKey{row.Experiment, row.Task}]
		if !ok {
			if c := byTask[row.Task]; len(c) == 1 {
				p, ok = c[0], true
			}
		}
		if !ok {
			continue
		}
		pr := PredictionFromPoint(p)
		pr.Against(row.Measured())
		row.Predicted = pr
	}
}

// isPredictionFile reports whether path is a task's prediction file.
func isPredictionFile(path string) bool { return filepath.Base(path) == layout.PredictionFile }

func (f Format) pct(v float64, ok bool) string {
	if !ok {
		return ""
	}
	if f == Machine {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return fmt.Sprintf("%+.1f%%", v)
}

// predictionCols are, per predicted metric, the measured value, the
// prediction and the error: text shows "+3.2%", CSV the number of percent.
// withOutTokS adds the measured out_tok_s (FlatTable has it already).
func predictionCols(f Format, withOutTokS bool) []column {
	errSuffix := "_err"
	if f == Machine {
		errSuffix = "_err_pct"
	}
	type metric struct {
		name, unit, errKey string
		meas               func(Measured) float64
		pred               func(*Prediction) float64
	}
	var cols []column
	for _, m := range []metric{
		{"ttft", "_ms", ErrKeyTTFT, func(m Measured) float64 { return m.TTFT }, func(p *Prediction) float64 { return p.TTFT }},
		{"tpot", "_ms", ErrKeyTPOT, func(m Measured) float64 { return m.TPOT }, func(p *Prediction) float64 { return p.TPOT }},
		{"e2el", "_ms", ErrKeyE2EL, func(m Measured) float64 { return m.E2EL }, func(p *Prediction) float64 { return p.E2EL }},
		{"out_tok_s", "", ErrKeyOutTokens, func(m Measured) float64 { return m.OutputTokensPerS }, func(p *Prediction) float64 { return p.OutputTokensPerS }},
	} {
		if m.unit != "" || withOutTokS {
			name := m.name + "_mean" + m.unit
			if m.unit == "" {
				name = m.name
			}
			cols = append(cols, column{name, func(f Format, r *Row) string {
				if v := m.meas(r.Measured()); v > 0 {
					return f.num(v)
				}
				return ""
			}})
		}
		cols = append(cols,
			column{m.name + "_pred" + m.unit, func(f Format, r *Row) string {
				if r.Predicted == nil {
					return ""
				}
				return f.num(m.pred(r.Predicted))
			}},
			column{m.name + errSuffix, func(f Format, r *Row) string {
				if r.Predicted == nil {
					return ""
				}
				v, ok := r.Predicted.ErrorPct[m.errKey]
				return f.pct(v, ok)
			}})
	}
	return cols
}

// PredictionTable puts each task's measured TTFT, TPOT and E2EL means and
// output tokens/s beside the prediction and its error (predicted −
// measured, in percent of measured). `gpuorch results show` prints it under
// the task table when the experiment has predictions.
func (r *Results) PredictionTable(f Format) Table {
	after := append([]column{colStatus}, predictionCols(f, true)...)
	return build("Predicted (roofline) vs measured", f, r.Tasks, r.ParamKeys, []column{colTask}, after)
}
