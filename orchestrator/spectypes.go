package orchestrator

import (
	"github.com/gpuorch/gpuorch/deploy"
	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/tomlstrict"
	"github.com/gpuorch/gpuorch/loadgen"
)

// Spec is a decoded experiment spec (see docs/spec.md). Target, Workloads and
// SLO are the loadgen types themselves, so every field loadgen understands is
// a spec key and a sweep key without further wiring.
type Spec struct {
	Experiment ExperimentSpec           `toml:"experiment"`
	Target     loadgen.TargetConfig     `toml:"target"`
	Workloads  []loadgen.WorkloadConfig `toml:"workload"`
	SLO        loadgen.SLOConfig        `toml:"slo"`
	Run        RunSpec                  `toml:"run"`
	Slurm      SlurmSpec                `toml:"slurm"`
	Output     OutputSpec               `toml:"output"`
	Training   *TrainingSpec            `toml:"training"`
	Slice      *SliceSpec               `toml:"slice"` // a GPU slice for every task (see slice.go), or for the deployment's replicas
	// Deployment is the model server the load goes to, as replicas gpuorch
	// starts, balances over and scales (see deployment.go).
	Deployment *deploy.Spec `toml:"deployment"`

	// Sweep is the [sweep] table flattened into parameters, in file order.
	Sweep []SweepParam `toml:"-"`

	// File is the path the spec was read from (for messages); Source its
	// bytes as read (copied to the experiment directory); Overrides the
	// --set KEY=VALUE arguments applied on top.
	File      string   `toml:"-"`
	Source    []byte   `toml:"-"`
	Overrides []string `toml:"-"`

	raw map[string]any  // the decoded tree after overrides, minus [sweep]
	doc *tomlstrict.Doc // the document: lines, overrides

	deploySlice *gpuslice.Slice // [slice] resolved for the deployment's replicas
	deployment  *deploy.Plan    // [deployment] resolved
}

// ExperimentSpec is the [experiment] table.
type ExperimentSpec struct {
	Name        string   `toml:"name" json:"name"`                         // required; [a-z0-9][a-z0-9._-]{0,62}
	Tags        []string `toml:"tags" json:"tags,omitempty"`               // free text, never interpreted
	Description string   `toml:"description" json:"description,omitempty"` // free text, never interpreted
}

// RunSpec is the [run] table: how tasks run.
type RunSpec struct {
	Duration loadgen.Duration `toml:"duration" json:"duration"`           // per task; default 30s
	Interval loadgen.Duration `toml:"interval" json:"interval,omitempty"` // snapshot interval; default 1s
	Seed     int64            `toml:"seed" json:"seed"`                   // base seed; task i gets seed+i unless swept; default 1
	Executor string           `toml:"executor" json:"executor"`           // "local" (default) or "slurm"
	Parallel int              `toml:"parallel" json:"parallel"`           // local executor: tasks at a time; default 1
	// TaskTimeout bounds one task's wall time under the local executor
	// (0 = none). The task is interrupted, then killed after a grace period,
	// and marked "timeout".
	TaskTimeout loadgen.Duration `toml:"task_timeout" json:"task_timeout,omitempty"`
	// Shards runs every task as this many shards, one per node, that send
	// the task's one schedule between them from a common start and whose
	// histograms review merges exactly (0 or 1: one process per task). The
	// Slurm executor gives each task this many nodes and one job step;
	// the local executor runs this many processes. See docs/slurm.md.
	Shards int `toml:"shards" json:"shards,omitempty"`
	// ShardsPerNode puts this many shards on each node (default 1): one
	// shard's pacer is one thread, so a node with many cores carries more
	// load as several shards. The task takes ceil(Shards/ShardsPerNode)
	// nodes.
	ShardsPerNode int `toml:"shards_per_node" json:"shards_per_node,omitempty"`
	// Load holds the other manifest settings given in [run] (drain,
	// max_in_flight, … — every non-table key of loadgen.Config), copied into
	// each task's manifest.
	Load map[string]any `toml:"-" json:"load,omitempty"`
}

// ShardNodes is how many nodes a sharded task takes: ceil(Shards /
// ShardsPerNode).
func (r RunSpec) ShardNodes() int {
	per := max(r.ShardsPerNode, 1)
	return (r.Shards + per - 1) / per
}

