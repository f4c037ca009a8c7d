package llmbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/perfmodel"
	"github.com/gpuorch/gpuorch/sbatch"
)

// Inventory lists a cluster's nodes: "local" is this machine (also known as
// "localhost" and "local"); another name must be the Slurm cluster's.
func Inventory(ctx context.Context, cluster string) ([]gpuslice.Node, error) {
	if cluster == "local" {
		host, _ := os.Hostname()
		var out []gpuslice.Node
		for _, h := range []string{host, "localhost", "local"} {
			out = append(out, gpuslice.Node{Hostname: h, Status: "Ready", Devices: []gpuslice.NodeDevice{gpuslice.CPUDevice()}})
		}
		return out, nil
	}
	name, err := (&sbatch.Client{}).ClusterName(ctx)
	if err != nil {
		return nil, err
	}
	if name != cluster {
		return nil, fmt.Errorf("unknown cluster (this Slurm cluster is %q; or use \"local\")", name)
	}
	return gpuslice.ClusterNodes(ctx, nil, nil)
}

// DefaultEnv is the world a spec is checked against: the real inventory,
// the registered clusters under $GPUORCH_HOME and the user's credential
// store.
func DefaultEnv() Env {
	creds := DefaultCredentials()
	return Env{Inventory: Inventory, Credential: creds.Get, Cluster: DefaultRegistry().ResolveCluster}
}

// DefaultRegistry is the registries under $GPUORCH_HOME, checking clusters
// against the real inventory.
func DefaultRegistry() Registry { return Registry{Home: orchestrator.Home(), Inventory: Inventory} }

// specError gives a spec problem its kind: bad input. A service that could
// not be asked (Slurm for the inventory) already is errkind.ErrUnavailable.
func specError(err error) error {
	var se *orchestrator.SpecError
	if errors.As(err, &se) {
		return errkind.Invalid(err)
	}
	return err
}

// ResolveOptions override what a spec says, from the command line.
type ResolveOptions struct {
	Executor   string // "" keeps the spec's choice
	PerRequest bool   // also write per-request rows
	// SimulateOnly skips what only running needs (the server program or
	// image and the credential).
	SimulateOnly bool
}

// Planned is a spec resolved against the world and planned into tasks,
// with the prediction when the spec allows one.
type Planned struct {
	Resolved *Resolved
	Plan     *orchestrator.Plan
	Task     *TaskInfo
}

// Resolve checks spec against the world (env) and plans it. A prediction is
// made whenever the spec has what it needs.
func Resolve(ctx context.Context, spec *Spec, env Env, o ResolveOptions) (*Planned, error) {
	if o.PerRequest {
		spec.Run.PerRequest = true
	}
	env.SimulateOnly = o.SimulateOnly
	r, err := spec.Validate(ctx, env)
	if err != nil {
		return nil, specError(err)
	}
	if o.Executor != "" {
		r.Executor = o.Executor
	}
	plan, bt, err := r.Plan()
	if err != nil {
		return nil, specError(err)
	}
	if preds, err := spec.Simulate(r); err == nil {
		bt.Predictions = preds
	}
	return &Planned{Resolved: r, Plan: plan, Task: bt}, nil
}

// Predict is the roofline prediction per level, or why there is none.
func (p *Planned) Predict() ([]perfmodel.Prediction, error) {
	preds, err := p.Resolved.Spec.Simulate(p.Resolved)
	return preds, specError(err)
}

// Describe is what `bench plan` prints: everything that will happen.
func (p *Planned) Describe() string { return p.Resolved.Describe(p.Plan, p.Task) }

// PrepareCloud puts a cloud model's secret into this process's environment
// (the tasks inherit it) and checks that the endpoint accepts it.
func PrepareCloud(ctx context.Context, m *Model) error {
	if !m.Cloud() {
		return nil
	}
	secret := ""
	if m.Credential != "" {
		var err error
		if secret, err = DefaultCredentials().Get(m.Credential); err != nil {
			return errkind.Invalid(err)
		}
		// The only way the secret leaves this process: the environment of
		// the tasks (inherited by local tasks and by sbatch's default
		// --export=ALL), under the name the manifest names.
		if err := os.Setenv(CredentialEnv(m.Credential), secret); err != nil {
			return err
		}
	}
	return specError(CheckEndpoint(ctx, m.URL, secret))
}

// Started is a benchmark experiment about to run, and how.
type Started struct {
	Experiment *orchestrator.Experiment
	Executor   orchestrator.Executor
}

// Start readies a cloud endpoint (secret, readiness check), creates the
// benchmark's experiment under home and builds its executor, which runs the
// experiment's wrapper (so that each task starts its model server). binary
// is the gpuorch the wrapper calls ("" = this one).
func Start(ctx context.Context, home string, p *Planned, binary string) (*Started, error) {
	if err := PrepareCloud(ctx, &p.Resolved.Spec.Model); err != nil {
		return nil, err
	}
	if binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the gpuorch binary: %w", err)
		}
		binary = exe
	}
	if abs, err := filepath.Abs(binary); err == nil {
		binary = abs
	}
	// Build the executor first so a bad --executor leaves nothing behind.
	if _, err := orchestrator.NewExecutor(p.Plan.Run.Executor, orchestrator.ExecutorOptions{}); err != nil {
		return nil, errkind.Invalidf("bench run: %w", err)
	}
	exp, err := Create(home, p.Resolved.Spec, p.Plan, p.Task, binary)
	if err != nil {
		return nil, err
	}
	return started(exp, p.Plan.Run.Executor)
}

// Reopen opens benchmark experiment id under home to run what did not
// complete, with executor ("" = the one it ran with).
func Reopen(ctx context.Context, home, id, executor string) (*Started, error) {
	exp, err := orchestrator.Open(home, id)
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	spec, err := LoadSpec(layout.Experiment(exp.Dir).BenchSpec())
	if err != nil {
		return nil, errkind.Invalidf("%s is not a benchmark experiment: %w", exp.ID(), err)
	}
	if err := PrepareCloud(ctx, &spec.Model); err != nil {
		return nil, err
	}
	if executor == "" {
		executor = exp.Snapshot().Executor
	}
	return started(exp, executor)
}

func started(exp *orchestrator.Experiment, executor string) (*Started, error) {
	wrapper, err := filepath.Abs(layout.Experiment(exp.Dir).BenchWrapper())
	if err != nil {
		return nil, err
	}
	ex, err := orchestrator.NewExecutor(executor, orchestrator.ExecutorOptions{Binary: wrapper})
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	return &Started{Experiment: exp, Executor: ex}, nil
}
