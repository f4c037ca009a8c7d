package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
)

func init() {
	RegisterExecutor("local", func(o ExecutorOptions) (Executor, error) { return NewLocal(o) })
}

// Local runs tasks as processes on this machine, Parallel at a time, each
// with the environment a Slurm array task would see, so a task behaves the
// same under both executors.
type Local struct {
	binary   string
	parallel int
	grace    time.Duration
	force    <-chan struct{}
	log      *slog.Logger

	mu      sync.Mutex
	cancels map[string]map[int]context.CancelCauseFunc // experiment dir → task → cancel
}

// NewLocal builds the local executor.
func NewLocal(o ExecutorOptions) (*Local, error) {
	bin := o.Binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("local executor: find the gpuorch binary: %w", err)
		}
		bin = exe
	}
	if !filepath.IsAbs(bin) {
		if abs, err := filepath.Abs(bin); err == nil {
			bin = abs
		}
	}
	g := o.Grace
	if g <= 0 {
		g = 30 * time.Second
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.Default()
	}
	return &Local{binary: bin, parallel: o.Parallel, grace: g, force: o.Force, log: lg, cancels: map[string]map[int]context.CancelCauseFunc{}}, nil
}

func (l *Local) Name() string { return "local" }

// Cause of a task context's cancellation.
var (
	errCancelled = errors.New("cancelled")
	errTimeout   = errors.New("task timeout")
)

