package orchestrator

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpuorch/gpuorch/sbatch"
)

// WriteFailures writes one line per failed or timed-out task: its state,
// why, its exit code and the full path of its log.
func WriteFailures(w io.Writer, exp *Experiment, st State) {
	for _, t := range st.Tasks {
		if t.State != TaskFailed && t.State != TaskTimeout {
			continue
		}
		exit := "-"
		if t.ExitCode != nil {
			exit = strconv.Itoa(*t.ExitCode)
		}
		why := t.Error
		// The message names the log relative to the directory; the full
		// path follows.
		for _, sep := range []string{" (log: ", "; see "} {
			if k := strings.Index(why, sep); k >= 0 {
				why = why[:k]
			}
		}
		if why == "" {
			why = string(t.State)
		}
		fmt.Fprintf(w, "task %d (%s) %s: %s [exit code %s, log %s]\n", t.Index, t.Name, t.State, why, exit, filepath.Join(exp.Dir, t.Log))
	}
}

// AllEnded reports whether every task has ended.
func AllEnded(st State) bool {
	for _, t := range st.Tasks {
		if !t.State.Terminal() {
			return false
		}
	}
	return true
}

// ProgressLine is "[#######.......] 7/15 ended: 5 completed, 2 failed; 3 running, 5 pending".
func ProgressLine(st State, bar bool) string {
	n := len(st.Tasks)
	c := st.Counts()
	ended := 0
	for s, k := range c {
		if s.Terminal() {
			ended += k
		}
	}
	var parts []string
	for _, s := range []TaskState{TaskCompleted, TaskFailed, TaskTimeout,
		TaskCancelled, TaskInterrupted, TaskRunning, TaskPending} {
		if c[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c[s], s))
		}
	}
	line := fmt.Sprintf("%d/%d ended: %s", ended, n, strings.Join(parts, ", "))
	if !bar {
		return line
	}
	const width = 30
	fill := 0
	if n > 0 {
		fill = ended * width / n
	}
	return "[" + strings.Repeat("#", fill) + strings.Repeat(".", width-fill) + "] " + line
}

// WriteStatus writes the experiment's per-task table for people, with
// the failed tasks' logs and what to do next.
func WriteStatus(w io.Writer, exp *Experiment, st State) {
	var jobs []string
	for _, s := range st.Submissions {
		if s.JobID != "" {
			jobs = append(jobs, s.JobID)
		}
	}
	job := ""
	if len(jobs) > 0 {
		job = ", job " + strings.Join(jobs, ", ")
	}
	fmt.Fprintf(w, "experiment %s  %s  (executor %s%s)\n", st.ID, st.State, st.Executor, job)
	if st.Error != "" {
		fmt.Fprintf(w, "error: %s\n", st.Error)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tNAME\tSTATE\tEXIT\tJOB\tNODE\tELAPSED\tMESSAGE")
	for _, t := range st.Tasks {
		exit := "-"
		if t.ExitCode != nil {
			exit = strconv.Itoa(*t.ExitCode)
		}
		elapsed := "-"
		if t.Start != nil {
			end := time.Now()
			if t.End != nil {
				end = *t.End
			}
			elapsed = end.Sub(*t.Start).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Index, t.Name, t.State, exit, dash(t.JobID), dash(t.Node), elapsed, dash(t.Error))
	}
	tw.Flush()
	fmt.Fprintln(w, ProgressLine(st, false))
	WriteFailures(w, exp, st)
	switch {
	case st.State == ExpFailed && len(RetryIndices(&st)) > 0:
		fmt.Fprintf(w, "retry the failed tasks with: %s\n", sbatch.CommandLine("gpuorch", "retry", st.ID))
	case st.State == ExpNotSubmitted || st.State == ExpInterrupted || st.State == ExpCancelled:
		fmt.Fprintf(w, "resume with: %s\n", sbatch.CommandLine("gpuorch", "run", "--resume", st.ID))
	case st.State == ExpCompleted:
		fmt.Fprintf(w, "results: %s\n", sbatch.CommandLine("gpuorch", "results", "show", st.ID))
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteText writes the plan for people: what runs, where, for how long, and
// one row per task with its parameters.
func (p *Plan) WriteText(w io.Writer) error {
	n := len(p.Tasks)
	par := max(p.Run.Parallel, 1)
	waves := (n + par - 1) / par
	fmt.Fprintf(w, "experiment %s: %s (%s × %s), executor %s, %s each",
		p.Experiment.Name, plural(n, "task"), plural(len(p.Workloads), "workload"), plural(n/max(len(p.Workloads), 1), "sweep point"), p.Run.Executor, p.Run.Duration.D())
	if p.Run.Executor == "local" {
		fmt.Fprintf(w, ", %d at a time: about %s of load", par, time.Duration(waves)*p.Run.Duration.D())
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tNAME\tWORKLOAD\tSEED\tPARAMETERS")
	for i := range p.Tasks {
		t := &p.Tasks[i]
		params := p.ParamString(t)
		if params == "" {
			params = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", t.Index, t.Name, t.Workload, t.Config.Seed, params)
	}
	return tw.Flush()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
