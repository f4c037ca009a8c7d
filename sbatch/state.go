package sbatch

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// State is a Slurm job (or array task) state as squeue and sacct print it.
type State string

// The states gpuorch distinguishes. Anything else Slurm prints maps to
// StateUnknown (see ParseState).
const (
	StatePending     State = "PENDING"
	StateRunning     State = "RUNNING"
	StateCompleting  State = "COMPLETING"
	StateCompleted   State = "COMPLETED"
	StateFailed      State = "FAILED"
	StateTimeout     State = "TIMEOUT"
	StateCancelled   State = "CANCELLED"
	StateNodeFail    State = "NODE_FAIL"
	StatePreempted   State = "PREEMPTED"
	StateOutOfMemory State = "OUT_OF_MEMORY"
	StateRequeued    State = "REQUEUED"
	StateSuspended   State = "SUSPENDED"
	StateUnknown     State = "UNKNOWN"
)

// ParseState maps Slurm's text to a State: "CANCELLED by 0" is CANCELLED,
// short forms (PD, R, CG, CD, F, TO, CA, NF, PR, OOM) are accepted, and
// states gpuorch does not model (BOOT_FAIL, DEADLINE, RESIZING, …) are
// StateUnknown with the original text kept by the caller.
func ParseState(s string) State {
	s = strings.TrimSpace(s)
	if f := strings.Fields(s); len(f) > 0 {
		s = f[0]
	}
	s = strings.TrimSuffix(s, "+")
	switch strings.ToUpper(s) {
	case "PENDING", "PD":
		return StatePending
	case "RUNNING", "R", "CONFIGURING", "CF":
		return StateRunning
	case "COMPLETING", "CG":
		return StateCompleting
	case "COMPLETED", "CD":
		return StateCompleted
	case "FAILED", "F":
		return StateFailed
	case "TIMEOUT", "TO":
		return StateTimeout
	case "CANCELLED", "CA":
		return StateCancelled
	case "NODE_FAIL", "NF":
		return StateNodeFail
	case "PREEMPTED", "PR":
		return StatePreempted
	case "OUT_OF_MEMORY", "OOM":
		return StateOutOfMemory
	case "REQUEUED", "RQ", "REQUEUE_HOLD", "REQUEUE_FED":
		return StateRequeued
	case "SUSPENDED", "S":
		return StateSuspended
	}
	return StateUnknown
}

// Terminal reports whether the state is final: the task will not run again
// unless resubmitted. PREEMPTED counts as final here only when the task is
// no longer in the queue (the caller checks squeue; with PreemptMode=REQUEUE
// a preempted task goes back to PENDING there).
func (s State) Terminal() bool {
	switch s {
	case StateCompleted, StateFailed, StateTimeout, StateCancelled, StateNodeFail, StatePreempted, StateOutOfMemory:
		return true
	}
	return false
}

// Failed reports whether a terminal state is an unsuccessful one.
func (s State) Failed() bool { return s.Terminal() && s != StateCompleted }

// Retryable reports whether `gpuorch retry` resubmits a task in this state:
// it failed, ran out of time or memory, lost its node, or was preempted.
// Cancelled tasks are not retried (a person cancelled them).
func (s State) Retryable() bool {
	switch s {
	case StateFailed, StateTimeout, StateNodeFail, StatePreempted, StateOutOfMemory:
		return true
	}
	return false
}

// TaskID names one job or array task: "123" (not an array, Index -1),
// "123_4", or a range of pending tasks "123_[5-9%2]" (Indices lists them).
type TaskID struct {
	JobID   string // the array master id ("123"), or the plain job id
	Index   int    // array index, -1 for a plain job or a range
	Indices []int  // for a range: every index it stands for
}

// ParseTaskID parses squeue/sacct job ids: "123", "123_4",
// "123_[5-9%2]", "123_[1,3,5-7]", and heterogeneous "123+0" (as plain 123).
func ParseTaskID(s string) (TaskID, error) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	master, rest, isArray := strings.Cut(s, "_")
	if _, err := strconv.ParseUint(master, 10, 64); err != nil {
		return TaskID{}, fmt.Errorf("job id %q: not a number", s)
	}
	if !isArray {
		return TaskID{JobID: master, Index: -1}, nil
	}
	if !strings.HasPrefix(rest, "[") {
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return TaskID{}, fmt.Errorf("job id %q: bad array index", s)
		}
		return TaskID{JobID: master, Index: n}, nil
	}
	if !strings.HasSuffix(rest, "]") {
		return TaskID{}, fmt.Errorf("job id %q: unterminated array range", s)
	}
	spec := rest[1 : len(rest)-1]
	if i := strings.IndexByte(spec, '%'); i >= 0 {
		spec = spec[:i]
	}
	idx, err := ExpandArraySpec(spec)
	if err != nil {
		return TaskID{}, fmt.Errorf("job id %q: %w", s, err)
	}
	return TaskID{JobID: master, Index: -1, Indices: idx}, nil
}

