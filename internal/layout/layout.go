// Package layout owns the on-disk layout of an experiment directory and of
// its task directories. Every file name lives here, so that the writers (the
// orchestrator, a task, the benchmark workflow) and the readers (results,
// status, reports) agree on where things are.
//
//	<home>/<id>/                 Experiment
//	  spec.toml plan.json state.json
//	  slurm/array.sbatch         the Slurm executor's script
//	  bench-spec.json bench.json bench-task.sh   (LLM benchmarks)
//	  deployment.json slurm/replica.sbatch      (deployments of replicas)
//	  tasks/<i>/                 Task
//	    manifest.json log summary.json snapshots.jsonl metrics.lp
//	    influx-spool/ prediction.lp requests.jsonl server.log
//	    replicas/lease           the task's deployment renews it
//	    replicas/<name>/         Replica: address.json job.json log
//	    shards/<s>/              Task.Shard: shard s of a sharded task, a task directory of its own
//	    shards/start/<attempt>/  Task.ShardStart: where the shards of one attempt meet
package layout

import (
	"path/filepath"
	"strconv"
)

// File names inside a task directory.
const (
	ManifestFile   = "manifest.json"   // the task's loadgen.Config
	LogFile        = "log"             // the task process's stdout and stderr
	SummaryFile    = "summary.json"    // the run's loadgen.Summary, written at the end
	SnapshotsFile  = "snapshots.jsonl" // one loadgen.Snapshot a line, as intervals end
	MetricsFile    = "metrics.lp"      // the local results store (line protocol)
	InfluxSpoolDir = "influx-spool"    // points waiting for InfluxDB
	PredictionFile = "prediction.lp"   // a benchmark's predicted values (line protocol)
	RequestsFile   = "requests.jsonl"  // per-request rows, when asked for
	ServerLogFile  = "server.log"      // the model server a benchmark task started
	ShardsDir      = "shards"          // a sharded task's shards, each a task directory
	ShardStartDir  = "start"           // under ShardsDir: the shards' meeting places
	ReplicasDir    = "replicas"        // the task's deployment: its replicas and lease
	LeaseFile      = "lease"           // in ReplicasDir: renewed while the task runs
)

// File names inside a replica directory.
const (
	AddressFile = "address.json" // where the replica's server listens, written by the replica
	JobFile     = "job.json"     // how the task started it (Slurm job id or process)
)

// File names inside an experiment directory.
const (
	SpecFile          = "spec.toml"
	PlanFile          = "plan.json"
	StateFile         = "state.json"
	TasksDir          = "tasks"
	SlurmScriptFile   = "slurm/array.sbatch"
	BenchSpecFile     = "bench-spec.json"
	BenchTaskFile     = "bench.json"
	BenchWrapperFile  = "bench-task.sh"
	DeploymentFile    = "deployment.json"
	ReplicaScriptFile = "slurm/replica.sbatch"
)

// Experiment is an experiment directory.
type Experiment string

func (e Experiment) path(name string) string { return filepath.Join(string(e), name) }

func (e Experiment) Spec() string         { return e.path(SpecFile) }
func (e Experiment) Plan() string         { return e.path(PlanFile) }
func (e Experiment) State() string        { return e.path(StateFile) }
func (e Experiment) Tasks() string        { return e.path(TasksDir) }
func (e Experiment) SlurmScript() string  { return e.path(SlurmScriptFile) }
func (e Experiment) BenchSpec() string    { return e.path(BenchSpecFile) }
func (e Experiment) BenchTask() string    { return e.path(BenchTaskFile) }
func (e Experiment) BenchWrapper() string { return e.path(BenchWrapperFile) }
func (e Experiment) Deployment() string   { return e.path(DeploymentFile) }
func (e Experiment) ReplicaScript() string {
	return e.path(ReplicaScriptFile)
}

// Task is task i's directory.
func (e Experiment) Task(i int) Task { return Task(e.path(string(RelTask(i)))) }

// TaskGlob matches every task directory, for filepath.Glob.
func (e Experiment) TaskGlob() string { return e.path(filepath.Join(TasksDir, "*")) }

// RelTask is task i's directory relative to the experiment directory, which
// is the working directory executors run tasks in.
func RelTask(i int) Task { return Task(filepath.Join(TasksDir, strconv.Itoa(i))) }

// Task is a task directory.
type Task string

func (t Task) path(name string) string { return filepath.Join(string(t), name) }

func (t Task) Manifest() string    { return t.path(ManifestFile) }
func (t Task) Log() string         { return t.path(LogFile) }
func (t Task) Summary() string     { return t.path(SummaryFile) }
func (t Task) Snapshots() string   { return t.path(SnapshotsFile) }
func (t Task) Metrics() string     { return t.path(MetricsFile) }
func (t Task) InfluxSpool() string { return t.path(InfluxSpoolDir) }
func (t Task) Prediction() string  { return t.path(PredictionFile) }
func (t Task) Requests() string    { return t.path(RequestsFile) }
func (t Task) ServerLog() string   { return t.path(ServerLogFile) }
func (t Task) Lease() string       { return filepath.Join(string(t), ReplicasDir, LeaseFile) }

// Replica is the directory of the task's replica name.
func (t Task) Replica(name string) Replica {
	return Replica(filepath.Join(string(t), ReplicasDir, name))
}

// Replica is a replica's directory.
type Replica string

func (r Replica) Address() string { return filepath.Join(string(r), AddressFile) }
func (r Replica) Job() string     { return filepath.Join(string(r), JobFile) }
func (r Replica) Log() string     { return filepath.Join(string(r), LogFile) }

// Shard is the directory of shard s of a sharded task: its own summary,
// snapshots, metrics and spool, as a task's.
func (t Task) Shard(s int) Task { return Task(t.path(filepath.Join(ShardsDir, strconv.Itoa(s)))) }

// ShardStart is where the shards of one attempt of a sharded task agree on
// their common start (attempt: e.g. the Slurm job id).
func (t Task) ShardStart(attempt string) string {
	return t.path(filepath.Join(ShardsDir, ShardStartDir, attempt))
}

// Home is $GPUORCH_HOME: experiment directories, and the benchmark
// workflow's saved workflows and registries (clusters, models, datasets by
// id), one JSON file per entry.
//
//	<home>/workflows/<id>.json
//	<home>/registry/<kind>/<id>.json   kind: clusters, models, datasets
type Home string

// Directory names under a Home.
const (
	WorkflowsDir = "workflows"
	RegistryDir  = "registry"
)

// Workflows is the directory of saved benchmark workflows.
func (h Home) Workflows() string { return filepath.Join(string(h), WorkflowsDir) }

// Registry is the directory of one registry (clusters, models, datasets).
func (h Home) Registry(kind string) string { return filepath.Join(string(h), RegistryDir, kind) }

// RegistryEntry is one registry entry's file.
func (h Home) RegistryEntry(kind, id string) string {
	return filepath.Join(h.Registry(kind), id+".json")
}
