package orchestrator

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/sbatch"
	"github.com/gpuorch/gpuorch/taskrun"
)

// Progress prints a line as each task starts and ends and, while tasks run,
// keeps one live status line at the bottom (elapsed/total, achieved rate,
// p99 latency, errors) from the tasks' snapshots.jsonl.
type Progress struct {
	w       io.Writer
	exp     *Experiment
	mu      sync.Mutex
	n       int
	ended   int
	running map[int]time.Time // task → start
	drawn   bool              // a status line is on screen
	stop    chan struct{}
	done    chan struct{}
}

func newProgress(w io.Writer, exp *Experiment) *Progress {
	st := exp.Snapshot()
	return &Progress{
		w: w, exp: exp, n: len(exp.Plan.Tasks),
		ended:   st.Counts()[TaskCompleted], // a resume skips these
		running: map[int]time.Time{},
	}
}

// StartProgress prints task events and the live status line until Stop.
func StartProgress(w io.Writer, exp *Experiment) *Progress {
	p := newProgress(w, exp)
	p.stop = make(chan struct{})
	p.done = make(chan struct{})
	exp.OnTaskUpdate = p.event
	go p.loop()
	return p
}

// AttachProgress prints a line as each task starts and ends, without the
// live status line (nothing to stop afterwards).
func AttachProgress(w io.Writer, exp *Experiment) {
	exp.OnTaskUpdate = newProgress(w, exp).event
}

func (p *Progress) Stop() {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	p.clear()
	p.mu.Unlock()
}

func (p *Progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

func (p *Progress) event(t TaskStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	ts := time.Now().Format("15:04:05")
	switch {
	case t.State == TaskRunning:
		start := time.Now()
		if t.Start != nil {
			start = *t.Start
		}
		p.running[t.Index] = start
		fmt.Fprintf(p.w, "%s  %-11s %s  (%d/%d done)\n", ts, t.State, t.Name, p.ended, p.n)
	case t.State.Terminal():
		delete(p.running, t.Index)
		p.ended++
		took := ""
		if t.Start != nil && t.End != nil {
			took = " in " + t.End.Sub(*t.Start).Round(100*time.Millisecond).String()
		}
		msg := ""
		if t.Error != "" {
			msg = ": " + t.Error
		}
		fmt.Fprintf(p.w, "%s  %-11s %s%s%s  (%d/%d done)\n", ts, t.State, t.Name, took, msg, p.ended, p.n)
	}
	if p.stop != nil {
		p.draw()
	}
}

func (p *Progress) loop() {
	defer close(p.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
			p.mu.Lock()
			p.clear()
			p.draw()
			p.mu.Unlock()
		}
	}
}

// draw writes the status line for the running tasks (at most three).
func (p *Progress) draw() {
	if len(p.running) == 0 {
		return
	}
	idx := make([]int, 0, len(p.running))
	for i := range p.running {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var parts []string
	for k, i := range idx {
		if k == 3 {
			parts = append(parts, fmt.Sprintf("+%d more", len(idx)-3))
			break
		}
		parts = append(parts, p.taskStatus(i))
	}
	line := strings.Join(parts, " | ")
	if len(line) > 160 {
		line = line[:157] + "..."
	}
	fmt.Fprint(p.w, line)
	p.drawn = true
}

func (p *Progress) taskStatus(i int) string {
	t := &p.exp.Plan.Tasks[i]
	elapsed := time.Since(p.running[i]).Truncate(time.Second)
	s := fmt.Sprintf("%s %s/%s", t.Name, elapsed, t.Config.Duration.D())
	snap, ok := taskrun.LastSnapshot(layout.Task(p.exp.TaskDir(i)))
	if !ok {
		return s
	}
	return s + fmt.Sprintf(" %.1f/s p99 %s err %d", snap.AchievedRate, snap.Latency.P99.Round(100*time.Microsecond), snap.Errors+snap.Timeouts)
}

// WriteOutcome says how the run ended; failures always (to stderr), the
// summary line on a terminal.
func WriteOutcome(w io.Writer, tty bool, exp *Experiment, st State) {
	WriteFailures(w, exp, st)
	counts := st.Counts()
	if tty || st.State != ExpCompleted {
		fmt.Fprintf(w, "experiment %s %s: %d/%d tasks completed; directory %s\n", st.ID, st.State, counts[TaskCompleted], len(st.Tasks), exp.Dir)
	}
	switch st.State {
	case ExpInterrupted, ExpFailed, ExpCancelled, ExpNotSubmitted:
		fmt.Fprintf(w, "resume with: %s\n", sbatch.CommandLine("gpuorch", "run", "--resume", st.ID))
	case ExpCompleted:
		if tty {
			fmt.Fprintf(w, "results: %s\n", sbatch.CommandLine("gpuorch", "results", "show", st.ID))
		}
	case ExpSubmitted, ExpRunning:
		fmt.Fprintf(w, "follow it with: %s\n", sbatch.CommandLine("gpuorch", "status", "--watch", st.ID))
	}
}
