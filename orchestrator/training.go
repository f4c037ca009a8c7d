package orchestrator

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/gpuorch/gpuorch/sbatch"
)

// TrainingSpec is the [training] table of an experiment spec: a multi-node
// training run rendered as an sbatch job (see docs/training.md). Every
// string is a user value and is shell-quoted wherever it is rendered.
type TrainingSpec struct {
	// Nodes is the node count; Hosts, when given, pins the job to those
	// hosts (--nodelist, the seed's Hostnames: a list, or one
	// comma-separated string as the seed writes it) and Nodes defaults to
	// their number.
	Nodes       int      `toml:"nodes" json:"nodes,omitempty"`
	Hosts       HostList `toml:"hosts" json:"hosts,omitempty"`
	GPUsPerNode int      `toml:"gpus_per_node" json:"gpus_per_node,omitempty"` // one task per GPU; default 8
	CPUsPerTask int      `toml:"cpus_per_task" json:"cpus_per_task,omitempty"` // default 10 (metaseq's on FAIR clusters)
	Mem         string   `toml:"mem" json:"mem,omitempty"`                     // --mem; default "0" (all of each node)
	Exclusive   bool     `toml:"exclusive" json:"exclusive,omitempty"`         // --exclusive
	Time        string   `toml:"time" json:"time,omitempty"`                   // Slurm syntax; default [slurm].time, else 4:00:00
	Partition   string   `toml:"partition" json:"partition,omitempty"`         // default [slurm].partition
	Account     string   `toml:"account" json:"account,omitempty"`             // default [slurm].account
	QOS         string   `toml:"qos" json:"qos,omitempty"`                     // default [slurm].qos

	// Runtime is "apptainer" (default), "singularity", or "none" (run the
	// command on the host, e.g. a Python environment on the nodes).
	Runtime string `toml:"runtime" json:"runtime,omitempty"`
	// Image is the SIF file, at the same path on every node (required
	// unless runtime is "none"); ImageVersion the version it must carry
	// (label or file name, the seed's ApptainerImageVersion).
	Image        string `toml:"image" json:"image,omitempty"`
	ImageVersion string `toml:"image_version" json:"image_version,omitempty"`
	// ImageDir, instead of Image, is the directory the seed's profile
	// works in: the image is ImageDir/metaseq_<ImageVersion>.sif (the name
	// VirtualClient pulls it as), ImageVersion defaults to
	// DefaultImageVersion, Script to DefaultTrainingScript, and a script
	// given by name only is the one in ImageDir (bound into the container).
	ImageDir string `toml:"image_dir" json:"image_dir,omitempty"`
	// Arch is the nodes' architecture the image must match; default the
	// architecture gpuorch runs on.
	Arch string `toml:"arch" json:"arch,omitempty"`
	// RequiredPaths must exist inside the image (the script is added).
	RequiredPaths []string `toml:"required_paths" json:"required_paths,omitempty"`
	Binds         []string `toml:"binds" json:"binds,omitempty"` // apptainer --bind specs, "src[:dst[:opts]]"

	// Script is a training script (inside the image, or on the hosts with
	// runtime "none") run by every rank; it must pass its arguments on to
	// metaseq-train. Exactly one of Script and ModelSize.
	Script string `toml:"script" json:"script,omitempty"`
	// ModelSize is a Metaseq OPT preset (125m, 350m, 1.3b, …) trained on the
	// synthetic dummy_lm task with opt_baselines' --benchmark settings.
	ModelSize   string `toml:"model_size" json:"model_size,omitempty"`
	Command     string `toml:"command" json:"command,omitempty"`           // preset entry point; default "metaseq-train"
	MaxUpdate   int    `toml:"max_update" json:"max_update,omitempty"`     // preset; default 50
	LogInterval int    `toml:"log_interval" json:"log_interval,omitempty"` // preset; default 5
	BatchSize   int    `toml:"batch_size" json:"batch_size,omitempty"`     // preset, sequences per GPU; default from the preset's tokens per update
	// ExtraArgs are appended to the training command, each one argument.
	ExtraArgs []string `toml:"extra_args" json:"extra_args,omitempty"`
	// SaveDir is where checkpoints go (metaseq always saves one at the
	// end); it must be writable on every node. Default <run dir>/checkpoints.
	SaveDir string `toml:"save_dir" json:"save_dir,omitempty"`

	// Env is exported to every rank. NCCL holds NCCL settings by name with
	// or without the NCCL_ prefix ({debug = "INFO"} is NCCL_DEBUG=INFO).
	Env  map[string]string `toml:"env" json:"env,omitempty"`
	NCCL map[string]string `toml:"nccl" json:"nccl,omitempty"`

	// MasterPortBase: MASTER_PORT is base + job id % 10000 (default 10000),
	// so jobs sharing a node do not collide.
	MasterPortBase int `toml:"master_port_base" json:"master_port_base,omitempty"`
}

