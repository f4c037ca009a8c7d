package loadgen

import "time"

// Quantiles summarises one latency distribution (from an HDR histogram with
// 3 significant digits). All values are durations; Count is the number of
// samples.
type Quantiles struct {
	Count int64         `json:"count"`
	Min   time.Duration `json:"min"`
	Mean  time.Duration `json:"mean"`
	P25   time.Duration `json:"p25"`
	P50   time.Duration `json:"p50"`
	P75   time.Duration `json:"p75"`
	P90   time.Duration `json:"p90"`
	P95   time.Duration `json:"p95"`
	P99   time.Duration `json:"p99"`
	P999  time.Duration `json:"p999"`
	Max   time.Duration `json:"max"`
	// Std is the standard deviation (population), for exports to tools
	// that report one (aiperf, vLLM's bench serve).
	Std time.Duration `json:"std,omitempty"`
}

// Snapshot is what one load run measured over one interval (or, in a
// Summary, over the whole run). Counts refer to requests whose intended send
// time falls in the interval.
type Snapshot struct {
	Interval  int       `json:"interval"` // index from 0; -1 for whole-run totals
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Class     string    `json:"class,omitempty"`      // "" = all requests; e.g. "fg"/"bg"
	Model     string    `json:"model,omitempty"`      // "" = all models
	SLOFactor float64   `json:"slo_factor,omitempty"` // factor in force (0 = none)

	Offered   int64 `json:"offered"`   // requests scheduled
	Sent      int64 `json:"sent"`      // requests actually sent
	Completed int64 `json:"completed"` // succeeded
	Errors    int64 `json:"errors"`    // failed (transport error or non-2xx)
	Timeouts  int64 `json:"timeouts"`  // no answer within the request timeout
	Dropped   int64 `json:"dropped"`   // scheduled but never sent (e.g. run ended, server shed)
	Cancelled int64 `json:"cancelled"` // sent but still in flight when the run ended
	SLOMet    int64 `json:"slo_met"`   // completed within their deadline (== Completed when no SLO)

	OfferedRate  float64 `json:"offered_rate"`  // scheduled requests/s
	AchievedRate float64 `json:"achieved_rate"` // completed requests/s
	Goodput      float64 `json:"goodput"`       // completed-within-SLO requests/s

	Latency  Quantiles `json:"latency"`  // done − intended send (coordinated-omission-corrected)
	Service  Quantiles `json:"service"`  // done − actual send (uncorrected)
	Lateness Quantiles `json:"lateness"` // actual send − intended send

	// LLM streaming metrics (vLLM bench serve definitions); zero otherwise.
	TTFT         Quantiles `json:"ttft,omitzero"`
	TPOT         Quantiles `json:"tpot,omitzero"`
	ITL          Quantiles `json:"itl,omitzero"`
	E2EL         Quantiles `json:"e2el,omitzero"`
	InputTokens  int64     `json:"input_tokens,omitempty"`
	OutputTokens int64     `json:"output_tokens,omitempty"`

	// HDR holds the histograms behind the quantiles, losslessly encoded
	// (HdrHistogram's V2 compressed encoding, base64), by distribution
	// name ("latency", "service", …; see Dists), when the run keeps them
	// (RunOptions.KeepHDR: the shards of a sharded run), so that shards'
	// snapshots merge exactly (MergeSnapshots).
	HDR map[string]string `json:"hdr,omitempty"`
}

// Summary is the outcome of one load run: totals, breakdowns and status.
// It is written next to the task's metrics and also emitted as points.
type Summary struct {
	Experiment string            `json:"experiment"`
	Task       string            `json:"task"`
	Workload   string            `json:"workload"`
	Target     string            `json:"target"`
	Protocol   string            `json:"protocol"`
	Tags       map[string]string `json:"tags,omitempty"`
	Status     string            `json:"status"` // "completed", "interrupted", "failed"
	Error      string            `json:"error,omitempty"`
	Started    time.Time         `json:"started"`
	Ended      time.Time         `json:"ended"`

	Total   Snapshot   `json:"total"`
	Classes []Snapshot `json:"classes,omitempty"`   // per class, when the workload has classes
	Steps   []Snapshot `json:"slo_steps,omitempty"` // per SLO-factor step, when the factor changes

	// Calibration holds each model's measured batch-1 latency when SLOs are
	// given as factors.
	Calibration map[string]time.Duration `json:"calibration,omitempty"`
	// ErrorKinds counts failed requests by cause ("HTTP 500", "timeout",
	// "ECONNRESET", "in-flight cap", ...), at most 32 kinds ("other" beyond).
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	// Deviations lists where a workload knowingly differs from the original
	// Clockwork client (see docs/workloads.md).
	Deviations []string `json:"deviations,omitempty"`
	// Pacer is the priority the sending thread got ("realtime", "nice" or
	// "normal"); see Config.PacerPriority.
	Pacer string `json:"pacer,omitempty"`

	// Shard is set on the summary of one shard of a sharded run; Shards on
	// the merged summary of all of them (see MergeSummaries).
	Shard  *ShardInfo  `json:"shard,omitempty"`
	Shards []ShardInfo `json:"shards,omitempty"`
}

// Status values of a Summary.
const (
	StatusCompleted   = "completed"
	StatusInterrupted = "interrupted"
	StatusFailed      = "failed"
)
