package gpuslice

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"
)

// Override is how an experiment asks for a slice: a profile referenced by
// name plus explicit values that override it, key for key, the way
// TensorFusion's pod annotations (tensor-fusion.ai/tflops-request, …)
// override a WorkloadProfile. Zero values mean "not given".
//
// Precedence, highest first: explicit values here; the named profile; the
// pool's defaults; built-in defaults (see Resolve).
type Override struct {
	Profile       string  `toml:"profile" json:"profile,omitempty"`
	Pool          string  `toml:"pool" json:"pool,omitempty"`
	QoS           string  `toml:"qos" json:"qos,omitempty"`
	TFLOPSRequest float64 `toml:"tflops_request" json:"tflops_request,omitempty"`
	TFLOPSLimit   float64 `toml:"tflops_limit" json:"tflops_limit,omitempty"`
	VRAMRequest   Bytes   `toml:"vram_request" json:"vram_request,omitempty"`
	VRAMLimit     Bytes   `toml:"vram_limit" json:"vram_limit,omitempty"`
	IsLocalGPU    *bool   `toml:"is_local_gpu" json:"is_local_gpu,omitempty"`
	Replicas      *int    `toml:"replicas" json:"replicas,omitempty"`
	AutoScaling   *bool   `toml:"autoscaling" json:"autoscaling,omitempty"`
	MinReplicas   *int    `toml:"min_replicas" json:"min_replicas,omitempty"`
	MaxReplicas   *int    `toml:"max_replicas" json:"max_replicas,omitempty"`
}

// Workload is a fully resolved slice request.
type Workload struct {
	Profile     string      `json:"profile,omitempty"`
	Pool        string      `json:"pool"`
	QoS         string      `json:"qos"`
	QoSFrom     string      `json:"qos_from"` // explicit, profile, guaranteed, pool default, medium
	IsLocalGPU  bool        `json:"is_local_gpu"`
	Replicas    int         `json:"replicas"`
	Requests    Resources   `json:"requests"`
	Limits      Resources   `json:"limits"`
	AutoScaling AutoScaling `json:"autoscaling"`
}