// The seed profile's defaults (VirtualClient PERF-GPU-METASEQ-NVIDIA.json):
// ApptainerImageVersion and TrainingScript. The seed's documentation gives
// 1.1.6 for the version, which is the Apptainer version the profile
// installs; the profile's own default, and its image tag, is f7ffa5f_2306.
const (
	DefaultImageVersion   = "f7ffa5f_2306"
	DefaultTrainingScript = "train_7.5.sh"
)

// ImageFileName is the file an image version resolves to in image_dir:
// the name VirtualClient pulls it as (apptainer pull metaseq_<ver>.sif).
func ImageFileName(version string) string { return "metaseq_" + version + ".sif" }

// HostList is host names: a TOML or JSON list, or one comma-separated
// string ("gpu01,gpu02", the seed's Hostnames).
type HostList []string

// splitHosts splits "gpu01, gpu02" into names; empty entries stay (and are
// refused by Validate with their position).
func splitHosts(s string) HostList {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// UnmarshalTOML accepts "gpu01,gpu02" or ["gpu01", "gpu02"].
func (h *HostList) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		*h = splitHosts(x)
		return nil
	case []any:
		out := make(HostList, 0, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("element %d: want a host name (string), got %T", i, e)
			}
			out = append(out, s)
		}
		*h = out
		return nil
	}
	return fmt.Errorf("want a list of host names or one comma-separated string, got %T", v)
}

// UnmarshalJSON accepts "gpu01,gpu02" or ["gpu01", "gpu02"].
func (h *HostList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*h = splitHosts(one)
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("want a list of host names or one comma-separated string")
	}
	*h = many
	return nil
}

// Training runtimes.
const (
	RuntimeApptainer   = "apptainer"
	RuntimeSingularity = "singularity"
	RuntimeNone        = "none"
)

// OPTPreset is one Metaseq OPT model size (OPT paper, table 1).
type OPTPreset struct {
	Layers, EmbedDim, Heads int
	LR                      float64
	TokensPerUpdate         int // global batch in tokens
	ModelParallel           int
}

// OPTPresets are the model sizes `model_size` accepts.
var OPTPresets = map[string]OPTPreset{
	"125m": {12, 768, 12, 6.0e-4, 1 << 19, 2},
	"350m": {24, 1024, 16, 3.0e-4, 1 << 19, 2},
	"1.3b": {24, 2048, 32, 2.0e-4, 1 << 20, 2},
	"2.7b": {32, 2560, 32, 1.6e-4, 1 << 20, 2},
	"6.7b": {32, 4096, 32, 1.2e-4, 1 << 21, 2},
	"13b":  {40, 5120, 40, 1.0e-4, 1 << 22, 2},
	"30b":  {48, 7168, 56, 1.0e-4, 1 << 22, 2},
	"66b":  {64, 9216, 72, 0.8e-4, 1 << 21, 8},
	"175b": {96, 12288, 96, 1.2e-4, 1 << 21, 8},
}

