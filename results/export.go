package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
)

// Export formats: a task's LLM results in the JSON shape of another tool's
// result file, so that gpuorch runs can sit in the comparisons people
// already keep. Definitions differ between the tools; docs/loadgen.md
// ("Definitions side by side") says how each field is filled.
const (
	// ExportAIPerf is aiperf's profile_export_aiperf.json (schema 1.1:
	// https://docs.nvidia.com/aiperf/v0.13.0/reference/json-export-schema.md).
	ExportAIPerf = "aiperf"
	// ExportVLLM is the result file of vLLM's `bench serve --save-result`
	// (vllm/benchmarks/serve.py, main_async: result_json).
	ExportVLLM = "vllm"
)

// ExportFormats lists the formats Export writes.
var ExportFormats = []string{ExportAIPerf, ExportVLLM}

// ExportInfo is what the export needs besides the summary.
type ExportInfo struct {
	Model            string  // model name (the task's first model)
	Concurrency      int     // closed-loop clients (0: open loop)
	RequestRate      float64 // offered requests/s of an open-loop run (0: none)
	Burstiness       float64 // gamma shape (1 = Poisson)
	SLOTTFT, SLOTPOT time.Duration
	SLOE2EL          time.Duration
}

// Export returns the summary of one LLM task in format (ExportAIPerf or
// ExportVLLM), ready for json.Marshal. A run that measured no stream is an
// error: the formats describe streamed LLM answers.
func Export(format string, s *loadgen.Summary, info ExportInfo) (any, error) {
	if s.Total.TTFT.Count == 0 && s.Total.E2EL.Count == 0 {
		return nil, errors.New("no LLM measurements in this summary (TTFT and E2EL are empty): export is for OpenAI-protocol runs")
	}
	switch format {
	case ExportAIPerf:
		return aiperfExport(s, info), nil
	case ExportVLLM:
		return vllmExport(s, info), nil
	}
	return nil, fmt.Errorf("unknown export format %q (want %s or %s)", format, ExportAIPerf, ExportVLLM)
}

