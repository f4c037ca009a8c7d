package results

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
)

// exportSummary is a 10 s LLM run: 1,000 requests offered, 990 completed,
// 64 output and 128 input tokens each.
func exportSummary() *loadgen.Summary {
	t0 := time.Date(2026, 12, 4, 15, 4, 5, 0, time.UTC)
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	q := func(base int64) loadgen.Quantiles {
		return loadgen.Quantiles{Count: 990, Min: us(base), Mean: us(base * 2), P25: us(base + 1), P50: us(base * 2), P75: us(base*2 + 1),
			P90: us(base * 3), P95: us(base * 4), P99: us(base * 5), P999: us(base * 6), Max: us(base * 7), Std: us(base / 2)}
	}
	return &loadgen.Summary{
		Experiment: "llm-20261204", Task: "3", Protocol: "openai-chat", Target: "http://127.0.0.1:8000",
		Status: loadgen.StatusCompleted, Started: t0, Ended: t0.Add(12 * time.Second),
		Total: loadgen.Snapshot{Interval: -1, Start: t0, End: t0.Add(10 * time.Second),
			Offered: 1000, Sent: 1000, Completed: 990, Errors: 4, Timeouts: 3, Dropped: 2, Cancelled: 1, SLOMet: 900,
			TTFT: q(12345), TPOT: q(20011), ITL: q(19999), E2EL: q(1280000), InputTokens: 990 * 128, OutputTokens: 990 * 64},
	}
}