// Resolve applies o over its profile and the defaults:
//   - limits default to requests and requests to limits (per resource);
//   - at least one of tflops and vram must be asked for;
//   - QoS: explicit, else the profile's, else "high" when requests equal
//     limits for both resources (Guaranteed, as TensorFusion decides), else
//     the pool's default_qos, else "medium";
//   - the pool: explicit, else the profile's, else the only pool.
func (m *Model) Resolve(o Override) (Workload, error) {
	var w Workload
	w.Replicas = 1
	qosFrom := ""
	if o.Profile != "" {
		p := m.Profiles[o.Profile]
		if p == nil {
			return w, fmt.Errorf("profile %q: not in %s (profiles: %v)", o.Profile, m.nameOr("the pools file"), m.profileNames())
		}
		w.Profile = p.Name
		w.Pool, w.QoS = p.Pool, p.QoS
		if p.QoS != "" {
			qosFrom = "profile"
		}
		w.IsLocalGPU = p.IsLocalGPU
		if p.Replicas > 0 {
			w.Replicas = p.Replicas
		}
		w.Requests, w.Limits, w.AutoScaling = p.Requests, p.Limits, p.AutoScaling
	}
	if o.Pool != "" {
		w.Pool = o.Pool
	}
	if o.QoS != "" {
		w.QoS, qosFrom = o.QoS, "explicit"
	}
	setF := func(dst *float64, v float64) {
		if v != 0 {
			*dst = v
		}
	}
	setB := func(dst *Bytes, v Bytes) {
		if v != 0 {
			*dst = v
		}
	}
	setF(&w.Requests.TFLOPS, o.TFLOPSRequest)
	setF(&w.Limits.TFLOPS, o.TFLOPSLimit)
	setB(&w.Requests.VRAM, o.VRAMRequest)
	setB(&w.Limits.VRAM, o.VRAMLimit)
	if o.IsLocalGPU != nil {
		w.IsLocalGPU = *o.IsLocalGPU
	}
	if o.Replicas != nil {
		w.Replicas = *o.Replicas
	}
	if o.AutoScaling != nil {
		w.AutoScaling.Enabled = *o.AutoScaling
	}
	if o.MinReplicas != nil {
		w.AutoScaling.MinReplicas = *o.MinReplicas
	}
	if o.MaxReplicas != nil {
		w.AutoScaling.MaxReplicas = *o.MaxReplicas
	}

	if w.Pool == "" {
		if len(m.Pools) != 1 {
			return w, fmt.Errorf("no pool given and the model has %d pools %v: name one", len(m.Pools), m.PoolNames())
		}
		w.Pool = m.PoolNames()[0]
	}
	pool := m.Pools[w.Pool]
	if pool == nil {
		return w, fmt.Errorf("pool %q: no such pool (pools: %v)", w.Pool, m.PoolNames())
	}
	if w.Limits.TFLOPS == 0 {
		w.Limits.TFLOPS = w.Requests.TFLOPS
	}
	if w.Requests.TFLOPS == 0 {
		w.Requests.TFLOPS = w.Limits.TFLOPS
	}
	if w.Limits.VRAM == 0 {
		w.Limits.VRAM = w.Requests.VRAM
	}
	if w.Requests.VRAM == 0 {
		w.Requests.VRAM = w.Limits.VRAM
	}
	for _, t := range []struct {
		what string
		v    float64
	}{{"tflops request", w.Requests.TFLOPS}, {"tflops limit", w.Limits.TFLOPS}} {
		// 0 is "not given" here; the peak is Plan's fit check.
		if why := TFLOPSProblem(t.v, nil); t.v != 0 && why != "" {
			return w, fmt.Errorf("%s %g: %s (%s)", t.what, t.v, why, SlicePlace(w.Pool, w.Profile))
		}
	}
	if w.Requests.TFLOPS == 0 && w.Requests.VRAM == 0 {
		return w, fmt.Errorf("a slice needs tflops or vram (request or limit): neither was given")
	}
	if w.Requests.TFLOPS > w.Limits.TFLOPS {
		return w, fmt.Errorf("tflops request %g is above its limit %g", w.Requests.TFLOPS, w.Limits.TFLOPS)
	}
	if w.Requests.VRAM > w.Limits.VRAM {
		return w, fmt.Errorf("vram request %s is above its limit %s", w.Requests.VRAM, w.Limits.VRAM)
	}
	if w.QoS == "" {
		switch {
		case w.Requests == w.Limits && m.QoS["high"] != nil:
			w.QoS, qosFrom = "high", "guaranteed"
		case pool.DefaultQoS != "":
			w.QoS, qosFrom = pool.DefaultQoS, "pool default"
		default:
			w.QoS, qosFrom = "medium", "medium"
		}
	}
	w.QoSFrom = qosFrom
	if m.QoS[w.QoS] == nil {
		return w, fmt.Errorf("qos %q (%s): not a level of the model (levels: %v)", w.QoS, qosFrom, m.levelNames())
	}
	if w.Replicas < 1 {
		return w, fmt.Errorf("replicas %d: want >= 1", w.Replicas)
	}
	if a := w.AutoScaling; a.Enabled {
		if a.MinReplicas < 1 || a.MaxReplicas < a.MinReplicas {
			return w, fmt.Errorf("autoscaling: want 1 <= min_replicas (%d) <= max_replicas (%d)", a.MinReplicas, a.MaxReplicas)
		}
		if w.Replicas < a.MinReplicas || w.Replicas > a.MaxReplicas {
			return w, fmt.Errorf("replicas %d outside autoscaling range %d..%d", w.Replicas, a.MinReplicas, a.MaxReplicas)
		}
	}
	return w, nil
}

func (m *Model) nameOr(s string) string {
	if m.path != "" {
		return m.path
	}
	return s
}

