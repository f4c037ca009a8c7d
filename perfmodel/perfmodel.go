// Package perfmodel predicts LLM serving latency and throughput from a
// model's architecture and a device's peaks with a roofline model: prefill
// is compute-bound, decode is memory-bound (the weights and the batch's KV
// cache are read once per step), and the KV cache that fits in memory caps
// the batch, so concurrency beyond it queues. The formulas are documented in
// docs/bench.md.
package perfmodel

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/gpuslice"
)

// Arch is what the model needs to know about an LLM.
type Arch struct {
	Name   string  `json:"name,omitempty"`
	Params float64 `json:"params"` // parameters (e.g. 6.74e9)
	Layers int     `json:"layers,omitempty"`
	Hidden int     `json:"hidden,omitempty"`
	// KVBytesPerToken is the KV cache one token occupies over all layers:
	// 2 (K and V) × layers × kv_dim × bytes per value, kv_dim = hidden ×
	// kv_heads / heads (grouped-query attention shrinks it).
	KVBytesPerToken float64 `json:"kv_bytes_per_token"`
	// BytesPerParam is the weight precision (2 for FP16/BF16).
	BytesPerParam float64 `json:"bytes_per_param"`
}

// WeightBytes is the memory the weights take and every decode step reads.
func (a Arch) WeightBytes() float64 { return a.Params * a.bytesPerParam() }

func (a Arch) bytesPerParam() float64 {
	if a.BytesPerParam > 0 {
		return a.BytesPerParam
	}
	return 2
}

// kv is the KV cache per token in bytes: 2 (K and V) × layers × kv_dim × 2 bytes (FP16).
func kv(layers, hidden, heads, kvHeads int) float64 {
	return 2 * float64(layers) * float64(hidden*kvHeads/heads) * 2
}

// Known architectures (FP16 weights and KV cache). Sources: the models'
// Hugging Face config.json (num_hidden_layers, hidden_size,
// num_attention_heads, num_key_value_heads) and parameter counts.
var known = map[string]Arch{
	"llama-2-7b":   {Params: 6.74e9, Layers: 32, Hidden: 4096, KVBytesPerToken: kv(32, 4096, 32, 32)},
	"llama-2-13b":  {Params: 13.0e9, Layers: 40, Hidden: 5120, KVBytesPerToken: kv(40, 5120, 40, 40)},
	"llama-2-70b":  {Params: 68.98e9, Layers: 80, Hidden: 8192, KVBytesPerToken: kv(80, 8192, 64, 8)},
	"llama-3-8b":   {Params: 8.03e9, Layers: 32, Hidden: 4096, KVBytesPerToken: kv(32, 4096, 32, 8)},
	"llama-3-70b":  {Params: 70.6e9, Layers: 80, Hidden: 8192, KVBytesPerToken: kv(80, 8192, 64, 8)},
	"mistral-7b":   {Params: 7.24e9, Layers: 32, Hidden: 4096, KVBytesPerToken: kv(32, 4096, 32, 8)},
	"qwen2.5-7b":   {Params: 7.62e9, Layers: 28, Hidden: 3584, KVBytesPerToken: kv(28, 3584, 28, 4)},
	"opt-125m":     {Params: 125e6, Layers: 12, Hidden: 768, KVBytesPerToken: kv(12, 768, 12, 12)},
	"gpt2":         {Params: 124e6, Layers: 12, Hidden: 768, KVBytesPerToken: kv(12, 768, 12, 12)},
	"mixtral-8x7b": {Params: 46.7e9, Layers: 32, Hidden: 4096, KVBytesPerToken: kv(32, 4096, 32, 8)},
}

