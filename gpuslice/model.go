package gpuslice

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/duration"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/tomlstrict"
)

// QoS levels, lowest first. The names are TensorFusion's; their rank decides
// preemption (a level preempts every lower level defined in the model).
var QoSLevels = []string{"low", "medium", "high", "critical"}

func qosRank(name string) int {
	for i, q := range QoSLevels {
		if q == name {
			return i
		}
	}
	return -1
}

// Default priorities follow TensorFusion's sample pool definitions.
var defaultQoSPriority = map[string]int{"low": 10, "medium": 30, "high": 60, "critical": 100}

// Overrun actions: what the enforcer does to a job over its VRAM limit
// (on_vram_overrun) or, for long enough, over its compute limit
// (on_compute_overrun).
const (
	ActionRequeue   = "requeue"   // scontrol requeue (the job runs again later)
	ActionTerminate = "terminate" // SIGTERM the job's GPU processes, SIGKILL after the grace time
	ActionReport    = "report"    // only write the violation
)

// Model is a pools file: the cluster's GPU pools, QoS levels, workload
// profiles and GPU model overrides.
type Model struct {
	Slurm     SlurmConfig         `toml:"slurm"`
	GPUModels map[string]GPUSpec  `toml:"gpu_models"`
	Pools     map[string]*Pool    `toml:"pools"`
	QoS       map[string]*QoS     `toml:"qos"`
	Profiles  map[string]*Profile `toml:"profiles"`
	MPS       MPSConfig           `toml:"mps"`

	path string
}

// SlurmConfig says how the model is named in Slurm and where partitions go.
type SlurmConfig struct {
	// Prefix is prepended to every partition and QOS name gpuorch manages,
	// so a model can live beside hand-made partitions and QOS.
	Prefix string `toml:"prefix"`
	// IncludeFile is the file slurm.conf Includes; gpuorch writes only it.
	IncludeFile string `toml:"include_file"`
	// Users are granted every QOS of the model in all their associations
	// (sacctmgr modify user … set qos+=…), so they can submit slices.
	Users []string `toml:"users"`
}

// Pool is a set of nodes with one GPU model, exposed as one partition.
type Pool struct {
	Name         string `toml:"-"`
	Nodes        string `toml:"nodes"`          // Slurm hostlist, e.g. "node[1-4]"
	GPUModel     string `toml:"gpu_model"`      // NVML name or short name (key of the GPU table)
	GPUsPerNode  int    `toml:"gpus_per_node"`  // for the gres line
	ShardsPerGPU int    `toml:"shards_per_gpu"` // Slurm shards per GPU (gres.conf)
	DefaultQoS   string `toml:"default_qos"`    // for workloads that name none and are not Guaranteed
	// Oversubscription is the TFLOPS oversell ratio (1 = none, 5 =
	// TensorFusion's default 500 %): a shard stands for peak×ratio/shards
	// TFLOPS. VRAM is never oversold.
	Oversubscription float64 `toml:"oversubscription"`
	MaxTime          string  `toml:"max_time"`      // partition MaxTime, Slurm syntax
	PriorityTier     int     `toml:"priority_tier"` // partition PriorityTier

	GPU GPUSpec `toml:"-"` // resolved at load
}

// QoS is one level with its Slurm settings and enforcement policy.
type QoS struct {
	Name        string            `toml:"-"`
	Priority    *int              `toml:"priority"`
	PreemptMode string            `toml:"preempt_mode"` // requeue (default) or cancel
	GraceTime   duration.Duration `toml:"grace_time"`   // SIGTERM → SIGKILL, in Slurm preemption and in the enforcer
	OnOverrun   string            `toml:"on_vram_overrun"`
	// OnComputeOverrun is what the enforcer does to a job whose SM
	// utilisation stays above its compute limit for ComputeWindow:
	// report (default), terminate or requeue.
	OnComputeOverrun string `toml:"on_compute_overrun"`
	// ComputeWindow is how long that must last; 0: the enforcer's own
	// default (--compute-sustain, 10 s).
	ComputeWindow duration.Duration `toml:"compute_window"`
	Description   string            `toml:"description"`
}

// Resources is a (tflops, vram) pair; zero means unset.
type Resources struct {
	TFLOPS float64 `toml:"tflops" json:"tflops,omitempty"`
	VRAM   Bytes   `toml:"vram" json:"vram,omitempty"`
}

// AutoScaling mirrors the seed's WorkloadProfile fields.
type AutoScaling struct {
	Enabled     bool `toml:"enabled" json:"enabled"`
	MinReplicas int  `toml:"min_replicas" json:"min_replicas,omitempty"`
	MaxReplicas int  `toml:"max_replicas" json:"max_replicas,omitempty"`
}