// Benchmark settings of opt_baselines --benchmark.
const (
	benchTokensPerSample = 2048
	benchDictSize        = 51196
	defaultMaxUpdate     = 50
	defaultLogInterval   = 5
	defaultGPUsPerNode   = 8
	defaultCPUsPerTask   = 10
	defaultTrainingTime  = "4:00:00"
	defaultPortBase      = 10000
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// TrainingError is a problem with a [training] key.
type TrainingError struct {
	Key string // e.g. "training.gpus_per_node"
	Msg string
}

func (e *TrainingError) Error() string { return e.Key + ": " + e.Msg }

// WithDefaults returns a copy with defaults filled in (slurm supplies
// partition, account, qos and time when the training table has none).
func (t TrainingSpec) WithDefaults(slurm SlurmSpec) TrainingSpec {
	if t.Nodes == 0 && len(t.Hosts) > 0 {
		t.Nodes = len(t.Hosts)
	}
	if t.Nodes == 0 {
		t.Nodes = 1
	}
	if t.GPUsPerNode == 0 {
		t.GPUsPerNode = defaultGPUsPerNode
	}
	if t.CPUsPerTask == 0 {
		t.CPUsPerTask = defaultCPUsPerTask
	}
	if t.Mem == "" {
		t.Mem = "0"
	}
	if t.Runtime == "" {
		t.Runtime = RuntimeApptainer
	}
	if t.Arch == "" {
		t.Arch = runtime.GOARCH
	}
	if t.Partition == "" {
		t.Partition = slurm.Partition
	}
	if t.Account == "" {
		t.Account = slurm.Account
	}
	if t.QOS == "" {
		t.QOS = slurm.QOS
	}
	if t.Time == "" {
		t.Time = slurm.Time
	}
	if t.Time == "" {
		t.Time = defaultTrainingTime
	}
	if t.ModelSize != "" {
		if t.Command == "" {
			t.Command = "metaseq-train"
		}
		if t.MaxUpdate == 0 {
			t.MaxUpdate = defaultMaxUpdate
		}
		if t.LogInterval == 0 {
			t.LogInterval = defaultLogInterval
		}
	}
	if t.MasterPortBase == 0 {
		t.MasterPortBase = defaultPortBase
	}
	if t.ImageDir != "" && t.Image == "" {
		if t.ImageVersion == "" {
			t.ImageVersion = DefaultImageVersion
		}
		if imageVersionRE.MatchString(t.ImageVersion) {
			t.Image = filepath.Join(t.ImageDir, ImageFileName(t.ImageVersion))
		}
		if t.Script == "" && t.ModelSize == "" {
			t.Script = DefaultTrainingScript
		}
		if t.Script != "" && !strings.Contains(t.Script, "/") {
			t.Script = filepath.Join(t.ImageDir, t.Script)
		}
	}
	return t
}

// imageVersionRE is what may go into an image file name.
var imageVersionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// ScriptOnHost reports whether the script is a file of image_dir (checked
// on this machine and bound into the container) rather than a path inside
// the image.
func (t *TrainingSpec) ScriptOnHost() bool {
	return t.ImageDir != "" && t.Script != "" && filepath.Dir(t.Script) == filepath.Clean(t.ImageDir)
}

// Validate checks a spec with defaults applied; every error names its key.
func (t *TrainingSpec) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, &TrainingError{Key: "training." + key, Msg: fmt.Sprintf(format, a...)})
	}
	if t.Nodes < 1 {
		bad("nodes", "must be at least 1, got %d", t.Nodes)
	}
	if len(t.Hosts) > 0 && t.Nodes != len(t.Hosts) {
		bad("nodes", "is %d but hosts lists %d hosts", t.Nodes, len(t.Hosts))
	}
	for i, h := range t.Hosts {
		if h == "" || strings.ContainsAny(h, " ,\t\n") {
			bad("hosts", "entry %d (%q) is not a host name", i, h)
		}
	}
	if t.GPUsPerNode < 1 {
		bad("gpus_per_node", "must be at least 1, got %d", t.GPUsPerNode)
	}
	if t.CPUsPerTask < 1 {
		bad("cpus_per_task", "must be at least 1, got %d", t.CPUsPerTask)
	}
	switch t.Runtime {
	case RuntimeApptainer, RuntimeSingularity:
		if t.Image == "" && t.ImageDir == "" {
			bad("image", "is required with runtime %q (or image_dir with image_version)", t.Runtime)
		}
	case RuntimeNone:
	default:
		bad("runtime", "must be apptainer, singularity or none, got %q", t.Runtime)
	}
	if t.Image != "" && !filepath.IsAbs(t.Image) {
		bad("image", "must be an absolute path (the same on every node), got %q", t.Image)
	}
	if t.ImageDir != "" {
		if !filepath.IsAbs(t.ImageDir) {
			bad("image_dir", "must be an absolute path (the same on every node), got %q", t.ImageDir)
		}
		switch {
		case t.Image != "" && t.Image != filepath.Join(t.ImageDir, ImageFileName(t.ImageVersion)):
			bad("image_dir", "give image (the SIF file) or image_dir (with image_version), not both")
		case !imageVersionRE.MatchString(t.ImageVersion):
			bad("image_version", "%q cannot be part of a file name (want letters, digits, '.', '_', '+', '-')", t.ImageVersion)
		}
	}
	switch {
	case t.Script == "" && t.ModelSize == "":
		bad("script", `one of script or model_size is required (e.g. model_size = "125m")`)
	case t.Script != "" && t.ModelSize != "":
		bad("model_size", "give script or model_size, not both")
	case t.ModelSize != "":
		p, ok := OPTPresets[strings.ToLower(t.ModelSize)]
		if !ok {
			bad("model_size", "unknown size %q (one of %s)", t.ModelSize, strings.Join(PresetNames(), ", "))
		} else if total := t.Nodes * t.GPUsPerNode; total%p.ModelParallel != 0 || total < 2 {
			bad("model_size", "%s uses model parallelism %d: total GPUs (%d) must be a multiple of it and at least 2", t.ModelSize, p.ModelParallel, total)
		}
	}
	for i, a := range t.ExtraArgs {
		if a == "--log-format" && (i+1 >= len(t.ExtraArgs) || t.ExtraArgs[i+1] != "json") ||
			strings.HasPrefix(a, "--log-format=") && a != "--log-format=json" {
			bad("extra_args", "gpuorch parses the json log format; --log-format cannot be changed")
		}
	}
	for k := range t.Env {
		if !envNameRE.MatchString(k) {
			bad("env", "%q is not an environment variable name", k)
		}
	}
	for k := range t.NCCL {
		if !envNameRE.MatchString(ncclName(k)) {
			bad("nccl", "%q is not an NCCL setting name", k)
		}
	}
	for i, b := range t.Binds {
		if b == "" || strings.Contains(b, ",") {
			bad("binds", "entry %d (%q): one bind per entry, src[:dst[:opts]]", i, b)
		}
	}
	if t.MasterPortBase < 1024 || t.MasterPortBase > 65535-10000 {
		bad("master_port_base", "must be in [1024, 55535], got %d", t.MasterPortBase)
	}
	if t.MaxUpdate < 0 || t.LogInterval < 0 || t.BatchSize < 0 {
		bad("max_update", "max_update, log_interval and batch_size cannot be negative")
	}
	return errors.Join(errs...)
}