// Submit runs the tasks and returns when all have ended, or when ctx is
// cancelled and the running ones have been interrupted.
func (l *Local) Submit(ctx context.Context, exp *Experiment, indices []int) error {
	if len(indices) == 0 {
		return nil
	}
	if sl := exp.Plan.Slurm.Slice; sl != nil {
		// Shards and MPS limits are Slurm's to grant; on one machine there is
		// nothing to enforce them against.
		l.log.Warn("[slice] applies to the Slurm executor only; running the tasks without it", "gres", sl.Gres, "partition", sl.Partition)
	}
	par := l.parallel
	if par <= 0 {
		par = exp.Plan.Run.Parallel
	}
	if par <= 0 {
		par = 1
	}
	dir, err := filepath.Abs(exp.Dir)
	if err != nil {
		return fmt.Errorf("local executor: %w", err)
	}
	host, _ := os.Hostname()
	// A Slurm-like array job id: numeric, unique enough on one machine.
	jobID := strconv.Itoa(os.Getpid())
	minIdx, maxIdx := indices[0], indices[len(indices)-1]
	base := append(os.Environ(),
		"SLURM_ARRAY_JOB_ID="+jobID,
		"SLURM_ARRAY_TASK_COUNT="+strconv.Itoa(len(indices)),
		"SLURM_ARRAY_TASK_MIN="+strconv.Itoa(minIdx),
		"SLURM_ARRAY_TASK_MAX="+strconv.Itoa(maxIdx),
		"SLURM_JOB_NAME="+exp.ID(),
		"SLURM_SUBMIT_DIR="+dir,
		"GPUORCH_EXPERIMENT_DIR="+dir,
	)
	base = append(base, exp.Plan.TaskEnv()...)
	if err := exp.Update(func(s *State) error {
		s.State = ExpRunning
		if n := len(s.Submissions); n > 0 {
			s.Submissions[n-1].JobID = jobID
		}
		return nil
	}); err != nil {
		return err
	}

	// Another gpuorch process (`gpuorch cancel`) may cancel tasks by writing
	// state.json: watch it, and interrupt such tasks running here.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go l.watchCancels(watchCtx, exp)

	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	for _, i := range indices {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break // tasks not started stay pending, for --resume
		}
		if l.isCancelled(exp, i) {
			<-sem
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			env := append(base[:len(base):len(base)],
				"SLURM_ARRAY_TASK_ID="+strconv.Itoa(i),
				"SLURM_JOB_ID="+jobID+strconv.Itoa(100000 + i)[1:],
				"SLURMD_NODENAME="+host,
			)
			if err := l.runTask(ctx, exp, dir, i, jobID, host, env); err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	return firstErr
}

// isCancelled reads state.json afresh: a task cancelled by another gpuorch
// process must not start.
func (l *Local) isCancelled(exp *Experiment, i int) bool {
	st, err := readState(exp.Dir)
	if err != nil {
		l.log.Warn("read experiment state", "experiment", exp.ID(), "err", err)
		st = exp.Snapshot()
	}
	return i < len(st.Tasks) && st.Tasks[i].State == TaskCancelled
}

// cancelPoll is how often a local run looks for cancellations made by
// another gpuorch process.
const cancelPoll = 200 * time.Millisecond

// watchCancels interrupts, with errCancelled, the tasks this process runs
// that state.json says were cancelled (by `gpuorch cancel` in another
// process), until ctx ends. It re-reads state.json only when it was replaced.
func (l *Local) watchCancels(ctx context.Context, exp *Experiment) {
	path := layout.Experiment(exp.Dir).State()
	var last os.FileInfo
	tick := time.NewTicker(cancelPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Every save renames a new file over state.json (a new inode, though
		// a freed one may come back; hence the time and size too).
		fi, err := os.Stat(path)
		if err != nil || (last != nil && os.SameFile(fi, last) && fi.ModTime().Equal(last.ModTime()) && fi.Size() == last.Size()) {
			continue
		}
		last = fi
		st, err := readState(exp.Dir)
		if err != nil {
			continue
		}
		l.mu.Lock()
		for i, cancel := range l.cancels[exp.Dir] {
			if i < len(st.Tasks) && st.Tasks[i].State == TaskCancelled {
				cancel(errCancelled)
			}
		}
		l.mu.Unlock()
	}
}

// runTask runs one task to its end and records the outcome. It returns an
// error only when gpuorch itself could not do its part (write state, start
// the process); a task that fails is a state, not an error.
func (l *Local) runTask(ctx context.Context, exp *Experiment, dir string, i int, jobID, host string, env []string) error {
	logf, err := os.OpenFile(filepath.Join(dir, LogPath(i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return l.fail(exp, i, fmt.Errorf("open task log: %w", err))
	}
	defer logf.Close()

	tctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	l.track(exp, i, cancel)
	defer l.untrack(exp, i)
	stop := context.AfterFunc(ctx, func() { cancel(context.Canceled) })
	defer stop()
	if to := exp.Plan.Run.TaskTimeout.D(); to > 0 {
		t := time.AfterFunc(to, func() { cancel(errTimeout) })
		defer t.Stop()
	}

	proc, err := l.start(exp, dir, i, env, logf)
	if err != nil {
		return l.fail(exp, i, err)
	}
	start := time.Now().UTC()
	if err := exp.UpdateTask(i, func(t *TaskStatus) {
		if t.State == TaskCancelled {
			// Cancelled by another process since isCancelled looked:
			// record the process, and stop it at once.
			cancel(errCancelled)
		} else {
			t.State = TaskRunning
			t.Error = ""
		}
		t.Start = &start
		t.End = nil
		t.ExitCode = nil
		t.PID = proc.pgid
		t.Runner = os.Getpid()
		t.Node = host
		t.JobID = jobID + "_" + strconv.Itoa(i)
		t.Attempts++
	}); err != nil {
		l.log.Error("save state", "experiment", exp.ID(), "task", i, "err", err)
	}
	l.log.Debug("task started", "experiment", exp.ID(), "task", i, "pid", proc.pgid)

	done := make(chan int, 1)
	go func() { done <- proc.wait() }()
	var code int
	select {
	case code = <-done:
	case <-tctx.Done():
		pgid := proc.pgid
		_ = syscall.Kill(-pgid, syscall.SIGINT)
		grace := time.NewTimer(l.grace)
		defer grace.Stop()
		select {
		case code = <-done:
		case <-grace.C:
			l.log.Warn("task did not stop after SIGINT; killing it", "experiment", exp.ID(), "task", i, "grace", l.grace)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			code = <-done
		case <-l.force:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			code = <-done
		}
	}
	end := time.Now().UTC()
	cause := context.Cause(tctx)
	if tctx.Err() == nil {
		cause = nil
	}
	state, msg := classify(code, cause)
	if msg != "" {
		msg = shardedFailure(exp.Plan, dir, i, start, msg) + "; see " + LogPath(i)
	}
	l.log.Debug("task ended", "experiment", exp.ID(), "task", i, "exit", code, "state", state)
	return exp.UpdateTask(i, func(t *TaskStatus) {
		if t.State == TaskCancelled && state != TaskCompleted {
			// Cancelled by another gpuorch process (which may have
			// signalled the task itself): it stays cancelled.
			state, msg = TaskCancelled, "cancelled"
		}
		t.State = state
		t.End = &end
		c := code
		t.ExitCode = &c
		t.Error = msg
	})
}

// classify maps a task's exit code (and why, if at all, gpuorch stopped it)
// onto a task state and a message.
func classify(code int, cause error) (TaskState, string) {
	switch {
	case errors.Is(cause, errTimeout):
		return TaskTimeout, "exceeded run.task_timeout"
	case errors.Is(cause, errCancelled):
		return TaskCancelled, "cancelled"
	case code == TaskExitCompleted:
		return TaskCompleted, ""
	case cause != nil || code == TaskExitInterrupted:
		return TaskInterrupted, "interrupted"
	case code == TaskExitUnreachable:
		return TaskFailed, "target unreachable (exit 3)"
	case code < 0:
		return TaskFailed, "killed by a signal"
	default:
		return TaskFailed, fmt.Sprintf("exit code %d", code)
	}
}

func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		return -1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		if ws.Signal() == syscall.SIGINT {
			return TaskExitInterrupted
		}
		return -1
	}
	return cmd.ProcessState.ExitCode()
}

func (l *Local) fail(exp *Experiment, i int, err error) error {
	now := time.Now().UTC()
	if uerr := exp.UpdateTask(i, func(t *TaskStatus) {
		t.State = TaskFailed
		t.End = &now
		t.Error = err.Error()
	}); uerr != nil {
		return errors.Join(err, uerr)
	}
	return err
}

func (l *Local) track(exp *Experiment, i int, c context.CancelCauseFunc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.cancels[exp.Dir]
	if m == nil {
		m = map[int]context.CancelCauseFunc{}
		l.cancels[exp.Dir] = m
	}
	m[i] = c
}

func (l *Local) untrack(exp *Experiment, i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.cancels[exp.Dir], i)
}

// Refresh settles tasks that claim to run on this host but whose process is
// gone while the gpuorch that started them is gone too (it was killed): a
// task's process runs in its own process group and may well have finished
// on its own since, so its summary.json, when this attempt wrote one, says
// how it ended; a task without one did not finish and is marked
// interrupted, so that --resume runs it again.
func (l *Local) Refresh(ctx context.Context, exp *Experiment) error {
	host, _ := os.Hostname()
	l.mu.Lock()
	mine := l.cancels[exp.Dir]
	live := map[int]bool{}
	for i := range mine {
		live[i] = true
	}
	l.mu.Unlock()
	return exp.Update(func(s *State) error {
		for k := range s.Tasks {
			t := &s.Tasks[k]
			if t.State != TaskRunning || live[t.Index] || t.Node != host || t.PID <= 0 {
				continue
			}
			if alive(t.PID) || (t.Runner > 0 && alive(t.Runner)) {
				continue // still running, or its gpuorch is about to record its end
			}
			if sum, ok := attemptSummary(exp.Dir, t); ok {
				end := sum.Ended.UTC()
				t.End = &end
				t.State, t.Error = summaryState(sum)
				continue
			}
			now := time.Now().UTC()
			t.State = TaskInterrupted
			t.End = &now
			t.Error = "its gpuorch process went away while it ran"
		}
		s.State = Derive(s.State, s.Tasks)
		if s.State == ExpRunning && !anyRunning(s.Tasks) {
			s.State = ExpInterrupted
		}
		return nil
	})
}

// attemptSummary reads the summary.json that task t's current attempt
// wrote when it ended; ok is false when there is none, or only an earlier
// attempt's (ended before this one started).
func attemptSummary(dir string, t *TaskStatus) (loadgen.Summary, bool) {
	var sum loadgen.Summary
	if t.Start == nil || readJSON(filepath.Join(dir, SummaryPath(t.Index)), &sum) != nil {
		return sum, false
	}
	return sum, !sum.Ended.IsZero() && !sum.Ended.Before(*t.Start)
}

// summaryState is the task state a run's summary stands for, with the
// message of a failure. Its exit code was seen by nobody, so it is left
// unset.
func summaryState(sum loadgen.Summary) (TaskState, string) {
	const how = " (its gpuorch process went away; state from its summary.json)"
	switch sum.Status {
	case loadgen.StatusCompleted:
		return TaskCompleted, ""
	case loadgen.StatusFailed:
		msg := "failed"
		if sum.Error != "" {
			msg = clip.String(sum.Error)
		}
		return TaskFailed, msg + how
	}
	return TaskInterrupted, "interrupted" + how
}

// alive reports whether process pid runs (EPERM: it does, as another
// user's). A zombie does not: it has ended, and with its parent gone
// nobody may reap it (PID 1 of a container need not).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no /proc: kill's answer stands
	}
	// pid (comm) state …: comm may hold ')' and blanks, so look after the last ')'.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return false
	}
	return true
}

