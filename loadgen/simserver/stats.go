package simserver

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// ModelStats are one model copy's counters since the server started.
type ModelStats struct {
	Model            string  `json:"model,omitempty"`
	Kind             string  `json:"kind,omitempty"`
	Requests         int64   `json:"requests"`
	Completed        int64   `json:"completed"`
	Dropped          int64   `json:"dropped"`
	Failed           int64   `json:"failed"`
	Hung             int64   `json:"hung"`
	Cancelled        int64   `json:"cancelled"`
	Queued           int64   `json:"queued"`
	Batches          int64   `json:"batches,omitempty"`
	MeanBatchSize    float64 `json:"mean_batch_size,omitempty"`
	Active           int64   `json:"active,omitempty"`
	PromptTokens     int64   `json:"prompt_tokens,omitempty"`
	CompletionTokens int64   `json:"completion_tokens,omitempty"`
	batched          int64
}

// Stats is the /stats document.
type Stats struct {
	UptimeS      float64      `json:"uptime_s"`
	Models       int          `json:"models"`        // served names, copies counted
	ModelsActive int          `json:"models_active"` // copies that got a request
	BadRequests  int64        `json:"bad_requests"`
	UnknownModel int64        `json:"unknown_model"`
	Total        ModelStats   `json:"total"`
	PerModel     []ModelStats `json:"per_model"`
}

// Stats returns counters per model copy that has been used (all served
// copies when all is true), sorted by name, and their total.
func (s *Server) Stats(all bool) Stats {
	st := Stats{UptimeS: time.Since(s.started).Seconds(), Models: s.reg.total,
		BadRequests: s.badRequests.Load(), UnknownModel: s.unknownModel.Load(), PerModel: []ModelStats{}}
	seen := map[string]bool{}
	s.reg.states.Range(func(k, v any) bool {
		m := v.(*model)
		ms := ModelStats{Model: m.name, Kind: m.sp.kind.String(),
			Requests: m.st.requests.Load(), Completed: m.st.completed.Load(), Dropped: m.st.dropped.Load(),
			Failed: m.st.failed.Load(), Hung: m.st.hung.Load(), Cancelled: m.st.cancelled.Load(),
			Queued: m.st.queued.Load(), Batches: m.st.batches.Load(), batched: m.st.batched.Load(),
			Active: int64(m.active.Load()), PromptTokens: m.st.promptTokens.Load(), CompletionTokens: m.st.completionTokens.Load()}
		if ms.Batches > 0 {
			ms.MeanBatchSize = float64(ms.batched) / float64(ms.Batches)
		}
		st.ModelsActive++
		seen[m.name] = true
		st.PerModel = append(st.PerModel, ms)
		t := &st.Total
		t.Requests += ms.Requests
		t.Completed += ms.Completed
		t.Dropped += ms.Dropped
		t.Failed += ms.Failed
		t.Hung += ms.Hung
		t.Cancelled += ms.Cancelled
		t.Queued += ms.Queued
		t.Batches += ms.Batches
		t.batched += ms.batched
		t.Active += ms.Active
		t.PromptTokens += ms.PromptTokens
		t.CompletionTokens += ms.CompletionTokens
		return true
	})
	if st.Total.Batches > 0 {
		st.Total.MeanBatchSize = float64(st.Total.batched) / float64(st.Total.Batches)
	}
	if all {
		s.reg.names(func(name string, sp *spec) {
			if !seen[name] {
				st.PerModel = append(st.PerModel, ModelStats{Model: name, Kind: sp.kind.String()})
			}
		})
	}
	sort.Slice(st.PerModel, func(i, j int) bool { return st.PerModel[i].Model < st.PerModel[j].Model })
	return st
}

// handleMetrics serves the counters in the Prometheus text format.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	st := s.Stats(false)
	var b strings.Builder
	series := []struct {
		name, help string
		get        func(ModelStats) float64
	}{
		{"requests_total", "inference requests received", func(m ModelStats) float64 { return float64(m.Requests) }},
		{"completed_total", "inference requests answered 200", func(m ModelStats) float64 { return float64(m.Completed) }},
		{"dropped_total", "requests dropped for their deadline (503)", func(m ModelStats) float64 { return float64(m.Dropped) }},
		{"failed_total", "injected failures (500)", func(m ModelStats) float64 { return float64(m.Failed) }},
		{"hung_total", "injected hangs", func(m ModelStats) float64 { return float64(m.Hung) }},
		{"cancelled_total", "requests the client gave up on", func(m ModelStats) float64 { return float64(m.Cancelled) }},
		{"batches_total", "DNN batches executed", func(m ModelStats) float64 { return float64(m.Batches) }},
		{"queued", "requests waiting now", func(m ModelStats) float64 { return float64(m.Queued) }},
		{"completion_tokens_total", "tokens generated", func(m ModelStats) float64 { return float64(m.CompletionTokens) }},
	}
	for _, se := range series {
		fmt.Fprintf(&b, "# HELP gpuorch_sim_%s %s\n# TYPE gpuorch_sim_%s %s\n", se.name, se.help, se.name,
			map[bool]string{true: "counter", false: "gauge"}[strings.HasSuffix(se.name, "_total")])
		for _, m := range st.PerModel {
			fmt.Fprintf(&b, "gpuorch_sim_%s{model=%q,kind=%q} %g\n", se.name, m.Model, m.Kind, se.get(m))
		}
	}
	fmt.Fprintf(&b, "# HELP gpuorch_sim_bad_requests_total requests answered 400\n# TYPE gpuorch_sim_bad_requests_total counter\ngpuorch_sim_bad_requests_total %d\n", st.BadRequests)
	fmt.Fprintf(&b, "# HELP gpuorch_sim_unknown_model_total requests for a model not served (404)\n# TYPE gpuorch_sim_unknown_model_total counter\ngpuorch_sim_unknown_model_total %d\n", st.UnknownModel)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.Write([]byte(b.String()))
}