// PresetNames lists the model sizes, smallest first.
func PresetNames() []string {
	names := make([]string, 0, len(OPTPresets))
	for n := range OPTPresets {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return OPTPresets[names[i]].EmbedDim*OPTPresets[names[i]].Layers < OPTPresets[names[j]].EmbedDim*OPTPresets[names[j]].Layers
	})
	return names
}

func ncclName(k string) string {
	k = strings.ToUpper(k)
	if !strings.HasPrefix(k, "NCCL_") {
		k = "NCCL_" + k
	}
	return k
}

// TrainingArgs is the command every rank runs (without the container
// runtime): the script or the preset's metaseq-train invocation, then
// extra_args, with --log-format json always present.
func (t *TrainingSpec) TrainingArgs(saveDir string) []string {
	var argv []string
	if t.Script != "" {
		argv = []string{t.Script}
	} else {
		p := OPTPresets[strings.ToLower(t.ModelSize)]
		world := t.Nodes * t.GPUsPerNode
		bs := t.BatchSize
		if bs == 0 {
			dataParallel := max(world/p.ModelParallel, 1)
			bs = max(p.TokensPerUpdate/benchTokensPerSample/dataParallel, 1)
		}
		f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
		i := strconv.Itoa
		argv = []string{t.Command,
			"--task", "dummy_lm", "--dict-size", i(benchDictSize), "--tokens-per-sample", i(benchTokensPerSample),
			"--arch", "transformer_lm_megatron",
			"--decoder-layers", i(p.Layers), "--decoder-embed-dim", i(p.EmbedDim),
			"--decoder-ffn-embed-dim", i(4 * p.EmbedDim), "--decoder-attention-heads", i(p.Heads),
			"--model-parallel-size", i(p.ModelParallel), "--distributed-world-size", i(world),
			"--batch-size", i(bs), "--max-update", i(t.MaxUpdate), "--log-interval", i(t.LogInterval),
			"--optimizer", "adam", "--adam-betas", "(0.9, 0.95)", "--adam-eps", "1e-08", "--clip-norm", "1.0",
			"--lr", f(p.LR), "--lr-scheduler", "polynomial_decay", "--warmup-updates", i(t.MaxUpdate),
			"--weight-decay", "0.1", "--dropout", "0.1", "--attention-dropout", "0.1",
			"--share-decoder-input-output-embed", "--ddp-backend", "fully_sharded",
			"--fp16", "--memory-efficient-fp16", "--fp16-init-scale", "4", "--checkpoint-activations",
			"--num-workers", "1", "--save-dir", saveDir,
		}
	}
	argv = append(argv, t.ExtraArgs...)
	hasJSON := false
	for i, a := range argv {
		if a == "--log-format=json" || (a == "--log-format" && i+1 < len(argv) && argv[i+1] == "json") {
			hasJSON = true
		}
	}
	if !hasJSON {
		argv = append(argv, "--log-format", "json")
	}
	return argv
}