// exportDuration is the schedule's span: the rates' denominator.
func exportDuration(s *loadgen.Summary) float64 {
	if d := s.Total.End.Sub(s.Total.Start).Seconds(); d > 0 {
		return d
	}
	return s.Ended.Sub(s.Started).Seconds()
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// AIPerfMetric is one metric block of profile_export_aiperf.json. Unset
// fields are omitted, as aiperf omits them: record metrics carry the
// distribution (gpuorch keeps p25–p99.9, not p1–p10), derived and aggregate
// metrics only unit and avg.
type AIPerfMetric struct {
	Unit  string   `json:"unit"`
	Avg   *float64 `json:"avg,omitempty"`
	P25   *float64 `json:"p25,omitempty"`
	P50   *float64 `json:"p50,omitempty"`
	P75   *float64 `json:"p75,omitempty"`
	P90   *float64 `json:"p90,omitempty"`
	P95   *float64 `json:"p95,omitempty"`
	P99   *float64 `json:"p99,omitempty"`
	Min   *float64 `json:"min,omitempty"`
	Max   *float64 `json:"max,omitempty"`
	Std   *float64 `json:"std,omitempty"`
	Count *int64   `json:"count,omitempty"`
	Sum   *float64 `json:"sum,omitempty"`
}

// AIPerfExport is the shape of aiperf's profile_export_aiperf.json, with
// gpuorch's figures in it.
type AIPerfExport struct {
	SchemaVersion             string        `json:"schema_version"`
	RequestThroughput         *AIPerfMetric `json:"request_throughput,omitempty"`
	RequestLatency            *AIPerfMetric `json:"request_latency,omitempty"`
	RequestCount              *AIPerfMetric `json:"request_count,omitempty"`
	TimeToFirstToken          *AIPerfMetric `json:"time_to_first_token,omitempty"`
	InterTokenLatency         *AIPerfMetric `json:"inter_token_latency,omitempty"`
	InterChunkLatency         *AIPerfMetric `json:"inter_chunk_latency,omitempty"`
	OutputTokenThroughput     *AIPerfMetric `json:"output_token_throughput,omitempty"`
	OutputSequenceLength      *AIPerfMetric `json:"output_sequence_length,omitempty"`
	InputSequenceLength       *AIPerfMetric `json:"input_sequence_length,omitempty"`
	Goodput                   *AIPerfMetric `json:"goodput,omitempty"`
	GoodRequestCount          *AIPerfMetric `json:"good_request_count,omitempty"`
	TotalOutputSequenceLength *AIPerfMetric `json:"total_osl,omitempty"`
	TotalInputSequenceLength  *AIPerfMetric `json:"total_isl,omitempty"`
	BenchmarkDuration         *AIPerfMetric `json:"benchmark_duration,omitempty"`
	ErrorRequestCount         *AIPerfMetric `json:"error_request_count,omitempty"`
	WasCancelled              bool          `json:"was_cancelled"`
	StartTime                 time.Time     `json:"start_time"`
	EndTime                   time.Time     `json:"end_time"`
	GpuorchSource             ExportSource  `json:"gpuorch"`
}

// ExportSource says where an exported file came from (an extra top-level
// key: aiperf's readers allow unknown fields, vLLM's file is a plain dict).
type ExportSource struct {
	Experiment  string `json:"experiment"`
	Task        string `json:"task"`
	Status      string `json:"status"`
	Target      string `json:"target"`
	Protocol    string `json:"protocol"`
	Definitions string `json:"definitions"`
}

func source(s *loadgen.Summary) ExportSource {
	return ExportSource{Experiment: s.Experiment, Task: s.Task, Status: s.Status, Target: s.Target, Protocol: s.Protocol,
		Definitions: "gpuorch's measurements; see docs/loadgen.md, \"Definitions side by side\""}
}

func fp(v float64) *float64 { return &v }

// scalar is a derived or aggregate metric: unit and value only.
func scalar(unit string, v float64) *AIPerfMetric { return &AIPerfMetric{Unit: unit, Avg: fp(v)} }

// recordMetric is a record metric from gpuorch's quantiles, in ms.
func recordMetric(q loadgen.Quantiles) *AIPerfMetric {
	if q.Count == 0 {
		return nil
	}
	c := q.Count
	return &AIPerfMetric{Unit: "ms", Avg: fp(msf(q.Mean)), P25: fp(msf(q.P25)), P50: fp(msf(q.P50)), P75: fp(msf(q.P75)),
		P90: fp(msf(q.P90)), P95: fp(msf(q.P95)), P99: fp(msf(q.P99)), Min: fp(msf(q.Min)), Max: fp(msf(q.Max)),
		Std: fp(msf(q.Std)), Count: &c, Sum: fp(msf(q.Mean) * float64(q.Count))}
}

func aiperfExport(s *loadgen.Summary, info ExportInfo) *AIPerfExport {
	t := s.Total
	dur := exportDuration(s)
	failed := t.Errors + t.Timeouts + t.Dropped + t.Cancelled
	e := &AIPerfExport{
		SchemaVersion:     "1.1",
		RequestThroughput: scalar("requests/sec", float64(t.Completed)/dur),
		RequestLatency:    recordMetric(t.E2EL),
		RequestCount:      scalar("requests", float64(t.Completed)),
		TimeToFirstToken:  recordMetric(t.TTFT),
		// aiperf's inter_token_latency is (request latency − TTFT) /
		// (output tokens − 1) per request: gpuorch's TPOT. Its
		// inter_chunk_latency is the gap between chunks: gpuorch's ITL.
		InterTokenLatency:         recordMetric(t.TPOT),
		InterChunkLatency:         recordMetric(t.ITL),
		OutputTokenThroughput:     scalar("tokens/sec", float64(t.OutputTokens)/dur),
		TotalOutputSequenceLength: scalar("tokens", float64(t.OutputTokens)),
		TotalInputSequenceLength:  scalar("tokens", float64(t.InputTokens)),
		BenchmarkDuration:         scalar("sec", dur),
		ErrorRequestCount:         scalar("requests", float64(failed)),
		WasCancelled:              s.Status == loadgen.StatusInterrupted,
		StartTime:                 t.Start.UTC(),
		EndTime:                   t.End.UTC(),
		GpuorchSource:             source(s),
	}
	if e.StartTime.IsZero() {
		e.StartTime, e.EndTime = s.Started.UTC(), s.Ended.UTC()
	}
	if t.Completed > 0 {
		c := t.Completed
		e.OutputSequenceLength = &AIPerfMetric{Unit: "tokens", Avg: fp(float64(t.OutputTokens) / float64(c)), Count: &c, Sum: fp(float64(t.OutputTokens))}
		e.InputSequenceLength = &AIPerfMetric{Unit: "tokens", Avg: fp(float64(t.InputTokens) / float64(c)), Count: &c, Sum: fp(float64(t.InputTokens))}
	}
	if info.SLOTTFT > 0 || info.SLOTPOT > 0 || info.SLOE2EL > 0 {
		e.Goodput = scalar("requests/sec", float64(t.SLOMet)/dur)
		e.GoodRequestCount = scalar("requests", float64(t.SLOMet))
	}
	return e
}

// VLLMExport is the result file of `vllm bench serve --save-result`, as
// written with --percentile-metrics ttft,tpot,itl,e2el and
// --metric-percentiles 50,90,95,99 (all times in ms, duration in s).
type VLLMExport struct {
	Date                 string   `json:"date"` // %Y%m%d-%H%M%S
	EndpointType         string   `json:"endpoint_type"`
	Backend              string   `json:"backend"`
	Label                *string  `json:"label"`
	ModelID              string   `json:"model_id"`
	TokenizerID          string   `json:"tokenizer_id"`
	NumPrompts           int64    `json:"num_prompts"`
	RequestRate          any      `json:"request_rate"` // a number, or "inf"
	Burstiness           float64  `json:"burstiness"`
	MaxConcurrency       *int     `json:"max_concurrency"`
	Duration             float64  `json:"duration"`
	Completed            int64    `json:"completed"`
	Failed               int64    `json:"failed"`
	TotalInputTokens     int64    `json:"total_input_tokens"`
	TotalOutputTokens    int64    `json:"total_output_tokens"`
	RequestThroughput    float64  `json:"request_throughput"`
	RequestGoodput       *float64 `json:"request_goodput"`
	OutputThroughput     float64  `json:"output_throughput"`
	TotalTokenThroughput float64  `json:"total_token_throughput"`

	MeanTTFTMs   float64 `json:"mean_ttft_ms"`
	MedianTTFTMs float64 `json:"median_ttft_ms"`
	StdTTFTMs    float64 `json:"std_ttft_ms"`
	P50TTFTMs    float64 `json:"p50_ttft_ms"`
	P90TTFTMs    float64 `json:"p90_ttft_ms"`
	P95TTFTMs    float64 `json:"p95_ttft_ms"`
	P99TTFTMs    float64 `json:"p99_ttft_ms"`
	MeanTPOTMs   float64 `json:"mean_tpot_ms"`
	MedianTPOTMs float64 `json:"median_tpot_ms"`
	StdTPOTMs    float64 `json:"std_tpot_ms"`
	P50TPOTMs    float64 `json:"p50_tpot_ms"`
	P90TPOTMs    float64 `json:"p90_tpot_ms"`
	P95TPOTMs    float64 `json:"p95_tpot_ms"`
	P99TPOTMs    float64 `json:"p99_tpot_ms"`
	MeanITLMs    float64 `json:"mean_itl_ms"`
	MedianITLMs  float64 `json:"median_itl_ms"`
	StdITLMs     float64 `json:"std_itl_ms"`
	P50ITLMs     float64 `json:"p50_itl_ms"`
	P90ITLMs     float64 `json:"p90_itl_ms"`
	P95ITLMs     float64 `json:"p95_itl_ms"`
	P99ITLMs     float64 `json:"p99_itl_ms"`
	MeanE2ELMs   float64 `json:"mean_e2el_ms"`
	MedianE2ELMs float64 `json:"median_e2el_ms"`
	StdE2ELMs    float64 `json:"std_e2el_ms"`
	P50E2ELMs    float64 `json:"p50_e2el_ms"`
	P90E2ELMs    float64 `json:"p90_e2el_ms"`
	P95E2ELMs    float64 `json:"p95_e2el_ms"`
	P99E2ELMs    float64 `json:"p99_e2el_ms"`

	GpuorchSource ExportSource `json:"gpuorch"`
}

func vllmExport(s *loadgen.Summary, info ExportInfo) *VLLMExport {
	t := s.Total
	dur := exportDuration(s)
	backend := "openai"
	if s.Protocol == "openai-chat" {
		backend = "openai-chat"
	}
	e := &VLLMExport{
		Date: s.Started.Format("20060102-150405"), EndpointType: backend, Backend: backend,
		ModelID: info.Model, TokenizerID: info.Model, NumPrompts: t.Offered,
		RequestRate: "inf", Burstiness: 1, Duration: dur,
		Completed: t.Completed, Failed: t.Errors + t.Timeouts + t.Dropped + t.Cancelled,
		TotalInputTokens: t.InputTokens, TotalOutputTokens: t.OutputTokens,
		RequestThroughput:    float64(t.Completed) / dur,
		OutputThroughput:     float64(t.OutputTokens) / dur,
		TotalTokenThroughput: float64(t.InputTokens+t.OutputTokens) / dur,
		GpuorchSource:        source(s),
	}
	if info.RequestRate > 0 {
		e.RequestRate = info.RequestRate
	}
	if info.Burstiness > 0 {
		e.Burstiness = info.Burstiness
	}
	if info.Concurrency > 0 {
		c := info.Concurrency
		e.MaxConcurrency = &c
	}
	if info.SLOTTFT > 0 || info.SLOTPOT > 0 || info.SLOE2EL > 0 {
		e.RequestGoodput = fp(float64(t.SLOMet) / dur)
	}
	set := func(q loadgen.Quantiles, mean, median, std, p50, p90, p95, p99 *float64) {
		*mean, *median, *std = msf(q.Mean), msf(q.P50), msf(q.Std)
		*p50, *p90, *p95, *p99 = msf(q.P50), msf(q.P90), msf(q.P95), msf(q.P99)
	}
	set(t.TTFT, &e.MeanTTFTMs, &e.MedianTTFTMs, &e.StdTTFTMs, &e.P50TTFTMs, &e.P90TTFTMs, &e.P95TTFTMs, &e.P99TTFTMs)
	set(t.TPOT, &e.MeanTPOTMs, &e.MedianTPOTMs, &e.StdTPOTMs, &e.P50TPOTMs, &e.P90TPOTMs, &e.P95TPOTMs, &e.P99TPOTMs)
	set(t.ITL, &e.MeanITLMs, &e.MedianITLMs, &e.StdITLMs, &e.P50ITLMs, &e.P90ITLMs, &e.P95ITLMs, &e.P99ITLMs)
	set(t.E2EL, &e.MeanE2ELMs, &e.MedianE2ELMs, &e.StdE2ELMs, &e.P50E2ELMs, &e.P90E2ELMs, &e.P95E2ELMs, &e.P99E2ELMs)
	return e
}

// ExportTask reads the task directory dir (summary.json, and manifest.json
// when there is one: the model, concurrency or rate, and SLOs) and returns
// its results in format. Errors are of kind errkind.ErrInvalid.
func ExportTask(dir, format string) (any, error) {
	if !slices.Contains(ExportFormats, format) {
		return nil, errkind.Invalidf("unknown export format %q (want %s)", format, strings.Join(ExportFormats, " or "))
	}
	t := layout.Task(dir)
	b, err := os.ReadFile(t.Summary())
	if err != nil {
		return nil, errkind.Invalidf("%s has no results to export: %w (a task writes summary.json when its run ends)", dir, err)
	}
	var s loadgen.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, errkind.Invalidf("%s: %w", t.Summary(), err)
	}
	var info ExportInfo
	if mb, err := os.ReadFile(t.Manifest()); err == nil {
		var cfg loadgen.Config
		if err := json.Unmarshal(mb, &cfg); err != nil {
			return nil, errkind.Invalidf("%s: %w", t.Manifest(), err)
		}
		info = ExportInfo{Concurrency: cfg.Workload.Concurrency, Burstiness: cfg.Workload.Burstiness,
			SLOTTFT: cfg.SLO.TTFT.D(), SLOTPOT: cfg.SLO.TPOT.D(), SLOE2EL: cfg.SLO.E2EL.D()}
		if len(cfg.Target.Models) > 0 {
			info.Model = cfg.Target.Models[0]
		}
		if cfg.Workload.Arrival != "closed" {
			info.RequestRate = cfg.Workload.Rate
			if cfg.Workload.Arrival == "poisson" {
				info.Burstiness = 1
			}
		}
	}
	v, err := Export(format, &s, info)
	if err != nil {
		return nil, errkind.Invalidf("%s: %w", t.Summary(), err)
	}
	return v, nil
}