// KnownArchs lists the built-in architecture names, sorted.
func KnownArchs() []string {
	out := make([]string, 0, len(known))
	for k := range known {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// LookupArch finds a built-in architecture by name (case-insensitive; an
// organisation prefix such as "meta-llama/" and "-hf"/"-chat" suffixes are
// ignored).
func LookupArch(name string) (Arch, error) {
	n := strings.ToLower(name)
	if i := strings.LastIndex(n, "/"); i >= 0 {
		n = n[i+1:]
	}
	for _, suf := range []string{"-chat-hf", "-hf", "-chat", "-instruct", "-v0.1"} {
		n = strings.TrimSuffix(n, suf)
	}
	a, ok := known[n]
	if !ok {
		return Arch{}, fmt.Errorf("unknown model architecture %q (known: %s; or give params, layers, hidden and kv_bytes_per_token)", name, strings.Join(KnownArchs(), ", "))
	}
	a.Name = n
	return a, nil
}

// Device is one accelerator's peaks: one GPU, or a CPU node's processors
// (every socket together).
type Device struct {
	Name          string  `json:"name"`
	Kind          string  `json:"kind,omitempty"`        // "gpu" or "cpu"; "" = gpu
	PeakTFLOPS    float64 `json:"peak_fp16_tflops"`      // dense FP16
	BandwidthGBps float64 `json:"memory_bandwidth_gbps"` // HBM, GB/s (1e9 bytes)
	MemoryGB      float64 `json:"memory_gb"`             // 1e9 bytes
}

// LookupDevice finds a GPU model's peaks in gpuslice's GPU table
// (gpuslice.MatchGPU). An error comes with what is known (llmbench fills the
// rest from explicit numbers).
func LookupDevice(name string) (Device, error) {
	g, err := gpuslice.MatchGPU(name)
	d := Device{Name: name, BandwidthGBps: g.BandwidthGBps}
	if err != nil {
		return d, fmt.Errorf("device %q: %w", name, err)
	}
	d.PeakTFLOPS = g.PeakFP16
	d.Kind = "gpu"
	d.MemoryGB = float64(g.Memory) / 1e9
	if d.BandwidthGBps == 0 {
		return d, fmt.Errorf("device %q: memory bandwidth unknown; give memory_bandwidth_gbps", name)
	}
	if d.MemoryGB == 0 {
		return d, fmt.Errorf("device %q: memory size unknown (say e.g. \"A100 80GB\"); give memory_gb", name)
	}
	return d, nil
}

// LookupCPU finds a CPU model's peaks in gpuslice's CPU table
// (gpuslice.MatchCPU), for sockets sockets together: peak FP16 TFLOPS and
// memory bandwidth are the table's per-socket figures times sockets. A CPU
// device's memory is the node's, not the model's: MemoryGB is left 0 for
// the caller to fill (from the node payload or the inventory).
func LookupCPU(name string, sockets int) (Device, error) {
	c, err := gpuslice.MatchCPU(name)
	if err != nil {
		return Device{Name: name, Kind: "cpu"}, err
	}
	sockets = max(sockets, 1)
	return Device{Name: name, Kind: "cpu", PeakTFLOPS: c.PeakFP16 * float64(sockets), BandwidthGBps: c.BandwidthGBps * float64(sockets)}, nil
}

// Config is one prediction's input.
type Config struct {
	Arch   Arch
	Device Device
	TP     int // tensor parallelism: devices per replica (default 1)
	// InputTokens and OutputTokens per request.
	InputTokens, OutputTokens int
	Concurrency               int // requests in flight (closed loop)
	// ComputeEfficiency and BandwidthEfficiency are the fractions of the
	// peaks an engine reaches (defaults 0.6 and 0.8; 1 for an ideal device).
	ComputeEfficiency, BandwidthEfficiency float64
	// MaxBatch caps the running batch (the engine's max_num_seqs; 0 = only
	// the KV cache limits it).
	MaxBatch int
	// MemoryUtilization is the fraction of device memory the engine may use
	// for weights and KV cache (default 0.9, vLLM's gpu_memory_utilization).
	MemoryUtilization float64
	// PrefillOverlap says prefills run beside decoding without stalling it
	// (disaggregated or idealised serving, as gpuorch sim-server models it);
	// false: every prefill stalls the running batch (continuous batching
	// without chunked prefill).
	PrefillOverlap bool
}

// Prediction is the model's output for one concurrency level.
type Prediction struct {
	Concurrency int `json:"concurrency"`
	// Batch is the running batch: min(concurrency, MaxBatch, KV capacity).
	Batch       int           `json:"batch"`
	KVCapacity  int           `json:"kv_capacity"` // sequences whose KV cache fits (-1: unbounded)
	PrefillS    float64       `json:"prefill_s"`   // one request's prefill alone
	DecodeStepS float64       `json:"decode_step_s"`
	QueueS      float64       `json:"queue_s"` // wait for a batch slot
	TTFT        time.Duration `json:"ttft"`
	TPOT        time.Duration `json:"tpot"`
	E2EL        time.Duration `json:"e2el"`
	// RequestsPerS and OutputTokensPerS are aggregate throughputs.
	RequestsPerS     float64 `json:"requests_per_s"`
	OutputTokensPerS float64 `json:"output_tokens_per_s"`
	// PrefillBound and DecodeBound say which roof limits: "compute" or
	// "memory".
	PrefillBound string `json:"prefill_bound"`
	DecodeBound  string `json:"decode_bound"`
}

func (c *Config) defaults() {
	if c.TP <= 0 {
		c.TP = 1
	}
	if c.ComputeEfficiency <= 0 {
		c.ComputeEfficiency = 0.6
	}
	if c.BandwidthEfficiency <= 0 {
		c.BandwidthEfficiency = 0.8
	}
	if c.MemoryUtilization <= 0 {
		c.MemoryUtilization = 0.9
	}
}

// Predict runs the roofline model for one concurrency level.
func Predict(c Config) (Prediction, error) {
	c.defaults()
	a, d := c.Arch, c.Device
	switch {
	case a.Params <= 0:
		return Prediction{}, errors.New("model params must be positive")
	case d.PeakTFLOPS <= 0:
		return Prediction{}, fmt.Errorf("device %q: peak FP16 TFLOPS must be positive", d.Name)
	case d.BandwidthGBps <= 0:
		return Prediction{}, fmt.Errorf("device %q: memory bandwidth must be positive", d.Name)
	case c.InputTokens <= 0 || c.OutputTokens <= 0:
		return Prediction{}, errors.New("input and output tokens must be positive")
	case c.Concurrency <= 0:
		return Prediction{}, errors.New("concurrency must be positive")
	}
	tp := float64(c.TP)
	flops := d.PeakTFLOPS * 1e12 * tp * c.ComputeEfficiency // FLOP/s of one replica
	bw := d.BandwidthGBps * 1e9 * tp * c.BandwidthEfficiency
	W := a.WeightBytes()
	p, n := float64(c.InputTokens), float64(c.OutputTokens)

	// KV-cache capacity: what memory is left after the weights, per
	// sequence of p + n tokens.
	capacity := -1
	if a.KVBytesPerToken > 0 && d.MemoryGB > 0 {
		free := d.MemoryGB*1e9*tp*c.MemoryUtilization - W
		if free <= 0 {
			return Prediction{}, fmt.Errorf("the weights (%.1f GB) do not fit in %g × %.0f GB × %.2f; raise tp", W/1e9, tp, d.MemoryGB, c.MemoryUtilization)
		}
		capacity = int(free / (a.KVBytesPerToken * (p + n)))
		if capacity < 1 {
			return Prediction{}, fmt.Errorf("not even one sequence of %d tokens fits in the KV cache (%.1f GB free)", int(p+n), free/1e9)
		}
	}
	batch := c.Concurrency
	if c.MaxBatch > 0 && batch > c.MaxBatch {
		batch = c.MaxBatch
	}
	if capacity > 0 && batch > capacity {
		batch = capacity
	}
	pr := Prediction{Concurrency: c.Concurrency, Batch: batch, KVCapacity: capacity}

	// Prefill: 2·P FLOPs per token plus attention 2·L·p²·h (QKᵀ and A·V,
	// causal), against reading the weights once.
	preCompute := (2*a.Params*p + 2*float64(a.Layers)*p*p*float64(a.Hidden)) / flops
	preMem := W / bw
	pr.PrefillS, pr.PrefillBound = math.Max(preCompute, preMem), bound(preCompute, preMem)

	// Decode step for the batch: 2·P·b FLOPs against reading the weights
	// plus each sequence's KV cache at its mean context p + n/2.
	b := float64(batch)
	decCompute := 2 * a.Params * b / flops
	decMem := (W + b*a.KVBytesPerToken*(p+n/2)) / bw
	pr.DecodeStepS, pr.DecodeBound = math.Max(decCompute, decMem), bound(decCompute, decMem)

	tpot := pr.DecodeStepS
	if !c.PrefillOverlap && n > 1 {
		// Each of the other b−1 requests' prefills stalls the batch once
		// during this request's n−1 decode steps.
		tpot += (b - 1) * pr.PrefillS / (n - 1)
	}
	service := pr.PrefillS + (n-1)*tpot
	// Closed loop: c clients share `batch` slots; in steady state each
	// request waits service × (c/batch − 1) for a slot.
	if c.Concurrency > batch {
		pr.QueueS = service * (float64(c.Concurrency)/b - 1)
	}
	pr.TTFT = secs(pr.QueueS + pr.PrefillS)
	pr.TPOT = secs(tpot)
	pr.E2EL = secs(pr.QueueS + service)
	pr.RequestsPerS = b / service
	pr.OutputTokensPerS = pr.RequestsPerS * n
	return pr, nil
}

func bound(compute, mem float64) string {
	if compute >= mem {
		return "compute"
	}
	return "memory"
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