// TrainingJobOptions are what the rendered job needs beyond the spec.
type TrainingJobOptions struct {
	Name   string // --job-name
	RunDir string // absolute, shared by all nodes: train.log, stderr, checkpoints
	// Preflight adds a per-node srun probe (GPUs visible, image readable,
	// runtime installed) before training starts.
	Preflight bool
}

// Paths inside the run directory.
const (
	TrainingLogName    = "train.log"
	TrainingScriptName = "train.sbatch"
)

// rankScript runs on the host for every task: it turns Slurm's per-task
// variables into the torchrun-style ones metaseq reads for env://
// rendezvous (so no scontrol is needed inside the image) and execs the
// command given as its arguments. It is constant text: user values arrive
// as separate, quoted words.
const rankScript = `export RANK="$SLURM_PROCID" LOCAL_RANK="$SLURM_LOCALID" WORLD_SIZE="$SLURM_NTASKS"; exec "$@"`

// preflightScript runs once per node. $1 image ("" for none), $2 runtime,
// $3 GPUs expected.
const preflightScript = `host=$(hostname -s); fail() { echo "gpuorch preflight: $SLURMD_NODENAME ($host): $*" >&2; exit 1; }
if [ -n "$1" ]; then [ -r "$1" ] || fail "image $1 not readable"; fi
if [ "$2" != none ]; then command -v "$2" >/dev/null || fail "$2 not installed"; fi
if command -v nvidia-smi >/dev/null; then n=$(nvidia-smi -L | grep -c '^GPU'); elif [ -n "$CUDA_VISIBLE_DEVICES" ]; then n=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .); else n=$(ls /dev/nvidia[0-9]* 2>/dev/null | wc -l); fi
[ "$n" -ge "$3" ] || fail "$n GPUs visible, need $3"
echo "gpuorch preflight: $SLURMD_NODENAME ($host): ok, $n GPUs"`

