package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// Executor runs an experiment's tasks somewhere: as local processes (the
// embedded default, "local") or as a Slurm array job ("slurm").
//
// The contract, for implementers:
//   - Task i runs `<gpuorch> loadgen run --manifest tasks/<i>/manifest.json`
//     with the experiment directory as working directory and the
//     environment of a Slurm array task (SLURM_ARRAY_TASK_ID=i, …,
//     GPUORCH_EXPERIMENT_DIR); its stdout and stderr go to tasks/<i>/log.
//     The command exits 0 (completed), 1 (failed), 3 (target unreachable) or
//     130 (interrupted) — see the TaskExit constants.
//   - Every state change goes through exp.Update / exp.UpdateTask, which
//     persist state.json atomically before returning, so that a killed gpuorch
//     loses nothing and `status` can be asked at any time.
//   - Execute has already appended a Submission for the indices (and set them
//     pending) before Submit is called; an executor that gets a batch job id
//     stores it in that last Submission and in each task's JobID.
//   - Submit returns an error wrapping errkind.ErrUnavailable when the
//     service it needs (slurmctld) cannot be reached, so the CLI exits 3 and the
//     experiment is saved as not-submitted, resumable with `run --resume`.
type Executor interface {
	// Name is the registry name ("local", "slurm").
	Name() string
	// Submit runs (local: synchronously, returning when every task has
	// ended or ctx is cancelled) or submits (slurm: returning once the batch
	// system accepted the job) the given tasks, sorted ascending. On ctx
	// cancellation a synchronous executor interrupts running tasks, waits for
	// them to write their partial results, marks them interrupted and leaves
	// tasks it has not started pending.
	Submit(ctx context.Context, exp *Experiment, indices []int) error
	// Refresh brings task states up to date from the executor's view
	// (squeue/sacct for slurm). It must be cheap when nothing changed.
	Refresh(ctx context.Context, exp *Experiment) error
	// Cancel stops the given tasks (nil = every unfinished task) and marks
	// them cancelled.
	Cancel(ctx context.Context, exp *Experiment, indices []int) error
}

// ExecutorOptions configure an executor built by NewExecutor.
type ExecutorOptions struct {
	// Binary is the gpuorch binary tasks run; "" means this process's
	// executable (os.Executable). Tests inject a fake task binary here.
	Binary string
	// Parallel caps concurrently running tasks for the local executor
	// (0 = the plan's run.parallel, itself defaulting to 1).
	Parallel int
	// Grace is how long an interrupted task may take to write its partial
	// results before it is killed (0 = 30s).
	Grace time.Duration
	// Force, when closed, ends the grace period at once: interrupted tasks
	// still running are killed (the CLI closes it on a second Ctrl-C).
	Force  <-chan struct{}
	Logger *slog.Logger
}

// ExecutorFactory builds an executor.
type ExecutorFactory func(ExecutorOptions) (Executor, error)

var (
	registryMu sync.Mutex
	registry   = map[string]ExecutorFactory{}
)

// RegisterExecutor makes an executor available by name. Executors register
// from init functions in this package (local.go, slurm*.go).
func RegisterExecutor(name string, f ExecutorFactory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("orchestrator: executor " + name + " registered twice")
	}
	registry[name] = f
}

// ExecutorNames lists the registered executors, sorted.
func ExecutorNames() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NewExecutor builds the named executor.
func NewExecutor(name string, opts ExecutorOptions) (Executor, error) {
	registryMu.Lock()
	f, ok := registry[name]
	registryMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown executor %q (have: %s)", name, strings.Join(ExecutorNames(), ", "))
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return f(opts)
}

// Execute hands the given tasks (nil = every task not completed; an empty
// slice = none, only the experiment state is recomputed) to ex:
// it marks them pending, records a Submission, calls Submit, and settles the
// experiment state: completed, failed or interrupted when the executor ran
// them synchronously (cancelled if some were cancelled meanwhile); submitted
// or running when it handed them to a batch system; not-submitted when
// submission failed before any task started. This is what `gpuorch run` and
// `retry` do (`run --resume` goes through Resume).
func Execute(ctx context.Context, exp *Experiment, ex Executor, indices []int) error {
	if indices == nil {
		st := exp.Snapshot()
		indices = st.Incomplete()
	}
	indices = append([]int(nil), indices...)
	sort.Ints(indices)
	if len(indices) == 0 {
		return exp.Update(func(s *State) error {
			s.State = Derive(s.State, s.Tasks)
			return nil
		})
	}
	err := exp.Update(func(s *State) error {
		for _, i := range indices {
			if i < 0 || i >= len(s.Tasks) {
				return fmt.Errorf("experiment %s has no task %d", s.ID, i)
			}
			t := &s.Tasks[i]
			*t = TaskStatus{Index: t.Index, Name: t.Name, State: TaskPending, Log: t.Log, Attempts: t.Attempts}
		}
		s.Executor = ex.Name()
		s.Error = ""
		s.Submissions = append(s.Submissions, Submission{Time: time.Now().UTC(), Indices: indices})
		return nil
	})
	if err != nil {
		return err
	}
	subErr := ex.Submit(ctx, exp, indices)
	uerr := exp.Update(func(s *State) error {
		started := false
		for _, i := range indices {
			if s.Tasks[i].State != TaskPending || s.Tasks[i].JobID != "" {
				started = true
			}
		}
		switch {
		case ctx.Err() != nil:
			s.State = Derive(ExpInterrupted, s.Tasks)
		case subErr != nil && !started:
			s.State = ExpNotSubmitted
			s.Error = subErr.Error()
		case subErr != nil:
			s.State = Derive(ExpFailed, s.Tasks)
			s.Error = subErr.Error()
		default:
			s.State = Derive(ExpSubmitted, s.Tasks)
		}
		return nil
	})
	if subErr != nil {
		return subErr
	}
	return uerr
}

// ResumeIndices lists the tasks a resume runs: every task not completed,
// except those the executor still has — pending or running with a job id
// (queued or running in Slurm, or running under another local gpuorch) —
// which would otherwise run twice. Call it on a state just refreshed.
func ResumeIndices(st *State) []int {
	idx := []int{}
	for _, t := range st.Tasks {
		switch {
		case t.State == TaskCompleted:
		case (t.State == TaskPending || t.State == TaskRunning) && t.JobID != "":
		default:
			idx = append(idx, t.Index)
		}
	}
	return idx
}

// Resume is `gpuorch run --resume`: it brings the experiment's state up to
// date from the executor (Refresh), then executes the ResumeIndices — the
// tasks not completed and not still queued or running. It returns the
// indices it handed to the executor.
func Resume(ctx context.Context, exp *Experiment, ex Executor) ([]int, error) {
	if err := ex.Refresh(ctx, exp); err != nil {
		return nil, fmt.Errorf("bring experiment %s up to date before resuming: %w", exp.ID(), err)
	}
	st := exp.Snapshot()
	idx := ResumeIndices(&st)
	return idx, Execute(ctx, exp, ex, idx)
}