func export(t *testing.T, format string, info ExportInfo) map[string]any {
	t.Helper()
	v, err := Export(format, exportSummary(), info)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// The fields and units of aiperf's profile_export_aiperf.json: JsonExportData
// and JsonMetricResult in aiperf's src/aiperf/common/models/export_models.py,
// documented at https://docs.nvidia.com/aiperf/v0.13.0/reference/json-export-schema.md
// ("record metrics carry the full set; derived/aggregate carry only unit +
// avg"; units are display units: "ms", "requests/sec", "tokens", ...).
var aiperfTopLevel = []string{"schema_version", "aiperf_version", "benchmark_id", "request_throughput", "request_latency",
	"request_count", "time_to_first_token", "time_to_second_token", "inter_token_latency", "output_token_throughput",
	"output_token_throughput_per_user", "output_sequence_length", "input_sequence_length", "goodput", "good_request_count",
	"output_token_count", "reasoning_token_count", "min_request_timestamp", "max_response_timestamp", "inter_chunk_latency",
	"total_output_tokens", "total_reasoning_tokens", "benchmark_duration", "total_isl", "total_osl", "error_request_count",
	"error_isl", "total_error_isl", "telemetry_data", "input_config", "was_cancelled", "error_summary", "start_time", "end_time",
	"run_info", "warmup_metrics"}

var aiperfStatKeys = []string{"unit", "avg", "p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "min", "max", "std", "count", "sum"}

func TestExportAIPerf(t *testing.T) {
	m := export(t, ExportAIPerf, ExportInfo{Model: "sim-llm", Concurrency: 100})
	for k, v := range m {
		if k == "gpuorch" { // our provenance; aiperf's model allows extra fields
			continue
		}
		if !slices.Contains(aiperfTopLevel, k) {
			t.Errorf("top-level key %q is not in aiperf's JsonExportData", k)
		}
		if blk, ok := v.(map[string]any); ok {
			for sk := range blk {
				if !slices.Contains(aiperfStatKeys, sk) {
					t.Errorf("%s.%s is not a JsonMetricResult field", k, sk)
				}
			}
		}
	}
	if m["schema_version"] != "1.1" || m["was_cancelled"] != false || m["start_time"] != "2026-12-04T15:04:05Z" || m["end_time"] != "2026-12-04T15:04:15Z" {
		t.Errorf("provenance: %v %v %v %v", m["schema_version"], m["was_cancelled"], m["start_time"], m["end_time"])
	}
	// Record metrics: the distribution in ms, with count and sum.
	record := map[string]float64{ // metric → gpuorch's p99 in ms
		"time_to_first_token": 5 * 12.345,
		"inter_token_latency": 5 * 20.011, // aiperf's ITL is per request (latency − TTFT)/(OSL − 1): gpuorch's TPOT
		"inter_chunk_latency": 5 * 19.999, // aiperf's per-gap figure: gpuorch's ITL
		"request_latency":     5 * 1280,
	}
	for name, p99 := range record {
		blk, _ := m[name].(map[string]any)
		if blk == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if blk["unit"] != "ms" || !near(blk["p99"].(float64), p99) || blk["count"] != float64(990) {
			t.Errorf("%s: %v, want unit ms, p99 %v ms, count 990", name, blk, p99)
		}
		for _, k := range []string{"avg", "min", "max", "p50", "p90", "p95", "std", "sum"} {
			if _, ok := blk[k]; !ok {
				t.Errorf("%s has no %s", name, k)
			}
		}
		if !near(blk["sum"].(float64), blk["avg"].(float64)*990) {
			t.Errorf("%s: sum %v ≠ avg × count", name, blk["sum"])
		}
	}
	// Derived and aggregate metrics: unit and avg only.
	scalars := map[string]struct {
		unit string
		avg  float64
	}{
		"request_throughput":      {"requests/sec", 99},
		"request_count":           {"requests", 990},
		"output_token_throughput": {"tokens/sec", 990 * 64 / 10.0},
		"benchmark_duration":      {"sec", 10},
		"total_osl":               {"tokens", 990 * 64},
		"total_isl":               {"tokens", 990 * 128},
		"error_request_count":     {"requests", 10},
	}
	for name, want := range scalars {
		blk, _ := m[name].(map[string]any)
		if blk == nil || len(blk) != 2 || blk["unit"] != want.unit || !near(blk["avg"].(float64), want.avg) {
			t.Errorf("%s: %v, want only unit %q and avg %v", name, blk, want.unit, want.avg)
		}
	}
	if osl, _ := m["output_sequence_length"].(map[string]any); osl == nil || osl["unit"] != "tokens" || osl["avg"] != 64.0 || osl["count"] != 990.0 {
		t.Errorf("output_sequence_length: %v", osl)
	}
	if _, ok := m["goodput"]; ok {
		t.Error("goodput without any SLO")
	}
	g := export(t, ExportAIPerf, ExportInfo{SLOTTFT: time.Second})
	if blk, _ := g["goodput"].(map[string]any); blk == nil || blk["unit"] != "requests/sec" || blk["avg"] != 90.0 {
		t.Errorf("goodput with a TTFT SLO: %v", g["goodput"])
	}
}

// The fields of vLLM's `bench serve --save-result` file: result_json in
// vllm/benchmarks/serve.py (main_async and benchmark): times in ms as
// {mean,median,std,pN}_{metric}_ms, duration in s, throughputs per s,
// request_rate a number or "inf", request_goodput null without --goodput.
var vllmKeys = func() []string {
	k := []string{"date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts", "request_rate",
		"burstiness", "max_concurrency", "duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
		"request_throughput", "request_goodput", "output_throughput", "total_token_throughput"}
	for _, m := range []string{"ttft", "tpot", "itl", "e2el"} {
		for _, s := range []string{"mean", "median", "std", "p50", "p90", "p95", "p99"} {
			k = append(k, s+"_"+m+"_ms")
		}
	}
	return k
}()

func TestExportVLLM(t *testing.T) {
	m := export(t, ExportVLLM, ExportInfo{Model: "sim-llm", Concurrency: 100})
	for _, k := range vllmKeys {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing", k)
		}
	}
	for k := range m {
		if k != "gpuorch" && !slices.Contains(vllmKeys, k) {
			t.Errorf("key %q is not in vLLM's result file", k)
		}
	}
	want := map[string]any{
		"date": "20261204-150405", "backend": "openai-chat", "endpoint_type": "openai-chat", "label": nil,
		"model_id": "sim-llm", "tokenizer_id": "sim-llm", "num_prompts": 1000.0, "request_rate": "inf", "burstiness": 1.0,
		"max_concurrency": 100.0, "duration": 10.0, "completed": 990.0, "failed": 10.0,
		"total_input_tokens": 990.0 * 128, "total_output_tokens": 990.0 * 64, "request_goodput": nil,
		"request_throughput": 99.0, "output_throughput": 990 * 64 / 10.0, "total_token_throughput": 990 * 192 / 10.0,
		"mean_ttft_ms": 24.69, "median_ttft_ms": 24.69, "std_ttft_ms": 6.172, "p99_ttft_ms": 61.725,
		"median_tpot_ms": 40.022, "p99_itl_ms": 99.995, "p50_e2el_ms": 2560.0, "p90_e2el_ms": 3840.0,
	}
	for k, w := range want {
		got := m[k]
		if wf, ok := w.(float64); ok {
			if gf, ok := got.(float64); !ok || !near(gf, wf) {
				t.Errorf("%s = %v, want %v", k, got, w)
			}
		} else if got != w {
			t.Errorf("%s = %v, want %v", k, got, w)
		}
	}
	p := export(t, ExportVLLM, ExportInfo{Model: "sim-llm", RequestRate: 100, Burstiness: 0.5, SLOTPOT: 30 * time.Millisecond})
	if p["request_rate"] != 100.0 || p["burstiness"] != 0.5 || p["max_concurrency"] != nil || p["request_goodput"] != 90.0 {
		t.Errorf("open loop with a TPOT SLO: rate %v burstiness %v max_concurrency %v goodput %v",
			p["request_rate"], p["burstiness"], p["max_concurrency"], p["request_goodput"])
	}
}

func TestExportErrors(t *testing.T) {
	s := exportSummary()
	if _, err := Export("genai-perf", s, ExportInfo{}); err == nil || !strings.Contains(err.Error(), "aiperf or vllm") {
		t.Errorf("unknown format: %v", err)
	}
	s.Total.TTFT, s.Total.E2EL = loadgen.Quantiles{}, loadgen.Quantiles{}
	if _, err := Export(ExportVLLM, s, ExportInfo{}); err == nil || !strings.Contains(err.Error(), "no LLM measurements") {
		t.Errorf("a KServe run: %v", err)
	}
}
