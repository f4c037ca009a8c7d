package orchestrator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"golang.org/x/sys/unix"
)

// ExperimentState is the state of a whole experiment.
type ExperimentState string

const (
	ExpPlanned      ExperimentState = "planned"       // directory written, nothing started
	ExpSubmitted    ExperimentState = "submitted"     // accepted by a batch system, not yet running
	ExpRunning      ExperimentState = "running"       // at least one task running
	ExpCompleted    ExperimentState = "completed"     // every task completed
	ExpFailed       ExperimentState = "failed"        // every task ended, some failed or timed out
	ExpCancelled    ExperimentState = "cancelled"     // every task ended, some cancelled, none failed; resumable
	ExpInterrupted  ExperimentState = "interrupted"   // stopped by the user; resumable
	ExpNotSubmitted ExperimentState = "not-submitted" // submission failed; resumable
)

// TaskState is the state of one task.
type TaskState string

const (
	TaskPending     TaskState = "pending"
	TaskRunning     TaskState = "running"
	TaskCompleted   TaskState = "completed"
	TaskFailed      TaskState = "failed"
	TaskInterrupted TaskState = "interrupted"
	TaskTimeout     TaskState = "timeout"
	TaskCancelled   TaskState = "cancelled"
)

// Terminal reports whether the task has ended.
func (s TaskState) Terminal() bool {
	switch s {
	case TaskCompleted, TaskFailed, TaskInterrupted, TaskTimeout, TaskCancelled:
		return true
	}
	return false
}

// Exit codes of `gpuorch loadgen run` (the task command), which executors map
// onto task states.
const (
	TaskExitCompleted   = 0
	TaskExitFailed      = 1
	TaskExitUnreachable = 3
	TaskExitInterrupted = 130
)

// State is state.json: everything that changes while an experiment runs.
// It is rewritten atomically at every step, so a killed gpuorch loses nothing.
type State struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	State    ExperimentState `json:"state"`
	Executor string          `json:"executor"`
	Created  time.Time       `json:"created"`
	Updated  time.Time       `json:"updated"`
	Error    string          `json:"error,omitempty"` // why the experiment is failed / not-submitted
	// Submissions records each submission to the executor (the first, then
	// resumes and retries), with the batch job id where there is one.
	Submissions []Submission `json:"submissions,omitempty"`
	Tasks       []TaskStatus `json:"tasks"`
}

// Submission is one call to Executor.Submit.
type Submission struct {
	Time    time.Time `json:"time"`
	Indices []int     `json:"indices"`
	JobID   string    `json:"job_id,omitempty"` // e.g. the Slurm array job id
	Script  string    `json:"script,omitempty"` // e.g. the rendered sbatch script, relative to the experiment dir
}