// Profile is a reusable workload definition (TensorFusion's WorkloadProfile).
type Profile struct {
	Name        string      `toml:"-"`
	Pool        string      `toml:"pool"`
	QoS         string      `toml:"qos"`
	IsLocalGPU  bool        `toml:"is_local_gpu"`
	Replicas    int         `toml:"replicas"`
	Requests    Resources   `toml:"requests"`
	Limits      Resources   `toml:"limits"`
	AutoScaling AutoScaling `toml:"autoscaling"`
}

const DefaultIncludeFile = "/etc/slurm/gpuorch-pools.conf"

// LoadModel reads and validates a pools file. Errors name the file and,
// for syntax errors, unknown keys and bad values, the line and key.
func LoadModel(path string) (*Model, error) {
	data, err := limitio.ReadFile(path, limitio.Config.As("pools file"))
	if err != nil {
		return nil, fmt.Errorf("read pools file: %w", err)
	}
	m, err := parseModel(path, data)
	if err != nil {
		return nil, err
	}
	m.path = path
	return m, nil
}

// ParseModel decodes a pools file strictly. Errors start with "LINE: "
// (0 for a problem in the model as a whole).
func ParseModel(data []byte) (*Model, error) { return parseModel("", data) }

func parseModel(file string, data []byte) (*Model, error) {
	var m Model
	d, err := tomlstrict.Parse(file, data)
	if err != nil {
		return nil, err
	}
	if err := d.Decode(nil, d.Tree, &m); err != nil {
		return nil, err
	}
	if err := m.resolve(); err != nil {
		return nil, atLine(d, err)
	}
	if err := m.validate(d); err != nil {
		return nil, atLine(d, err)
	}
	if err := m.resolveMPS(d); err != nil {
		return nil, err
	}
	return &m, nil
}

// checkProfileTFLOPS refuses a profile whose tflops request or limit, where
// the file writes one, is 0, NaN, negative or above the peak of its pool's
// GPU, at the key's line. A 0 would plan as 100 % of the SMs (0/0): leaving
// the key out is how a slice asks for VRAM only.
func (m *Model) checkProfileTFLOPS(d *tomlstrict.Doc) error {
	profiles, _ := d.Tree["profiles"].(map[string]any)
	for _, name := range d.Keys([]string{"profiles"}, profiles) {
		pr := m.Profiles[name]
		tbl, _ := profiles[name].(map[string]any)
		if pr == nil || tbl == nil {
			continue
		}
		pool := m.Pools[pr.Pool]
		if pool == nil && len(m.Pools) == 1 {
			pool = m.Pools[m.PoolNames()[0]]
		}
		for _, f := range []struct {
			table string
			v     float64
		}{{"requests", pr.Requests.TFLOPS}, {"limits", pr.Limits.TFLOPS}} {
			res, _ := tbl[f.table].(map[string]any)
			if _, ok := res["tflops"]; !ok {
				continue
			}
			if why := TFLOPSProblem(f.v, pool); why != "" {
				path := []string{"profiles", name, f.table, "tflops"}
				return d.Errorf(path, "%s %g: %s (%s)", tomlstrict.Dotted(path), f.v, why, SlicePlace(poolName(pool), name))
			}
		}
	}
	return nil
}

// TFLOPSProblem says what is wrong with a tflops request or limit a slice
// gives explicitly ("" if nothing): 0, NaN, negative, or above the peak
// FP16 TFLOPS of one GPU of pool (not checked when pool is nil).
func TFLOPSProblem(v float64, pool *Pool) string {
	switch {
	case math.IsNaN(v):
		return "not a number"
	case v == 0:
		return "0 TFLOPS would give 100 % of the SMs; leave tflops out for a VRAM-only slice"
	case v < 0:
		return "must be positive"
	case pool != nil && v > pool.GPU.PeakFP16+1e-9:
		return fmt.Sprintf("above the peak of one %s (%g TFLOPS)", pool.GPU.Name, pool.GPU.PeakFP16)
	}
	return ""
}

func poolName(p *Pool) string {
	if p == nil {
		return ""
	}
	return p.Name
}

// SlicePlace names the pool and profile of a slice for messages ("pool
// a100, profile small-infer"), leaving out what is "".
func SlicePlace(pool, profile string) string {
	var parts []string
	if pool != "" {
		parts = append(parts, "pool "+pool)
	}
	if profile != "" {
		parts = append(parts, "profile "+profile)
	}
	if len(parts) == 0 {
		return "no pool or profile named"
	}
	return strings.Join(parts, ", ")
}

// keyError is a problem with the value at a key path of a pools file;
// atLine turns it into a tomlstrict.Error at the key's line.
type keyError struct {
	path []string
	msg  string
}

func (e *keyError) Error() string { return e.msg }