func (m *Model) profileNames() []string {
	var out []string
	for n := range m.Profiles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (m *Model) levelNames() []string {
	var out []string
	for _, q := range m.Levels() {
		out = append(out, q.Name)
	}
	return out
}

// Slice is how a workload runs on Slurm: the partition and QOS, the shards
// it is scheduled with, and the MPS limits and enforcer settings put into
// its environment.
type Slice struct {
	Workload      Workload `json:"workload"`
	Partition     string   `json:"partition"`
	SlurmQoS      string   `json:"slurm_qos"`
	GPU           GPUSpec  `json:"gpu"`
	ShardsPerGPU  int      `json:"shards_per_gpu"`
	ComputeShards int      `json:"compute_shards"`
	VRAMShards    int      `json:"vram_shards"`
	Shards        int      `json:"shards"`
	ThreadPercent int      `json:"mps_active_thread_percentage"`
	VRAMLimit     Bytes    `json:"vram_limit"`
	OnOverrun     string   `json:"on_vram_overrun"`
	// OnComputeOverrun and ComputeWindow: the QoS's compute policy (the
	// window 0 when the QoS leaves it to the enforcer).
	OnComputeOverrun string            `json:"on_compute_overrun"`
	ComputeWindow    time.Duration     `json:"compute_window_ns,omitempty"`
	Grace            time.Duration     `json:"grace_ns"`
	Requeue          bool              `json:"requeue"`
	Gres             string            `json:"gres"`
	Env              map[string]string `json:"env"`
	// MPS is the request to the MPS prolog ([mps] enabled and a tflops
	// limit): the job comment carries MPS.Token().
	MPS *MPSRequest `json:"mps,omitempty"`
}

// Environment variables the enforcer reads in per-job mode.
const (
	EnvVRAMLimit   = "GPUORCH_SLICE_VRAM_LIMIT"   // bytes
	EnvTFLOPSLimit = "GPUORCH_SLICE_TFLOPS_LIMIT" // TFLOPS
	EnvThreadPct   = "GPUORCH_SLICE_COMPUTE_PERCENT"
	EnvQoS         = "GPUORCH_SLICE_QOS"
	EnvOnOverrun   = "GPUORCH_SLICE_ON_OVERRUN"
	EnvGrace       = "GPUORCH_SLICE_GRACE"
	// The compute policy: the action (default report) and the window SM
	// use must stay over the limit (default: the enforcer's).
	EnvOnComputeOverrun = "GPUORCH_SLICE_ON_COMPUTE_OVERRUN"
	EnvComputeWindow    = "GPUORCH_SLICE_COMPUTE_WINDOW"
)

// ceilShare is ceil(x) that ignores floating-point dust (3.0000000001 → 3).
func ceilShare(x float64) int { return int(math.Ceil(x - 1e-9)) }

// FitError says why a workload does not fit on one GPU of its pool.
type FitError struct {
	Pool, GPU string
	Profile   string // "" when the slice names none
	What      string
	Want, Max string
}

func (e *FitError) Error() string {
	s := fmt.Sprintf("does not fit on one GPU of pool %s (%s): %s %s > %s", e.Pool, e.GPU, e.What, e.Want, e.Max)
	if e.Profile != "" {
		s += " (profile " + e.Profile + ")"
	}
	return s
}

// Plan maps a resolved workload to its slice.
//
// Shards: a shard is 1/shards_per_gpu of the GPU's compute (its peak FP16
// TFLOPS times the pool's oversubscription ratio) and of its memory, and a
// slice takes enough shards for both its requests: max(ceil(tflops /
// (peak×ratio) × S), ceil(vram / memory × S)), at least 1. Requests decide
// placement (as in TensorFusion); limits decide the MPS caps and the
// enforcer: ceil(limit tflops / peak × 100) % of the SMs, and the VRAM limit
// as the pinned-memory cap on device 0 of the job (a shard job sees one
// GPU).
func (m *Model) Plan(w Workload) (Slice, error) {
	pool := m.Pools[w.Pool]
	if pool == nil {
		return Slice{}, fmt.Errorf("pool %q: no such pool", w.Pool)
	}
	q := m.QoS[w.QoS]
	if q == nil {
		return Slice{}, fmt.Errorf("qos %q: not a level of the model", w.QoS)
	}
	if why := TFLOPSProblem(w.Limits.TFLOPS, nil); w.Limits.TFLOPS != 0 && why != "" {
		return Slice{}, fmt.Errorf("tflops limit %g: %s (%s)", w.Limits.TFLOPS, why, SlicePlace(w.Pool, w.Profile))
	}
	g := pool.GPU
	fit := func(what string, want, max float64, unit string) error {
		if want > max+1e-9 {
			return &FitError{Pool: pool.Name, GPU: fmt.Sprintf("%s: %g TFLOPS, %s", g.Name, g.PeakFP16, g.Memory), Profile: w.Profile, What: what,
				Want: strconv.FormatFloat(want, 'f', -1, 64) + unit, Max: strconv.FormatFloat(max, 'f', -1, 64) + unit}
		}
		return nil
	}
	gib := func(b Bytes) float64 { return math.Round(b.GiBf()*1000) / 1000 }
	if err := fit("tflops limit", w.Limits.TFLOPS, g.PeakFP16, " TFLOPS"); err != nil {
		return Slice{}, err
	}
	if err := fit("vram limit", gib(w.Limits.VRAM), gib(g.Memory), " GiB"); err != nil {
		return Slice{}, err
	}
	S := pool.ShardsPerGPU
	s := Slice{
		Workload: w, Partition: m.Partition(pool.Name), SlurmQoS: m.SlurmQoS(q.Name), GPU: g,
		ShardsPerGPU:     S,
		ComputeShards:    ceilShare(w.Requests.TFLOPS / (g.PeakFP16 * pool.Oversubscription) * float64(S)),
		VRAMShards:       ceilShare(float64(w.Requests.VRAM) / float64(g.Memory) * float64(S)),
		VRAMLimit:        w.Limits.VRAM,
		OnOverrun:        q.OnOverrun,
		OnComputeOverrun: q.OnComputeOverrun,
		ComputeWindow:    q.ComputeWindow.D(),
		Grace:            q.GraceTime.D(),
		Requeue:          q.OnOverrun == ActionRequeue || q.OnComputeOverrun == ActionRequeue || q.PreemptMode == "requeue",
	}
	s.Shards = max(s.ComputeShards, s.VRAMShards, 1)
	if s.Shards > S { // unreachable after the fit checks; kept as a guard
		return Slice{}, fmt.Errorf("needs %d shards, pool %s has %d per GPU", s.Shards, pool.Name, S)
	}
	s.ThreadPercent = 100
	if w.Limits.TFLOPS > 0 {
		s.ThreadPercent = min(max(ceilShare(w.Limits.TFLOPS/g.PeakFP16*100), 1), 100)
	}
	s.Gres = "shard:" + strconv.Itoa(s.Shards)
	s.Env = map[string]string{
		"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": strconv.Itoa(s.ThreadPercent),
		EnvThreadPct:                        strconv.Itoa(s.ThreadPercent),
		EnvQoS:                              q.Name,
		EnvOnOverrun:                        q.OnOverrun,
		EnvGrace:                            q.GraceTime.String(),
	}
	if w.Limits.TFLOPS > 0 {
		s.Env[EnvTFLOPSLimit] = strconv.FormatFloat(w.Limits.TFLOPS, 'f', -1, 64)
		// The defaults (report; the enforcer's window) need no variable.
		if q.OnComputeOverrun != ActionReport {
			s.Env[EnvOnComputeOverrun] = q.OnComputeOverrun
		}
		if q.ComputeWindow > 0 {
			s.Env[EnvComputeWindow] = q.ComputeWindow.String()
		}
	}
	pinnedMiB := uint64(0)
	if w.Limits.VRAM > 0 {
		// MPS takes whole MiB with an M suffix; round down so the cap is
		// never above the limit the enforcer checks.
		pinnedMiB = max(uint64(w.Limits.VRAM/MiB), 1)
		s.Env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = "0=" + strconv.FormatUint(pinnedMiB, 10) + "M"
		s.Env[EnvVRAMLimit] = strconv.FormatUint(uint64(w.Limits.VRAM), 10)
	}
	if m.MPS.Enabled && w.Limits.TFLOPS > 0 {
		s.MPS = &MPSRequest{ThreadPercent: s.ThreadPercent, PinnedMiB: pinnedMiB, Dir: m.MPS.Dir}
	}
	return s, nil
}

// SbatchOptions are the sbatch options of the slice, as name → value
// (without "--"), in a fixed order, for a renderer that quotes them.
func (s Slice) SbatchOptions() [][2]string {
	out := [][2]string{{"partition", s.Partition}, {"qos", s.SlurmQoS}, {"gres", s.Gres}}
	if s.Requeue {
		out = append(out, [2]string{"requeue", ""})
	}
	return out
}

// EnvNames returns the names of s.Env sorted, for deterministic rendering.
func (s Slice) EnvNames() []string {
	var out []string
	for k := range s.Env {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// PlanOverride resolves o and plans it in one step.
func (m *Model) PlanOverride(o Override) (Slice, error) {
	w, err := m.Resolve(o)
	if err != nil {
		return Slice{}, err
	}
	return m.Plan(w)
}
