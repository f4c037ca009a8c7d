package loadgen

import (
	"fmt"
	"strconv"
	"time"

	"github.com/gpuorch/gpuorch/internal/duration"
)

// Duration is a time.Duration that reads and writes as text ("250ms", "1m30s")
// in TOML and JSON, so specs and manifests stay readable: gpuorch's one
// duration type, named here because loadgen's configs are its main users.
type Duration = duration.Duration

// Config is one load run: what a task manifest holds (as JSON) and what
// `gpuorch loadgen run` executes. The orchestrator produces one per sweep
// point; loadgen never reads experiment specs itself.
type Config struct {
	Experiment string            `json:"experiment" toml:"experiment"`
	Task       string            `json:"task" toml:"task"`
	Seed       int64             `json:"seed" toml:"seed"`
	Duration   Duration          `json:"duration" toml:"duration"`
	Interval   Duration          `json:"interval,omitempty" toml:"interval"` // snapshot interval; default 1s
	Target     TargetConfig      `json:"target" toml:"target"`
	Workload   WorkloadConfig    `json:"workload" toml:"workload"`
	SLO        SLOConfig         `json:"slo" toml:"slo"`
	Tags       map[string]string `json:"tags,omitempty" toml:"tags"` // extra low-cardinality tags (sweep point values)
	// Drain is how long, after the schedule ends, in-flight requests may
	// still finish before they are cancelled and counted as cancelled
	// (default 5s, capped by the request timeout).
	Drain Duration `json:"drain,omitempty" toml:"drain"`
	// MaxInFlight caps outstanding requests; an arrival that finds the cap
	// reached is counted as dropped, never queued (default 20000).
	MaxInFlight int `json:"max_in_flight,omitempty" toml:"max_in_flight"`
	// PacerPriority is the scheduling priority the sending thread asks for:
	// "auto" (default: real-time if allowed and on two CPUs or more, else
	// nice -20, else normal), "realtime", "nice" or "normal". See
	// docs/loadgen.md.
	PacerPriority string `json:"pacer_priority,omitempty" toml:"pacer_priority"`
	// Shards runs the workload as this many shards, one process (on its
	// own node) each, that together send exactly the unsharded schedule
	// (Workload.Shard) from one common start, their histograms merged
	// exactly afterwards. 0 or 1: one process. See docs/slurm.md.
	Shards int `json:"shards,omitempty" toml:"shards"`
	// ShardTimeout is how long the shards wait for each other at the start
	// (default 2m).
	ShardTimeout Duration `json:"shard_timeout,omitempty" toml:"shard_timeout"`
}

// DefaultShardTimeout is Config.ShardTimeout's default.
const DefaultShardTimeout = 2 * time.Minute

// Pacer priorities (Config.PacerPriority, Summary.Pacer).
const (
	PacerAuto     = "auto"
	PacerRealtime = "realtime"
	PacerNice     = "nice"
	PacerNormal   = "normal"
)

// PacerPriorities lists the accepted values of Config.PacerPriority.
var PacerPriorities = []string{PacerAuto, PacerRealtime, PacerNice, PacerNormal}

// TargetConfig says where requests go and how they are encoded.
type TargetConfig struct {
	URL      string            `json:"url" toml:"url"`
	Protocol string            `json:"protocol" toml:"protocol"` // "http", "kserve", "openai", "openai-chat"
	Models   []string          `json:"models,omitempty" toml:"models"`
	Method   string            `json:"method,omitempty" toml:"method"` // plain HTTP only; default GET
	Headers  map[string]string `json:"headers,omitempty" toml:"headers"`
	Body     string            `json:"body,omitempty" toml:"body"`
	Timeout  Duration          `json:"timeout,omitempty" toml:"timeout"` // per request; default 30s
	// LLM (OpenAI-compatible) requests.
	InputTokens  int  `json:"input_tokens,omitempty" toml:"input_tokens"`
	OutputTokens int  `json:"output_tokens,omitempty" toml:"output_tokens"`
	NoStream     bool `json:"no_stream,omitempty" toml:"no_stream"`
	// PromptFiles, when set, are datasets (ShareGPT JSON or JSONL, see
	// LoadPrompts) read when the target is built: request Seq sends prompt
	// Seq mod N with max_tokens = its reference answer's length, capped by
	// OutputTokens when that is set; InputTokens is then unused.
	PromptFiles []string `json:"prompt_files,omitempty" toml:"prompt_files"`
	// MaxConnections caps open connections (plain HTTP and KServe); beyond it
	// requests wait for a free connection, which shows as send lateness.
	// Default 4096 (opened as needed), or more for closed loops with a larger
	// concurrency.
	MaxConnections int `json:"max_connections,omitempty" toml:"max_connections"`
	// CredentialEnv names the environment variable that holds a bearer token.
	// The token itself is never stored in a spec or manifest.
	CredentialEnv string `json:"credential_env,omitempty" toml:"credential_env"`
}

// WorkloadConfig says when requests are sent.
type WorkloadConfig struct {
	Name        string   `json:"name,omitempty" toml:"name"`
	Arrival     string   `json:"arrival" toml:"arrival"`                   // "poisson", "fixed", "gamma", "closed", or a Clockwork workload name
	Rate        float64  `json:"rate,omitempty" toml:"rate"`               // total requests/s (open loop)
	Burstiness  float64  `json:"burstiness,omitempty" toml:"burstiness"`   // gamma shape; 1 = Poisson
	Concurrency int      `json:"concurrency,omitempty" toml:"concurrency"` // closed loop
	ThinkTime   Duration `json:"think_time,omitempty" toml:"think_time"`
	MaxRequests int64    `json:"max_requests,omitempty" toml:"max_requests"`
	Args        []string `json:"args,omitempty" toml:"args"` // positional parameters of a Clockwork workload
	// Params are a named workload's parameters by name (e.g. {rate = 100,
	// copies = 4} for slo-exp-1), an alternative to Args that reads better
	// in specs and sweeps; values may be numbers, booleans or strings.
	Params map[string]any `json:"params,omitempty" toml:"params"`
}

// ParamStrings returns Params with every value as text (numbers in their
// shortest form), as named workloads parse them.
func (w WorkloadConfig) ParamStrings() map[string]string {
	if len(w.Params) == 0 {
		return nil
	}
	out := make(map[string]string, len(w.Params))
	for k, v := range w.Params {
		switch x := v.(type) {
		case float64:
			out[k] = strconv.FormatFloat(x, 'g', -1, 64)
		case bool:
			if x {
				out[k] = "1"
			} else {
				out[k] = "0"
			}
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out
}

// SLOConfig sets a deadline per request: absolute, or Factor × the model's
// batch-1 latency measured in a calibration phase (Clockwork's definition).
type SLOConfig struct {
	Deadline            Duration `json:"deadline,omitempty" toml:"deadline"`
	Factor              float64  `json:"factor,omitempty" toml:"factor"`
	CalibrationRequests int      `json:"calibration_requests,omitempty" toml:"calibration_requests"`
	// LLM goodput SLOs (DistServe/vLLM): a request counts as good only if it
	// meets every one that is set.
	TTFT Duration `json:"ttft,omitempty" toml:"ttft"`
	TPOT Duration `json:"tpot,omitempty" toml:"tpot"`
	E2EL Duration `json:"e2el,omitempty" toml:"e2el"`
}
