package llmbench

import (
	"encoding/json"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
)

// Level is one concurrency level's measured metrics and prediction: what
// `gpuorch bench show` prints.
type Level struct {
	Task        string              `json:"task"`
	Concurrency int                 `json:"concurrency"`
	State       string              `json:"state"`
	Summary     *loadgen.Summary    `json:"-"`
	Metrics     *LevelMetrics       `json:"metrics,omitempty"`
	Predicted   *results.Prediction `json:"predicted,omitempty"`
	// ErrorPct repeats Predicted.ErrorPct with output_throughput for
	// output_tokens_per_s, the key this output has always had.
	ErrorPct map[string]float64 `json:"error_pct,omitempty"`
}

// LevelMetrics are a level's totals, latencies in milliseconds and rates
// per second of the task (vLLM's `bench serve` names).
type LevelMetrics struct {
	Completed    int64   `json:"completed"`
	Failed       int64   `json:"failed"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	DurationS    float64 `json:"duration_s"`
	TTFT         Millis  `json:"ttft_ms"`
	TPOT         Millis  `json:"tpot_ms"`
	ITL          Millis  `json:"itl_ms"`
	E2EL         Millis  `json:"e2el_ms"`
	// Rates are absent when the task took no time.
	RequestThroughput *float64 `json:"request_throughput,omitempty"`
	InputThroughput   *float64 `json:"input_throughput,omitempty"`
	OutputThroughput  *float64 `json:"output_throughput,omitempty"`
	// Goodput is completed requests meeting every SLO per second of the
	// task (= request_throughput when no SLO is set).
	Goodput *float64 `json:"goodput,omitempty"`
}

// Millis are a latency's statistics in milliseconds.
type Millis struct {
	Mean   float64 `json:"mean"`
	Median float64 `json:"median"`
	P25    float64 `json:"p25"`
	P75    float64 `json:"p75"`
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func millis(q loadgen.Quantiles) Millis {
	return Millis{Mean: ms(q.Mean), Median: ms(q.P50), P25: ms(q.P25), P75: ms(q.P75),
		P95: ms(q.P95), P99: ms(q.P99), Min: ms(q.Min), Max: ms(q.Max)}
}

// Stat is the named statistic ("ttft", "tpot", "itl", "e2el").
func (m *LevelMetrics) Stat(name string) Millis {
	switch name {
	case "ttft":
		return m.TTFT
	case "tpot":
		return m.TPOT
	case "itl":
		return m.ITL
	}
	return m.E2EL
}

func levelMetrics(sum *loadgen.Summary) *LevelMetrics {
	tot := sum.Total
	dur := sum.Ended.Sub(sum.Started).Seconds()
	m := &LevelMetrics{Completed: tot.Completed, Failed: tot.Errors + tot.Timeouts + tot.Dropped + tot.Cancelled,
		InputTokens: tot.InputTokens, OutputTokens: tot.OutputTokens, DurationS: dur,
		TTFT: millis(tot.TTFT), TPOT: millis(tot.TPOT), ITL: millis(tot.ITL), E2EL: millis(tot.E2EL)}
	if dur > 0 {
		rate := func(n int64) *float64 { v := float64(n) / dur; return &v }
		m.RequestThroughput = rate(tot.Completed)
		m.InputThroughput = rate(tot.InputTokens)
		m.OutputThroughput = rate(tot.OutputTokens)
		m.Goodput = rate(tot.SLOMet)
	}
	return m
}

// Levels reads a benchmark experiment's summaries and predictions.
func Levels(exp *orchestrator.Experiment) []Level {
	st := exp.Snapshot()
	dir := layout.Experiment(exp.Dir)
	var out []Level
	for i, t := range exp.Plan.Tasks {
		l := Level{Task: t.Name, Concurrency: t.Config.Workload.Concurrency}
		if i < len(st.Tasks) {
			l.State = string(st.Tasks[i].State)
		}
		var sum loadgen.Summary
		if b, err := limitio.ReadFile(dir.Task(i).Summary(), limitio.Record); err == nil && json.Unmarshal(b, &sum) == nil && sum.Task != "" {
			l.Summary = &sum
			l.Metrics = levelMetrics(&sum)
		}
		if pr, err := results.ReadTaskPrediction(string(dir.Task(i))); err == nil && pr != nil {
			// The error is the one `gpuorch results show` prints: against
			// the measured means and the task's output tokens/s.
			if l.Summary != nil {
				tot := l.Summary.Total
				m := results.Measured{TTFT: ms(tot.TTFT.Mean), TPOT: ms(tot.TPOT.Mean), E2EL: ms(tot.E2EL.Mean)}
				if v := l.Metrics.OutputThroughput; v != nil {
					m.OutputTokensPerS = *v
				}
				pr.Against(m)
				for k, v := range pr.ErrorPct {
					if l.ErrorPct == nil {
						l.ErrorPct = map[string]float64{}
					}
					if k == results.ErrKeyOutTokens {
						k = "output_throughput"
					}
					l.ErrorPct[k] = v
				}
			}
			l.Predicted = pr
		}
		out = append(out, l)
	}
	return out
}

// Predicted is the predicted value of latency statistic k in milliseconds
// (ITL has none).
func (l *Level) PredictedMS(k string) (float64, bool) {
	p := l.Predicted
	if p == nil {
		return 0, false
	}
	switch k {
	case "ttft":
		return p.TTFT, true
	case "tpot":
		return p.TPOT, true
	case "e2el":
		return p.E2EL, true
	}
	return 0, false
}