// ExpandArraySpec lists the indices of an array spec ("0-3,7,10-20:5");
// a "%N" throttle suffix is ignored.
func ExpandArraySpec(spec string) ([]int, error) {
	if i := strings.IndexByte(spec, '%'); i >= 0 {
		spec = spec[:i]
	}
	const maxExpand = 4000001 // Slurm's MaxArraySize ceiling
	var out []int
	for _, part := range strings.Split(spec, ",") {
		rng, stepS, hasStep := strings.Cut(part, ":")
		step := 1
		if hasStep {
			var err error
			if step, err = strconv.Atoi(stepS); err != nil || step < 1 {
				return nil, fmt.Errorf("array spec %q: bad step %q", spec, stepS)
			}
		}
		loS, hiS, isRange := strings.Cut(rng, "-")
		lo, err := strconv.Atoi(loS)
		if err != nil || lo < 0 {
			return nil, fmt.Errorf("array spec %q: bad index %q", spec, loS)
		}
		hi := lo
		if isRange {
			if hi, err = strconv.Atoi(hiS); err != nil || hi < lo {
				return nil, fmt.Errorf("array spec %q: bad range %q", spec, rng)
			}
		}
		for i := lo; i <= hi; i += step {
			if len(out) >= maxExpand {
				return nil, fmt.Errorf("array spec %q: more than %d indices", spec, maxExpand)
			}
			out = append(out, i)
		}
	}
	return out, nil
}

// ExitStatus is sacct's ExitCode "code:signal".
type ExitStatus struct {
	Code   int
	Signal int
}

func (e ExitStatus) String() string { return fmt.Sprintf("%d:%d", e.Code, e.Signal) }

// ParseExitStatus parses "3:0". An empty string is 0:0.
func ParseExitStatus(s string) (ExitStatus, error) {
	if s == "" {
		return ExitStatus{}, nil
	}
	c, sig, ok := strings.Cut(s, ":")
	code, err1 := strconv.Atoi(c)
	signal := 0
	var err2 error
	if ok {
		signal, err2 = strconv.Atoi(sig)
	}
	if err1 != nil || err2 != nil {
		return ExitStatus{}, fmt.Errorf("exit code %q: want code:signal", s)
	}
	return ExitStatus{Code: code, Signal: signal}, nil
}

// Task is the state of one job or array task, merged from squeue (live)
// and sacct (history).
type Task struct {
	JobID    string     `json:"job_id"`           // array master id or plain job id
	Index    int        `json:"index"`            // array index, -1 for a plain job
	State    State      `json:"state"`            // UNKNOWN when Slurm has not reported it yet
	Raw      string     `json:"raw_state"`        // Slurm's own text, e.g. "CANCELLED by 0"
	Reason   string     `json:"reason,omitempty"` // squeue's reason while pending
	Exit     ExitStatus `json:"exit"`
	Nodes    string     `json:"nodes,omitempty"`
	Start    time.Time  `json:"start,omitzero"`
	End      time.Time  `json:"end,omitzero"`
	InQueue  bool       `json:"in_queue"`  // squeue still lists it
	Accurate bool       `json:"accounted"` // sacct has a final row (state and exit code)
}

// ID renders "123_4" (or "123" for a plain job).
func (t Task) ID() string {
	if t.Index < 0 {
		return t.JobID
	}
	return t.JobID + "_" + strconv.Itoa(t.Index)
}

// Done reports whether the task is finished and accounted: squeue no
// longer lists it and sacct shows a terminal state (sacct lags squeue by a
// few seconds, so a task can be neither queued nor accounted for a while).
func (t Task) Done() bool { return !t.InQueue && t.Accurate && t.State.Terminal() }

// parseTime reads sacct's times; "Unknown", "None" and "" are zero.
func parseTime(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.Local)
	if err != nil {
		return time.Time{}
	}
	return t
}