// SlurmSpec is the [slurm] table, read by the Slurm executor. Every value is
// a user string and must be shell-quoted wherever it is rendered.
type SlurmSpec struct {
	Partition   string            `toml:"partition" json:"partition,omitempty"`
	QOS         string            `toml:"qos" json:"qos,omitempty"`
	Account     string            `toml:"account" json:"account,omitempty"`
	Time        string            `toml:"time" json:"time,omitempty"`         // per array task, Slurm's format ("10:00", "1-00:00:00")
	Throttle    int               `toml:"throttle" json:"throttle,omitempty"` // max array tasks running at once (%N)
	Nodes       int               `toml:"nodes" json:"nodes,omitempty"`
	CPUsPerTask int               `toml:"cpus_per_task" json:"cpus_per_task,omitempty"`
	Mem         string            `toml:"mem" json:"mem,omitempty"`   // e.g. "4G"
	GPUs        string            `toml:"gpus" json:"gpus,omitempty"` // --gpus, e.g. "1" or "a100:1"
	Gres        string            `toml:"gres" json:"gres,omitempty"` // e.g. "shard:2"
	Constraint  string            `toml:"constraint" json:"constraint,omitempty"`
	Nodelist    string            `toml:"nodelist" json:"nodelist,omitempty"`
	Exclude     string            `toml:"exclude" json:"exclude,omitempty"`
	Comment     string            `toml:"comment" json:"comment,omitempty"`
	Binary      string            `toml:"binary" json:"binary,omitempty"`         // gpuorch path on the compute nodes; default: this binary
	Env         map[string]string `toml:"env" json:"env,omitempty"`               // exported to every task
	ExtraArgs   []string          `toml:"extra_args" json:"extra_args,omitempty"` // further sbatch options, each one argument
	// Slice is the spec's [slice] resolved against its pools file (not a
	// [slurm] key): ParseSpec sets it, and the Slurm executor applies it to
	// the array job (ApplySlice). Kept here so plan.json carries it.
	Slice *gpuslice.Slice `toml:"-" json:"slice,omitempty"`
}

// OutputSpec is the [output] table: where results go.
type OutputSpec struct {
	// Dir is the directory experiment directories are created in; it
	// overrides $GPUORCH_HOME (default ./gpuorch-runs).
	Dir      string        `toml:"dir" json:"dir,omitempty"`
	InfluxDB *InfluxDBSpec `toml:"influxdb" json:"influxdb,omitempty"`
}

// InfluxDBSpec is [output.influxdb]: an InfluxDB that tasks write to besides
// the local line-protocol files. Its keys mirror the [influxdb] table of the
// gpuorch config file (results.InfluxConfig); executors hand them to tasks
// as GPUORCH_INFLUX_* environment variables (see Plan.TaskEnv). The token is
// never in a spec: it comes from GPUORCH_INFLUX_TOKEN or a 0600 token_file.
type InfluxDBSpec struct {
	URL       string `toml:"url" json:"url"`
	Bucket    string `toml:"bucket" json:"bucket,omitempty"` // "db" or "db/rp" on InfluxDB 1.8
	Org       string `toml:"org" json:"org,omitempty"`
	TokenFile string `toml:"token_file" json:"token_file,omitempty"`
}

// SweepParam is one [sweep] entry: a spec key and the values it takes, or
// several keys swept together ("workload.rate,slo.factor" = [[50, 2], …]),
// each value then a list with one element per key.
type SweepParam struct {
	Key    string   `json:"key"`            // e.g. "workload.rate", or "workload.rate,slo.factor"
	Keys   []string `json:"keys,omitempty"` // the keys of a zipped entry
	Values []any    `json:"values"`
	Line   int      `json:"line,omitempty"`
}

// Parts are the keys the entry sets.
func (sp *SweepParam) Parts() []string {
	if len(sp.Keys) > 0 {
		return sp.Keys
	}
	return []string{sp.Key}
}

// component is what value v (one of Values) sets key j of Parts to.
func (sp *SweepParam) component(v any, j int) any {
	if len(sp.Keys) == 0 {
		return v
	}
	return v.([]any)[j]
}