// Exportable reports whether dir holds a task's summary.json, or task
// directories with one (an experiment directory, or a copy of one).
func Exportable(dir string) bool {
	if _, err := os.Stat(layout.Task(dir).Summary()); err == nil {
		return true
	}
	sums, _ := filepath.Glob(layout.Task(layout.Experiment(dir).TaskGlob()).Summary())
	return len(sums) > 0
}

// ExportTaskDir is the task directory to export under dir: dir itself when
// it holds a summary and task is "", else task (an index) of the
// experiment directory dir, or its only task. Errors are of kind
// errkind.ErrInvalid.
func ExportTaskDir(dir, task string) (string, error) {
	if _, err := os.Stat(layout.Task(dir).Summary()); err == nil && task == "" {
		return dir, nil
	}
	exp := layout.Experiment(dir)
	if task != "" {
		i, err := strconv.Atoi(task)
		if err != nil || i < 0 {
			return "", errkind.Invalidf("--task %q: want a task index (0, 1, ...)", task)
		}
		return string(exp.Task(i)), nil
	}
	dirs, _ := filepath.Glob(exp.TaskGlob())
	if len(dirs) != 1 {
		return "", errkind.Invalidf("%s has %d tasks: choose one with --task INDEX", dir, len(dirs))
	}
	return dirs[0], nil
}
