package deploy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/duration"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/sbatch"
)

// Spec is the [deployment] table of an experiment spec: the model server
// every task runs its load against, as replicas started by gpuorch (see
// docs/deployments.md). Exactly one of SimServer, Command and Image names
// the server.
type Spec struct {
	// SimServer runs `gpuorch sim-server --listen {host}:{port}` with these
	// further arguments.
	SimServer []string `toml:"sim_server" json:"sim_server,omitempty"`
	// Command is the server's argv: "gpuorch" as the first word is the
	// gpuorch binary; {host} and {port} are replaced by the address to
	// listen on, which $HOST and $PORT also hold.
	Command []string `toml:"command" json:"command,omitempty"`
	// Image is a SIF image run with `apptainer run --nv IMAGE ARGS`.
	Image string   `toml:"image" json:"image,omitempty"`
	Args  []string `toml:"args" json:"args,omitempty"`
	// Env is set for the server.
	Env map[string]string `toml:"env" json:"env,omitempty"`

	// ReadyPath is what gpuorch GETs until it answers 2xx (default by
	// protocol: /v2/health/ready, /v1/models, or any answer for http).
	ReadyPath string `toml:"ready_path" json:"ready_path,omitempty"`
	// ReadyTimeout bounds one replica from submission to ready, Slurm
	// scheduling included (default 5m).
	ReadyTimeout duration.Duration `toml:"ready_timeout" json:"ready_timeout,omitempty"`
	// Executor is where replicas run: "local" (processes) or "slurm" (one
	// job each); default the experiment's executor.
	Executor string `toml:"executor" json:"executor,omitempty"`
	// Balance is the load balancing policy (loadgen.Balances).
	Balance string `toml:"balance" json:"balance,omitempty"`
	// Time is a replica job's Slurm time limit (default: the longest
	// task's duration twice, plus ready_timeout and 2 minutes).
	Time string `toml:"time" json:"time,omitempty"`

	// Replicas, MinReplicas and MaxReplicas, for a deployment without a
	// [slice] (a slice's replicas and autoscaling range come from it).
	Replicas    *int `toml:"replicas" json:"replicas,omitempty"`
	MinReplicas *int `toml:"min_replicas" json:"min_replicas,omitempty"`
	MaxReplicas *int `toml:"max_replicas" json:"max_replicas,omitempty"`

	Autoscaling *AutoscalingSpec `toml:"autoscaling" json:"autoscaling,omitempty"`
}

// AutoscalingSpec is [deployment.autoscaling]: the signal the controller
// watches and how it reacts.
type AutoscalingSpec struct {
	Signal string `toml:"signal" json:"signal"` // p99, inflight or goodput
	// The signal's target: Latency for p99 (default slo.deadline),
	// PerReplica for inflight, Attainment for goodput (default 0.99).
	Latency    duration.Duration `toml:"latency" json:"latency,omitempty"`
	PerReplica float64           `toml:"per_replica" json:"per_replica,omitempty"`
	Attainment float64           `toml:"attainment" json:"attainment,omitempty"`
	// Window the signal is measured over (default 5 intervals, at least
	// one snapshot interval).
	Window duration.Duration `toml:"window" json:"window,omitempty"`
	// The hysteresis band, as ratios of the signal to its target.
	ScaleUpAt   float64 `toml:"scale_up_at" json:"scale_up_at,omitempty"`     // default 1
	ScaleDownAt float64 `toml:"scale_down_at" json:"scale_down_at,omitempty"` // default 0.5
	// Cooldowns (default: up = the window, down = three windows).
	UpCooldown   duration.Duration `toml:"up_cooldown" json:"up_cooldown,omitempty"`
	DownCooldown duration.Duration `toml:"down_cooldown" json:"down_cooldown,omitempty"`
}

// Plan is a deployment resolved for one experiment: what deployment.json in
// the experiment directory holds, all a task needs to run it.
type Plan struct {
	// Server is the server's argv: "gpuorch" first is the gpuorch binary;
	// {host} and {port} are replaced when a replica starts.
	Server []string          `json:"server"`
	Env    map[string]string `json:"env,omitempty"`
	// ReadyPath is GET until 2xx; ReadyAny accepts any HTTP answer.
	ReadyPath    string            `json:"ready_path"`
	ReadyAny     bool              `json:"ready_any,omitempty"`
	ReadyTimeout duration.Duration `json:"ready_timeout"`
	// Executor runs the replicas (local or slurm); set by Finish.
	Executor string `json:"executor,omitempty"`
	Balance  string `json:"balance"`
	Replicas int    `json:"replicas"`
	Scale    Scale  `json:"scale"`
	// Slice is the [slice] every Slurm replica runs in (nil: none).
	Slice *gpuslice.Slice `json:"slice,omitempty"`
	// LocalGPU places every Slurm replica on the node of the task that
	// runs the load (TensorFusion's isLocalGPU; docs/deployments.md).
	LocalGPU bool   `json:"is_local_gpu,omitempty"`
	Time     string `json:"time,omitempty"`
	// Lease: a replica whose task has not renewed its lease for this long
	// stops by itself.
	Lease duration.Duration `json:"lease"`
	// Set by Finish: the gpuorch binary on the nodes and, for Slurm, the
	// replica job script.
	Binary string `json:"binary,omitempty"`
	Script string `json:"script,omitempty"`
}