// TrainingJob renders t (with defaults applied) as a batch job: one task
// per GPU on every node, each launched by srun through the container
// runtime with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT
// set (env:// rendezvous). USR1, sent 180 s before the time limit, requeues
// the job from the batch shell.
func (t *TrainingSpec) TrainingJob(o TrainingJobOptions) (*sbatch.Job, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(o.RunDir) {
		return nil, fmt.Errorf("training run directory must be absolute, got %q", o.RunDir)
	}
	saveDir := t.SaveDir
	if saveDir == "" {
		saveDir = filepath.Join(o.RunDir, "checkpoints")
	}
	g := strconv.Itoa(t.GPUsPerNode)
	job := &sbatch.Job{
		Name:          o.Name,
		Partition:     t.Partition,
		Account:       t.Account,
		QOS:           t.QOS,
		Nodes:         strconv.Itoa(t.Nodes),
		NTasksPerNode: t.GPUsPerNode,
		GPUsPerNode:   g,
		CPUsPerTask:   t.CPUsPerTask,
		Mem:           t.Mem,
		Time:          t.Time,
		Exclusive:     t.Exclusive,
		NodeList:      strings.Join(t.Hosts, ","),
		WorkDir:       o.RunDir,
		Output:        sbatch.PatternIn(o.RunDir, TrainingLogName),
		Error:         sbatch.PatternIn(o.RunDir, "train.stderr.%j"),
		OpenMode:      "append",
		Signal:        "B:USR1@180",
		Requeue:       sbatch.Bool(true),
	}

	// Environment, metaseq launcher's defaults first; user values override.
	env := map[string]string{
		"OMP_NUM_THREADS":           "2",
		"NCCL_ASYNC_ERROR_HANDLING": "1",
		"METASEQ_SAVE_DIR":          saveDir,
		"LOCAL_WORLD_SIZE":          g,
	}
	if t.Nodes > 1 {
		env["NCCL_DEBUG"] = "INFO"
		env["NCCL_SOCKET_IFNAME"] = "^docker0,lo"
	}
	for k, v := range t.NCCL {
		env[ncclName(k)] = v
	}
	for k, v := range t.Env {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		job.Env = append(job.Env, sbatch.Env(k, env[k]))
	}

	b := []sbatch.Line{
		sbatch.Comment("gpuorch training job: " + strconv.Itoa(t.Nodes) + " node(s) x " + g + " GPU task(s), runtime " + t.Runtime),
		sbatch.Raw(`# Requeue from the batch shell, which has scontrol (metaseq's launcher does the same).
requeued=0
requeue_job() { echo "gpuorch: USR1 received, requeueing job $SLURM_JOB_ID" >&2; requeued=1; scontrol requeue "$SLURM_JOB_ID"; }
trap requeue_job USR1
trap 'echo "gpuorch: TERM received, ignored (waiting for requeue)" >&2' TERM`),
		sbatch.Raw(`# Rendezvous (env://): the first node of the allocation, computed on the host.
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_ADDR`),
		sbatch.Export("MASTER_PORT_BASE", sbatch.Lit(strconv.Itoa(t.MasterPortBase))),
		sbatch.Raw(`export MASTER_PORT=$((MASTER_PORT_BASE + SLURM_JOB_ID % 10000))
echo "gpuorch: job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0}: $SLURM_JOB_NUM_NODES nodes ($SLURM_JOB_NODELIST), master $MASTER_ADDR:$MASTER_PORT" >&2`),
		sbatch.Command(sbatch.Lit("mkdir"), sbatch.Lit("-p"), sbatch.Lit(saveDir)),
	}
	if o.Preflight {
		image := ""
		if t.Runtime != RuntimeNone {
			image = t.Image
		}
		b = append(b,
			sbatch.Comment("preflight: one task per node checks GPUs, image and runtime"),
			sbatch.Command(sbatch.Lit("srun"), sbatch.Lit("--ntasks-per-node=1"), sbatch.Lit("--ntasks="+strconv.Itoa(t.Nodes)),
				sbatch.Lit("--kill-on-bad-exit=1"), sbatch.Lit("bash"), sbatch.Lit("-c"), sbatch.Lit(preflightScript),
				sbatch.Lit("gpuorch-preflight"), sbatch.Lit(image), sbatch.Lit(t.Runtime), sbatch.Lit(g)),
			sbatch.Raw(`rc=$?; if [ "$rc" -ne 0 ]; then echo "gpuorch: preflight failed (exit $rc)" >&2; exit "$rc"; fi`),
		)
	}

	launch := []sbatch.Arg{sbatch.Lit("srun"), sbatch.Lit("--kill-on-bad-exit=1"), sbatch.Lit("--unbuffered"),
		sbatch.Lit("bash"), sbatch.Lit("-c"), sbatch.Lit(rankScript), sbatch.Lit("gpuorch-rank")}
	if t.Runtime != RuntimeNone {
		launch = append(launch, sbatch.Lit(t.Runtime), sbatch.Lit("exec"), sbatch.Lit("--nv"))
		binds := append([]string{o.RunDir}, t.Binds...)
		if t.ScriptOnHost() {
			binds = append(binds, t.ImageDir)
		}
		if t.SaveDir != "" {
			binds = append(binds, t.SaveDir)
		}
		for _, bd := range binds {
			launch = append(launch, sbatch.Lit("--bind"), sbatch.Lit(bd))
		}
		launch = append(launch, sbatch.Lit(t.Image))
	}
	for _, a := range t.TrainingArgs(saveDir) {
		launch = append(launch, sbatch.Lit(a))
	}
	b = append(b,
		sbatch.Comment("training: srun runs in the background so the batch shell can take USR1"),
		sbatch.Raw("run_training() {"),
		sbatch.Command(launch...),
		sbatch.Raw(`}
run_training &
train_pid=$!
wait "$train_pid"
rc=$?
while [ "$requeued" -eq 0 ] && kill -0 "$train_pid" 2>/dev/null; do wait "$train_pid"; rc=$?; done
if [ "$requeued" -eq 1 ]; then
  # Slurm ends this allocation itself; give it time to do so cleanly.
  sleep 610 &
  wait $!
fi
exit "$rc"`),
	)
	job.Body = b
	if err := job.Validate(); err != nil {
		return nil, fmt.Errorf("training job: %w", err)
	}
	return job, nil
}
