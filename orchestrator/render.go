package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
)

// Rendered is an experiment written as one Slurm array script and not
// submitted.
type Rendered struct {
	Experiment *Experiment
	Script     string   // the script's text
	Paths      []string // where it was written: slurm/array.sbatch, then outDir's copy
	Tasks      int
}

// RenderSlurm plans spec for the Slurm executor, creates its experiment
// (with the manifests the script reads) and writes the array script into the
// experiment directory and, when outDir is set, to outDir/<id>.sbatch.
// binary is the gpuorch on the compute nodes ("": the spec's slurm.binary,
// else this binary). A spec that cannot render creates nothing; its errors
// are of kind errkind.ErrInvalid.
func RenderSlurm(spec *Spec, binary, outDir string) (*Rendered, error) {
	plan, err := spec.Plan()
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	plan.Run.Executor = "slurm"
	if binary == "" {
		binary = plan.Slurm.Binary
	}
	if binary == "" {
		if binary, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	if binary, err = filepath.Abs(binary); err != nil {
		return nil, err
	}
	indices := make([]int, len(plan.Tasks))
	for i := range indices {
		indices[i] = i
	}
	// Validate before creating anything.
	if _, err := SlurmJob(plan, "check", plan.HomeDir(), binary, indices); err != nil {
		return nil, errkind.Invalid(err)
	}
	exp, err := Create(plan.HomeDir(), spec, plan, "slurm")
	if err != nil {
		return nil, err
	}
	if err := writeDeployment(exp, "slurm", binary); err != nil {
		return nil, err
	}
	job, err := SlurmJob(exp.Plan, exp.ID(), exp.Dir, binary, indices)
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	script, err := job.Render()
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	r := &Rendered{Experiment: exp, Script: script, Tasks: len(indices), Paths: []string{layout.Experiment(exp.Dir).SlurmScript()}}
	if outDir != "" {
		r.Paths = append(r.Paths, filepath.Join(outDir, exp.ID()+".sbatch"))
	}
	for _, p := range r.Paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(p, []byte(script), 0o644); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// ExecutorName is the executor exp runs with: the one it was run with, else
// its plan's, else local.
func (e *Experiment) ExecutorName() string {
	if name := e.Snapshot().Executor; name != "" {
		return name
	}
	if e.Plan.Run.Executor != "" {
		return e.Plan.Run.Executor
	}
	return "local"
}

// OpenWith opens experiment id under home with its executor (ExecutorName);
// errors are of kind errkind.ErrInvalid.
func OpenWith(home, id string, o ExecutorOptions) (*Experiment, Executor, error) {
	exp, err := Open(home, id)
	if err != nil {
		return nil, nil, errkind.Invalid(err)
	}
	ex, err := NewExecutor(exp.ExecutorName(), o)
	if err != nil {
		return nil, nil, errkind.Invalid(err)
	}
	return exp, ex, nil
}

// Refresh re-reads state.json (another gpuorch process, a local run or a
// cancel, may have written it) and brings it up to date from the executor.
func Refresh(ctx context.Context, exp *Experiment, ex Executor) error {
	if err := exp.Reload(); err != nil {
		return err
	}
	return ex.Refresh(ctx, exp)
}

// Watch refreshes exp from its executor every interval until every task has
// ended, calling show with the state before each wait. An unreachable Slurm
// does not stop it (slurmctld may come back): it returns the last refresh's
// errkind.ErrUnavailable error as lastUnavailable, nil if the last refresh
// worked (unavailable is what the caller's own first refresh returned). Other
// refresh errors end the watch; ctx's end is an errkind.ErrInterrupted.
func Watch(ctx context.Context, exp *Experiment, ex Executor, interval time.Duration, unavailable error, show func(State)) (lastUnavailable, err error) {
	for !AllEnded(exp.Snapshot()) {
		show(exp.Snapshot())
		select {
		case <-ctx.Done():
			return unavailable, errkind.Reported(errkind.Interrupted(ctx.Err()))
		case <-time.After(interval):
		}
		if err := Refresh(ctx, exp, ex); err != nil {
			if !errors.Is(err, errkind.ErrUnavailable) {
				return err, fmt.Errorf("status: %w", err)
			}
			unavailable = err
			continue
		}
		unavailable = nil
	}
	return unavailable, nil
}

// ResumePlan is what `run --resume` would run now: the tasks that did not
// complete and are not still queued or running, after asking the executor
// (ex may be nil). A failed refresh is returned beside the plan, which then
// goes by the saved state.
func ResumePlan(ctx context.Context, exp *Experiment, ex Executor) (*Plan, error) {
	var refreshErr error
	if ex != nil {
		refreshErr = ex.Refresh(ctx, exp)
	}
	st := exp.Snapshot()
	p := *exp.Plan
	p.Tasks = nil
	for _, i := range ResumeIndices(&st) {
		p.Tasks = append(p.Tasks, exp.Plan.Tasks[i])
	}
	return &p, refreshErr
}