// Scale is the resolved autoscaling policy, in a form plan files keep
// readable; Policy turns it into the controller's.
type Scale struct {
	Min          int               `json:"min"`
	Max          int               `json:"max"`
	Signal       string            `json:"signal,omitempty"` // "" = no autoscaling
	Target       float64           `json:"target,omitempty"`
	Window       duration.Duration `json:"window,omitempty"`
	Interval     duration.Duration `json:"interval"`
	UpAt         float64           `json:"scale_up_at,omitempty"`
	DownAt       float64           `json:"scale_down_at,omitempty"`
	UpCooldown   duration.Duration `json:"up_cooldown,omitempty"`
	DownCooldown duration.Duration `json:"down_cooldown,omitempty"`
}

// Policy is the controller's view of s.
func (s Scale) Policy() Policy {
	return Policy{Min: s.Min, Max: s.Max, Signal: s.Signal, Target: s.Target, Window: s.Window.D(), Interval: s.Interval.D(),
		UpAt: s.UpAt, DownAt: s.DownAt, UpCooldown: s.UpCooldown.D(), DownCooldown: s.DownCooldown.D()}
}

// Inputs are the parts of an experiment spec a deployment depends on.
type Inputs struct {
	// Slice is the [slice] resolved against its pools file (nil: none);
	// its workload's replicas and autoscaling range are the deployment's.
	Slice *gpuslice.Slice
	// SliceKeys are the [slice] keys written in the spec (for blame).
	SliceKeys []string
	Interval  time.Duration // run.interval (0 = 1s)
	Deadline  time.Duration // slo.deadline
	HasSLO    bool          // some per-request SLO is set (deadline, factor, LLM)
	Protocol  string        // target.protocol
}

// KeyError is a problem with one spec key (a path such as
// ["deployment", "autoscaling", "window"]); the spec reader adds the file
// and line.
type KeyError struct {
	Key []string
	Msg string
}

func (e *KeyError) Error() string { return e.Msg }

func keyErr(key string, format string, args ...any) *KeyError {
	return &KeyError{Key: strings.Split(key, "."), Msg: fmt.Sprintf(format, args...)}
}

// Defaults.
const (
	DefaultReadyTimeout = 5 * time.Minute
	DefaultAttainment   = 0.99
	DefaultWindowTicks  = 5
	DefaultLease        = 30 * time.Second
)

// Executors that can run replicas.
var Executors = []string{"local", "slurm"}