// TaskStatus is one task's state.
type TaskStatus struct {
	Index    int        `json:"index"`
	Name     string     `json:"name"`
	State    TaskState  `json:"state"`
	ExitCode *int       `json:"exit_code,omitempty"`
	Start    *time.Time `json:"start,omitempty"`
	End      *time.Time `json:"end,omitempty"`
	Log      string     `json:"log"`              // relative to the experiment dir
	JobID    string     `json:"job_id,omitempty"` // executor job id, e.g. Slurm "1234_5"
	Node     string     `json:"node,omitempty"`   // host the task ran on
	PID      int        `json:"pid,omitempty"`    // local executor: the task's process
	Runner   int        `json:"runner,omitempty"` // local executor: the gpuorch process that started it
	Attempts int        `json:"attempts,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// Experiment is an experiment directory loaded in memory. Its methods are
// safe for concurrent use by an executor's goroutines, and by several gpuorch
// processes on the same directory (a run, a status, a cancel): every change
// goes through Update, a read-modify-write of state.json under a file lock.
type Experiment struct {
	Dir  string
	Plan *Plan

	// OnTaskUpdate, when set, is called (under the experiment's lock, after
	// the state is saved) with a copy of each task status that Update changes.
	// The CLI uses it for progress lines.
	OnTaskUpdate func(TaskStatus)

	id    string // state.ID, which never changes
	mu    sync.Mutex
	state State
}

// Snapshot returns a deep copy of the current state.
func (e *Experiment) Snapshot() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state.clone()
}

func (s State) clone() State {
	c := s
	c.Submissions = append([]Submission(nil), s.Submissions...)
	c.Tasks = append([]TaskStatus(nil), s.Tasks...)
	return c
}

// ID is the experiment id.
func (e *Experiment) ID() string { return e.id }

// Update applies fn to the state and writes state.json atomically. It holds
// the experiment's file lock (state.lock, flock) from before it re-reads
// state.json until the new one is in place, so fn always sees what other
// gpuorch processes saved (a cancel, a status refresh) and no process
// overwrites another's change with a stale copy. Changed tasks — by fn or by
// another process since this one last looked — are reported to OnTaskUpdate.
func (e *Experiment) Update(fn func(*State) error) error {
	return e.update(fn, true)
}

func (e *Experiment) update(fn func(*State) error, reload bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	unlock, err := lockDir(e.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	before := append([]TaskStatus(nil), e.state.Tasks...)
	if reload {
		if err := e.reloadLocked(); err != nil {
			return err
		}
	}
	next := e.state.clone()
	if err := fn(&next); err != nil {
		return err
	}
	next.Updated = time.Now().UTC()
	if err := atomicfile.WriteJSON(layout.Experiment(e.Dir).State(), &next, 0o644); err != nil {
		return err
	}
	e.state = next
	if e.OnTaskUpdate != nil {
		for i, t := range e.state.Tasks {
			if i >= len(before) || !sameTask(before[i], t) {
				e.OnTaskUpdate(t)
			}
		}
	}
	return nil
}

// Reload re-reads state.json (another gpuorch process may have changed it).
func (e *Experiment) Reload() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reloadLocked()
}

// reloadLocked replaces the in-memory state with state.json, when there is
// one (Create writes the first).
func (e *Experiment) reloadLocked() error {
	var st State
	err := readJSON(layout.Experiment(e.Dir).State(), &st)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(st.Tasks) != len(e.state.Tasks):
		return fmt.Errorf("experiment %s: state.json now has %d tasks, not %d", e.Dir, len(st.Tasks), len(e.state.Tasks))
	}
	e.state = st
	return nil
}

// lockDir takes the experiment's exclusive file lock, state.lock: an flock,
// so that it is released if the process dies holding it.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "state.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock experiment state: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock experiment state %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing the last descriptor releases the flock
}

func sameTask(a, b TaskStatus) bool {
	return a.State == b.State && a.JobID == b.JobID && a.Error == b.Error && a.Attempts == b.Attempts
}

// UpdateTask applies fn to task i and saves.
func (e *Experiment) UpdateTask(i int, fn func(*TaskStatus)) error {
	return e.Update(func(s *State) error {
		if i < 0 || i >= len(s.Tasks) {
			return fmt.Errorf("experiment %s has no task %d", s.ID, i)
		}
		fn(&s.Tasks[i])
		return nil
	})
}

// SetState sets the experiment state (and its error message) and saves.
func (e *Experiment) SetState(st ExperimentState, errMsg string) error {
	return e.Update(func(s *State) error {
		s.State = st
		s.Error = errMsg
		return nil
	})
}

// TaskDir is tasks/<i> inside the experiment directory.
func (e *Experiment) TaskDir(i int) string { return string(layout.Experiment(e.Dir).Task(i)) }

// ManifestPath is the task's manifest, relative to the experiment directory
// (executors run tasks with the experiment directory as working directory).
func ManifestPath(i int) string { return layout.RelTask(i).Manifest() }

// LogPath is the task's log (stdout and stderr), relative to the experiment directory.
func LogPath(i int) string { return layout.RelTask(i).Log() }

// SummaryPath is the task's summary.json, relative to the experiment directory.
func SummaryPath(i int) string { return layout.RelTask(i).Summary() }

// MetricsPath is the task's metrics.lp (line protocol), relative to the experiment directory.
func MetricsPath(i int) string { return layout.RelTask(i).Metrics() }

// Incomplete lists the indices of tasks that have not completed (what a
// resume runs).
func (s *State) Incomplete() []int {
	var idx []int
	for _, t := range s.Tasks {
		if t.State != TaskCompleted {
			idx = append(idx, t.Index)
		}
	}
	return idx
}

// Counts returns how many tasks are in each state.
func (s *State) Counts() map[TaskState]int {
	c := map[TaskState]int{}
	for _, t := range s.Tasks {
		c[t.State]++
	}
	return c
}

// Derive computes the experiment state implied by the task states; it
// returns cur when tasks are still pending and none runs (planned, submitted,
// interrupted and not-submitted are decided by whoever drives the executor).
// Once every task has ended: interrupted if one was interrupted (resumable),
// else failed if one failed or timed out (retry applies), else cancelled if
// one was cancelled (resumable), else completed.
func Derive(cur ExperimentState, tasks []TaskStatus) ExperimentState {
	var running, pending, interrupted, bad, cancelled int
	for _, t := range tasks {
		switch t.State {
		case TaskRunning:
			running++
		case TaskPending:
			pending++
		case TaskInterrupted:
			interrupted++
		case TaskFailed, TaskTimeout:
			bad++
		case TaskCancelled:
			cancelled++
		}
	}
	switch {
	case running > 0:
		return ExpRunning
	case pending > 0:
		return cur
	case interrupted > 0:
		return ExpInterrupted
	case bad > 0:
		return ExpFailed
	case cancelled > 0:
		return ExpCancelled
	default:
		return ExpCompleted
	}
}

// Home is where experiment directories live: $GPUORCH_HOME, or ./gpuorch-runs.
func Home() string {
	if h := os.Getenv("GPUORCH_HOME"); h != "" {
		return h
	}
	return "gpuorch-runs"
}

// NewID returns an experiment id: the name, the UTC time and a short random
// suffix ("quickstart-20261122-070415-3fa9"), itself a valid name.
func NewID(name string, now time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	const suffix = len("-20060102-150405-abcd")
	if len(name) > 63-suffix {
		name = strings.TrimRight(name[:63-suffix], ".-_")
	}
	return name + "-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// Create makes a new experiment directory under home for a plan: spec.toml
// (the spec's bytes as read), plan.json, tasks/<i>/manifest.json and
// state.json with every task pending. The manifests carry the experiment id.
// A Create that fails removes the directory it made: no half-made
// experiment is left behind.
func Create(home string, spec *Spec, plan *Plan, executor string) (exp *Experiment, err error) {
	now := time.Now().UTC()
	id := NewID(plan.Experiment.Name, now)
	dir := filepath.Join(home, id)
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("create experiment directory: %s exists", dir)
	}
	if err := os.MkdirAll(layout.Experiment(dir).Tasks(), 0o755); err != nil {
		return nil, fmt.Errorf("create experiment directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	p := *plan
	p.Tasks = append([]Task(nil), plan.Tasks...)
	for i := range p.Tasks {
		p.Tasks[i].Config.Experiment = id
	}
	e := &Experiment{Dir: dir, Plan: &p}
	// The directory is new, so its files need no temporary copies. They are
	// written without an fsync each (a 1,000-task sweep
	// would spend seconds in fsync) and made durable by one syncfs before
	// state.json, the commit point, is written with its own fsync.
	if spec != nil && spec.Source != nil {
		if err := os.WriteFile(layout.Experiment(dir).Spec(), spec.Source, 0o644); err != nil {
			return nil, fmt.Errorf("write spec.toml: %w", err)
		}
	}
	b, err := json.MarshalIndent(&p, "", "  ")
	if err == nil {
		err = os.WriteFile(layout.Experiment(dir).Plan(), append(b, '\n'), 0o644)
	}
	if err != nil {
		return nil, fmt.Errorf("write plan.json: %w", err)
	}
	st := State{ID: id, Name: p.Experiment.Name, State: ExpPlanned, Executor: executor, Created: now}
	for _, t := range p.Tasks {
		if err := os.Mkdir(e.TaskDir(t.Index), 0o755); err != nil {
			return nil, fmt.Errorf("create task directory: %w", err)
		}
		// A fresh file in a fresh directory: no temp file needed.
		b, err := json.MarshalIndent(&t.Config, "", "  ")
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, ManifestPath(t.Index)), append(b, '\n'), 0o644)
		}
		if err != nil {
			return nil, fmt.Errorf("write manifest of task %d: %w", t.Index, err)
		}
		st.Tasks = append(st.Tasks, TaskStatus{Index: t.Index, Name: t.Name, State: TaskPending, Log: LogPath(t.Index)})
	}
	e.id = id
	if err := writeDeployment(e, executor, ""); err != nil {
		return nil, fmt.Errorf("write the deployment: %w", err)
	}
	if err := syncFS(dir); err != nil {
		return nil, err
	}
	e.state, e.id = st, st.ID
	if err := e.update(func(*State) error { return nil }, false); err != nil {
		return nil, err
	}
	return e, nil
}

// syncFS flushes the file system holding dir (one syncfs(2) for many files).
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ErrNotFound is returned by Open when no experiment matches.
var ErrNotFound = errors.New("experiment not found")

// Open loads an experiment by directory path, by id under home, or by a
// unique id prefix under home; a bare experiment name picks that name's most
// recent run.
func Open(home, idOrPath string) (*Experiment, error) {
	if idOrPath == "" {
		return nil, fmt.Errorf("open experiment: empty id")
	}
	if isExperimentDir(idOrPath) {
		return load(idOrPath)
	}
	if !strings.ContainsRune(idOrPath, filepath.Separator) {
		if d := filepath.Join(home, idOrPath); isExperimentDir(d) {
			return load(d)
		}
		all, err := List(home)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		// An experiment name means its latest run (List sorts newest first).
		for _, s := range all {
			if s.Name == idOrPath {
				return load(s.Dir)
			}
		}
		var match []Summary
		for _, s := range all {
			if strings.HasPrefix(s.ID, idOrPath) {
				match = append(match, s)
			}
		}
		switch {
		case len(match) == 1:
			return load(match[0].Dir)
		case len(match) > 1:
			ids := make([]string, len(match))
			for i, m := range match {
				ids[i] = m.ID
			}
			return nil, fmt.Errorf("experiment %s is ambiguous in %s: %s", clip.Quote(idOrPath), clip.String(home), strings.Join(ids, ", "))
		}
	}
	return nil, fmt.Errorf("open experiment %s (looked in %s): %w", clip.Quote(idOrPath), clip.String(home), ErrNotFound)
}

func isExperimentDir(d string) bool {
	_, err := os.Stat(layout.Experiment(d).State())
	return err == nil
}

func load(dir string) (*Experiment, error) {
	e := &Experiment{Dir: dir, Plan: &Plan{}}
	if err := readJSON(layout.Experiment(dir).Plan(), e.Plan); err != nil {
		return nil, err
	}
	if err := readJSON(layout.Experiment(dir).State(), &e.state); err != nil {
		return nil, err
	}
	if len(e.state.Tasks) != len(e.Plan.Tasks) {
		return nil, fmt.Errorf("experiment %s: state.json has %d tasks, plan.json %d", dir, len(e.state.Tasks), len(e.Plan.Tasks))
	}
	e.id = e.state.ID
	return e, nil
}

// readState reads an experiment directory's state.json.
func readState(dir string) (State, error) {
	var st State
	err := readJSON(layout.Experiment(dir).State(), &st)
	return st, err
}

func readJSON(path string, v any) error {
	b, err := limitio.ReadFile(path, limitio.Record)
	if err != nil {
		return err // names the file
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// Summary is one line of an experiment listing.
type Summary struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Dir      string            `json:"dir"`
	State    ExperimentState   `json:"state"`
	Executor string            `json:"executor"`
	Created  time.Time         `json:"created"`
	Tasks    int               `json:"tasks"`
	Counts   map[TaskState]int `json:"counts"`
	Tags     []string          `json:"tags,omitempty"`
}

// List returns the experiments under home, newest first. Directories that
// are not experiments are skipped.
func List(home string) ([]Summary, error) {
	ents, err := os.ReadDir(home)
	if err != nil {
		return nil, fmt.Errorf("list experiments in %s: %w", home, err)
	}
	var out []Summary
	for _, ent := range ents {
		if !ent.IsDir() {
			continue
		}
		d := filepath.Join(home, ent.Name())
		var st State
		if readJSON(layout.Experiment(d).State(), &st) != nil {
			continue
		}
		s := Summary{ID: st.ID, Name: st.Name, Dir: d, State: st.State, Executor: st.Executor, Created: st.Created, Tasks: len(st.Tasks), Counts: st.Counts()}
		var p Plan
		if readJSON(layout.Experiment(d).Plan(), &p) == nil {
			s.Tags = p.Experiment.Tags
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}