func anyRunning(ts []TaskStatus) bool {
	for _, t := range ts {
		if t.State == TaskRunning {
			return true
		}
	}
	return false
}

// Cancel stops the given tasks (nil = all unfinished) and marks them
// cancelled in state.json, under its lock: pending ones will not start (the
// running gpuorch re-reads state.json before starting each task); running
// ones of this process are interrupted; running ones of another gpuorch
// process are interrupted by that process, which watches state.json for
// cancellations (so its grace period and kill apply) — or, when that process
// is gone, by a SIGINT sent here to the task's process group.
func (l *Local) Cancel(ctx context.Context, exp *Experiment, indices []int) error {
	host, _ := os.Hostname()
	want := map[int]bool{}
	for _, i := range indices {
		want[i] = true
	}
	l.mu.Lock()
	mine := map[int]context.CancelCauseFunc{}
	for i, c := range l.cancels[exp.Dir] {
		mine[i] = c
	}
	l.mu.Unlock()
	var toSignal []int
	err := exp.Update(func(s *State) error {
		now := time.Now().UTC()
		for k := range s.Tasks {
			t := &s.Tasks[k]
			if indices != nil && !want[t.Index] {
				continue
			}
			switch {
			case t.State == TaskPending:
				t.State = TaskCancelled
				t.End = &now
				t.Error = "cancelled before it started"
			case t.State == TaskRunning && mine[t.Index] != nil:
				mine[t.Index](errCancelled)
			case t.State == TaskRunning:
				t.State = TaskCancelled
				t.Error = "cancelled"
				if t.Node == host && t.PID > 0 && (t.Runner <= 0 || !alive(t.Runner)) {
					// Nobody else will stop it.
					toSignal = append(toSignal, t.PID)
					t.End = &now
				}
			}
		}
		s.State = Derive(s.State, s.Tasks)
		return nil
	})
	for _, pid := range toSignal {
		_ = syscall.Kill(-pid, syscall.SIGINT)
	}
	return err
}