// Resolve checks s against the rest of the spec and resolves it into a
// plan. Errors are *KeyError.
func (s *Spec) Resolve(in Inputs) (*Plan, error) {
	p := &Plan{Env: s.Env, ReadyPath: s.ReadyPath, ReadyTimeout: s.ReadyTimeout, Executor: s.Executor, Balance: s.Balance, Slice: in.Slice, Time: s.Time}
	n := 0
	for _, set := range []bool{s.SimServer != nil, len(s.Command) > 0, s.Image != ""} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return nil, keyErr("deployment", `[deployment] needs exactly one server: sim_server = [ARGS…], command = ["ARGV", …] or image = "server.sif" (got %d)`, n)
	case s.SimServer != nil:
		p.Server = append([]string{"gpuorch", "sim-server", "--listen", "{host}:{port}"}, s.SimServer...)
	case len(s.Command) > 0:
		p.Server = s.Command
	default:
		p.Server = append([]string{"apptainer", "run", "--nv", s.Image}, s.Args...)
	}
	if len(s.Args) > 0 && s.Image == "" {
		return nil, keyErr("deployment.args", "deployment.args are the image's arguments; with sim_server or command, put them there")
	}
	for k := range s.Env {
		if !sbatch.ValidName(k) {
			return nil, keyErr("deployment.env", "deployment.env: %s is not an environment variable name", clip.Quote(k))
		}
	}
	if p.ReadyPath == "" {
		switch in.Protocol {
		case "kserve":
			p.ReadyPath = "/v2/health/ready"
		case "openai", "openai-chat":
			p.ReadyPath = "/v1/models"
		default:
			p.ReadyPath, p.ReadyAny = "/", true
		}
	} else if !strings.HasPrefix(p.ReadyPath, "/") || strings.ContainsAny(p.ReadyPath, " \t\r\n") {
		return nil, keyErr("deployment.ready_path", "deployment.ready_path %s: want a path such as /health", clip.Quote(p.ReadyPath))
	}
	if p.ReadyTimeout < 0 {
		return nil, keyErr("deployment.ready_timeout", "deployment.ready_timeout must not be negative")
	}
	if p.ReadyTimeout == 0 {
		p.ReadyTimeout = duration.Duration(DefaultReadyTimeout)
	}
	if p.Executor != "" && !slices.Contains(Executors, p.Executor) {
		return nil, keyErr("deployment.executor", "deployment.executor %s: want local or slurm", clip.Quote(p.Executor))
	}
	if p.Balance == "" {
		p.Balance = loadgen.BalanceLeastOutstanding
	}
	if !slices.Contains(loadgen.Balances, p.Balance) {
		return nil, keyErr("deployment.balance", "deployment.balance %s: want %s", clip.Quote(p.Balance), strings.Join(loadgen.Balances, " or "))
	}
	interval := in.Interval
	if interval <= 0 {
		interval = time.Second
	}
	p.Scale.Interval = duration.Duration(interval)
	p.Lease = duration.Duration(max(DefaultLease, 10*interval))
	if err := s.resolveScale(p, in); err != nil {
		return nil, err
	}
	if a := s.Autoscaling; a != nil {
		if err := a.resolve(p, in); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// resolveScale sets the replicas and the range, from the slice or from
// [deployment], and checks them.
func (s *Spec) resolveScale(p *Plan, in Inputs) error {
	autoscale := s.Autoscaling != nil
	if sl := in.Slice; sl != nil {
		for _, k := range []struct {
			name string
			set  bool
		}{{"replicas", s.Replicas != nil}, {"min_replicas", s.MinReplicas != nil}, {"max_replicas", s.MaxReplicas != nil}} {
			if k.set {
				return keyErr("deployment."+k.name, "deployment.%s conflicts with [slice], whose workload sets the replicas and their range: set %s in [slice] (or its profile)", k.name, k.name)
			}
		}
		w := sl.Workload
		p.Replicas, p.LocalGPU = w.Replicas, w.IsLocalGPU
		p.Scale.Min, p.Scale.Max = w.Replicas, w.Replicas
		if w.AutoScaling.Enabled {
			p.Scale.Min, p.Scale.Max = w.AutoScaling.MinReplicas, w.AutoScaling.MaxReplicas
			if !autoscale {
				return keyErr(sliceKey(in, "autoscaling"), `autoscaling is on in [slice], but the deployment has no signal to scale by: add [deployment.autoscaling] with signal = "p99" (or %s)`, strings.Join(Signals[1:], ", "))
			}
		} else if autoscale {
			return keyErr("deployment.autoscaling", "[deployment.autoscaling] is set, but autoscaling is off in [slice]: set autoscaling = true, min_replicas and max_replicas there (or in its profile)")
		}
		return nil
	}
	get := func(v *int, def int) int {
		if v == nil {
			return def
		}
		return *v
	}
	if !autoscale && (s.MinReplicas != nil || s.MaxReplicas != nil) {
		key := "deployment.min_replicas"
		if s.MinReplicas == nil {
			key = "deployment.max_replicas"
		}
		return keyErr(key, "min_replicas and max_replicas bound autoscaling: add [deployment.autoscaling] with a signal, or set only replicas")
	}
	p.Replicas = get(s.Replicas, get(s.MinReplicas, 1))
	if p.Replicas < 1 {
		return keyErr("deployment.replicas", "deployment.replicas %d: want at least 1", p.Replicas)
	}
	p.Scale.Min, p.Scale.Max = p.Replicas, p.Replicas
	if !autoscale {
		return nil
	}
	p.Scale.Min, p.Scale.Max = get(s.MinReplicas, 1), get(s.MaxReplicas, p.Replicas)
	switch {
	case p.Scale.Min < 1:
		return keyErr("deployment.min_replicas", "deployment.min_replicas %d: want at least 1", p.Scale.Min)
	case p.Scale.Min > p.Scale.Max:
		key := "deployment.min_replicas"
		if s.MinReplicas == nil {
			key = "deployment.max_replicas"
		}
		return keyErr(key, "deployment.min_replicas %d > deployment.max_replicas %d", p.Scale.Min, p.Scale.Max)
	case p.Replicas < p.Scale.Min || p.Replicas > p.Scale.Max:
		return keyErr("deployment.replicas", "deployment.replicas %d outside [min_replicas, max_replicas] = [%d, %d]", p.Replicas, p.Scale.Min, p.Scale.Max)
	}
	return nil
}

// sliceKey blames a [slice] key when the spec wrote it, else [slice].
func sliceKey(in Inputs, key string) string {
	if slices.Contains(in.SliceKeys, key) {
		return "slice." + key
	}
	return "slice"
}

func (a *AutoscalingSpec) resolve(p *Plan, in Inputs) error {
	sc := &p.Scale
	interval := sc.Interval.D()
	sc.Signal = a.Signal
	set := map[string]bool{"latency": a.Latency != 0, "per_replica": a.PerReplica != 0, "attainment": a.Attainment != 0}
	own := map[string]string{SignalP99: "latency", SignalInFlight: "per_replica", SignalGoodput: "attainment"}
	switch a.Signal {
	case "":
		return keyErr("deployment.autoscaling", `autoscaling needs a signal: signal = "p99", "inflight" or "goodput"`)
	case SignalP99:
		sc.Target = a.Latency.D().Seconds()
		if a.Latency == 0 {
			if in.Deadline <= 0 {
				return keyErr("deployment.autoscaling.signal", `signal "p99" needs a latency target: set deployment.autoscaling.latency = "250ms" or slo.deadline`)
			}
			sc.Target = in.Deadline.Seconds()
		}
	case SignalInFlight:
		if a.PerReplica <= 0 {
			return keyErr("deployment.autoscaling.signal", `signal "inflight" needs a target: set deployment.autoscaling.per_replica = 4 (requests in flight per replica)`)
		}
		sc.Target = a.PerReplica
	case SignalGoodput:
		if !in.HasSLO {
			return keyErr("deployment.autoscaling.signal", `signal "goodput" counts requests that miss their SLO: set slo.deadline (or slo.factor, slo.ttft, …)`)
		}
		sc.Target = a.Attainment
		if a.Attainment == 0 {
			sc.Target = DefaultAttainment
		}
	default:
		return keyErr("deployment.autoscaling.signal", "deployment.autoscaling.signal %s: want one of %s", clip.Quote(a.Signal), strings.Join(Signals, ", "))
	}
	for k, isSet := range set {
		if isSet && own[a.Signal] != k {
			return keyErr("deployment.autoscaling."+k, "deployment.autoscaling.%s is a target of another signal than %s", k, clip.Quote(a.Signal))
		}
	}
	if sc.Target <= 0 || (a.Signal == SignalGoodput && sc.Target >= 1) {
		return keyErr("deployment.autoscaling."+own[a.Signal], "deployment.autoscaling.%s: want a value above 0%s", own[a.Signal], map[bool]string{true: " and below 1"}[a.Signal == SignalGoodput])
	}
	sc.Window = a.Window
	if sc.Window == 0 {
		sc.Window = duration.Duration(DefaultWindowTicks * interval)
	}
	if sc.Window.D() < interval {
		return keyErr("deployment.autoscaling.window", "deployment.autoscaling.window %s is shorter than the snapshot interval %s (run.interval): the window must hold at least one interval", sc.Window, interval)
	}
	sc.UpAt, sc.DownAt = a.ScaleUpAt, a.ScaleDownAt
	if sc.UpAt == 0 {
		sc.UpAt = 1
	}
	if sc.DownAt == 0 {
		sc.DownAt = min(0.5, sc.UpAt/2)
	}
	if sc.UpAt <= 0 || sc.DownAt <= 0 || sc.DownAt >= sc.UpAt {
		return keyErr("deployment.autoscaling.scale_down_at", "want 0 < scale_down_at (%g) < scale_up_at (%g): the band between them is the hysteresis", sc.DownAt, sc.UpAt)
	}
	sc.UpCooldown, sc.DownCooldown = a.UpCooldown, a.DownCooldown
	if sc.UpCooldown == 0 {
		sc.UpCooldown = sc.Window
	}
	if sc.DownCooldown == 0 {
		sc.DownCooldown = 3 * sc.Window
	}
	if sc.UpCooldown < 0 || sc.DownCooldown < 0 {
		return keyErr("deployment.autoscaling", "cooldowns must not be negative")
	}
	return nil
}

// Finish completes the plan for the experiment being created: the executor
// that runs the replicas (its own, else the experiment's), the gpuorch
// binary and, for Slurm, the replica script. A replica on the load's node
// (is_local_gpu) needs the load to run in a Slurm job.
func (p *Plan) Finish(taskExecutor, binary, script string) error {
	if p.Executor == "" {
		p.Executor = taskExecutor
	}
	if p.LocalGPU && p.Executor == "slurm" && taskExecutor != "slurm" {
		return fmt.Errorf("is_local_gpu puts every replica on the node of the task that runs the load, and the %s executor runs it outside Slurm: run with the slurm executor, or set is_local_gpu = false in [slice]", taskExecutor)
	}
	p.Binary, p.Script = binary, script
	return nil
}

// TargetURL is the target URL in the manifests of a deployment's tasks: a
// placeholder, which each replica's own address replaces; the target tag of
// their points is "deployment".
const TargetURL = "http://deployment"