// atKey returns a problem with the value at path ("pools", name, "nodes").
func atKey(path []string, format string, args ...any) error {
	return &keyError{path: path, msg: fmt.Sprintf(format, args...)}
}

// atLine places err at its key's line in d: FILE:LINE: MESSAGE (LINE:
// MESSAGE for a document read from bytes), of kind errkind.ErrInvalid.
func atLine(d *tomlstrict.Doc, err error) error {
	var ke *keyError
	if errors.As(err, &ke) {
		return d.Errorf(ke.path, "%s", ke.msg)
	}
	var te *tomlstrict.Error
	if errors.As(err, &te) { // placed already (d.Errorf)
		return err
	}
	file := d.File
	if file != "" {
		file += ":"
	}
	return errkind.Invalid(fmt.Errorf("%s0: %w", file, err))
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

func (m *Model) resolve() error {
	if m.Slurm.IncludeFile == "" {
		m.Slurm.IncludeFile = filepath.Join(slurmConfDir(), filepath.Base(DefaultIncludeFile))
	}
	if m.Slurm.Prefix != "" && !regexp.MustCompile(`^[a-z][a-z0-9_]{0,15}$`).MatchString(m.Slurm.Prefix) {
		return atKey([]string{"slurm", "prefix"}, "slurm.prefix %q: want lowercase letters, digits and _ (at most 16), starting with a letter", m.Slurm.Prefix)
	}
	for _, u := range m.Slurm.Users {
		if !regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`).MatchString(u) {
			return atKey([]string{"slurm", "users"}, "slurm.users: %q is not a user name", u)
		}
	}
	if len(m.QoS) == 0 {
		return atKey([]string{"qos"}, "no [qos.*] levels defined (want some of %s)", strings.Join(QoSLevels, ", "))
	}
	for name, q := range m.QoS {
		q.Name = name
		if qosRank(name) < 0 {
			return atKey([]string{"qos", name}, "qos.%s: unknown level (want one of %s)", name, strings.Join(QoSLevels, ", "))
		}
		if q.Priority == nil {
			p := defaultQoSPriority[name]
			q.Priority = &p
		}
		if *q.Priority < 0 {
			return atKey([]string{"qos", name, "priority"}, "qos.%s.priority: must be >= 0", name)
		}
		switch q.PreemptMode {
		case "":
			q.PreemptMode = "requeue"
		case "requeue", "cancel":
		default:
			return atKey([]string{"qos", name, "preempt_mode"}, "qos.%s.preempt_mode %q: want requeue or cancel (suspend keeps VRAM allocated)", name, q.PreemptMode)
		}
		switch q.OnOverrun {
		case "":
			// Preemptible levels go back to the queue; high and critical
			// jobs are stopped, since requeueing them would let them
			// preempt their way back onto the GPU they overran.
			if qosRank(name) <= qosRank("medium") {
				q.OnOverrun = ActionRequeue
			} else {
				q.OnOverrun = ActionTerminate
			}
		case ActionRequeue, ActionTerminate, ActionReport:
		default:
			return atKey([]string{"qos", name, "on_vram_overrun"}, "qos.%s.on_vram_overrun %q: want requeue, terminate or report", name, q.OnOverrun)
		}
		switch q.OnComputeOverrun {
		case "":
			// MPS caps compute where it runs; the enforcer's compute
			// figure is a time share, so it only reports unless told.
			q.OnComputeOverrun = ActionReport
		case ActionRequeue, ActionTerminate, ActionReport:
		default:
			return fmt.Errorf("qos.%s.on_compute_overrun %q: want report, terminate or requeue", name, q.OnComputeOverrun)
		}
		if q.ComputeWindow < 0 {
			return fmt.Errorf("qos.%s.compute_window %s: must not be negative", name, q.ComputeWindow)
		}
		if q.GraceTime < 0 {
			return atKey([]string{"qos", name, "grace_time"}, "qos.%s.grace_time %s: must not be negative", name, q.GraceTime)
		}
		if q.GraceTime == 0 {
			q.GraceTime = duration.Duration(30 * time.Second)
		}
		if q.GraceTime.D()%time.Second != 0 {
			return atKey([]string{"qos", name, "grace_time"}, "qos.%s.grace_time %s: Slurm counts whole seconds", name, q.GraceTime)
		}
	}
	// A higher level must not have a lower priority than a level it preempts.
	lv := m.Levels()
	for i := 1; i < len(lv); i++ {
		if *lv[i].Priority < *lv[i-1].Priority {
			return atKey([]string{"qos", lv[i].Name, "priority"}, "qos.%s.priority %d is below qos.%s.priority %d", lv[i].Name, *lv[i].Priority, lv[i-1].Name, *lv[i-1].Priority)
		}
	}
	if len(m.Pools) == 0 {
		return atKey([]string{"pools"}, "no [pools.*] defined")
	}
	for name, p := range m.Pools {
		p.Name = name
		if !nameRE.MatchString(name) {
			return atKey([]string{"pools", name}, "pools.%s: pool names are lowercase letters, digits and _ (at most 32), starting with a letter", name)
		}
		if p.Nodes == "" {
			return atKey([]string{"pools", name, "nodes"}, "pools.%s.nodes: required (a Slurm hostlist such as node[1-4])", name)
		}
		if strings.ContainsAny(p.Nodes, " \t\"'#=\n") {
			return atKey([]string{"pools", name, "nodes"}, "pools.%s.nodes %q: a hostlist has no blanks, quotes, '#' or '='", name, p.Nodes)
		}
		if p.GPUModel == "" {
			return atKey([]string{"pools", name, "gpu_model"}, "pools.%s.gpu_model: required (NVML name such as \"NVIDIA A100-SXM4-80GB\")", name)
		}
		spec, err := LookupGPU(p.GPUModel, m.GPUModels)
		if err != nil {
			return atKey([]string{"pools", name, "gpu_model"}, "pools.%s: %v", name, err)
		}
		if spec.Memory == 0 {
			return atKey([]string{"pools", name, "gpu_model"}, "pools.%s: memory of %q unknown; add [gpu_models.%q] memory = \"80Gi\"", name, p.GPUModel, p.GPUModel)
		}
		p.GPU = spec
		if p.GPUsPerNode <= 0 {
			return atKey([]string{"pools", name, "gpus_per_node"}, "pools.%s.gpus_per_node: required, > 0", name)
		}
		if p.ShardsPerGPU == 0 {
			p.ShardsPerGPU = 100
		}
		if p.ShardsPerGPU < 1 || p.ShardsPerGPU > 1000 {
			return atKey([]string{"pools", name, "shards_per_gpu"}, "pools.%s.shards_per_gpu %d: want 1..1000", name, p.ShardsPerGPU)
		}
		if p.Oversubscription == 0 {
			p.Oversubscription = 1
		}
		if !(p.Oversubscription >= 1 && p.Oversubscription <= 100) { // also NaN, which no comparison holds for
			return atKey([]string{"pools", name, "oversubscription"}, "pools.%s.oversubscription %g: want 1..100 (a ratio, 1 = no overselling)", name, p.Oversubscription)
		}
		if p.DefaultQoS != "" && m.QoS[p.DefaultQoS] == nil {
			return atKey([]string{"pools", name, "default_qos"}, "pools.%s.default_qos %q: not a [qos.*] level of this file", name, p.DefaultQoS)
		}
		if p.MaxTime != "" && !regexp.MustCompile(`^(INFINITE|UNLIMITED|[0-9]+(-[0-9]+)?(:[0-9]+){0,2})$`).MatchString(p.MaxTime) {
			return atKey([]string{"pools", name, "max_time"}, "pools.%s.max_time %q: Slurm time such as 01:00:00, 2-00:00:00 or INFINITE", name, p.MaxTime)
		}
		if p.PriorityTier < 0 || p.PriorityTier > 65533 {
			return atKey([]string{"pools", name, "priority_tier"}, "pools.%s.priority_tier %d: want 0..65533", name, p.PriorityTier)
		}
	}
	for name, pr := range m.Profiles {
		pr.Name = name
		if pr.Pool != "" && m.Pools[pr.Pool] == nil {
			return atKey([]string{"profiles", name, "pool"}, "profiles.%s.pool %q: no such pool", name, pr.Pool)
		}
		if pr.QoS != "" && m.QoS[pr.QoS] == nil {
			return atKey([]string{"profiles", name, "qos"}, "profiles.%s.qos %q: not a [qos.*] level of this file", name, pr.QoS)
		}
	}
	return nil
}

// Levels returns the model's QoS levels, lowest rank first.
func (m *Model) Levels() []*QoS {
	var out []*QoS
	for _, q := range m.QoS {
		out = append(out, q)
	}
	sort.Slice(out, func(i, j int) bool { return qosRank(out[i].Name) < qosRank(out[j].Name) })
	return out
}

// PoolNames returns pool names sorted.
func (m *Model) PoolNames() []string {
	var out []string
	for n := range m.Pools {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// SlurmQoS is the Slurm QOS name of a level.
func (m *Model) SlurmQoS(level string) string { return m.Slurm.Prefix + level }

// Partition is the Slurm partition name of a pool.
func (m *Model) Partition(pool string) string { return m.Slurm.Prefix + pool }

// Path is the file the model came from ("" if parsed from bytes).
func (m *Model) Path() string { return m.path }
