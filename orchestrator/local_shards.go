package orchestrator

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
)

// taskProc is a task's running processes: one, or a sharded task's shards.
type taskProc struct {
	pgid int        // their process group, which every signal goes to
	wait func() int // waits until the task has ended; its exit code
}

// start starts task i: `loadgen run --manifest` in a process group of its
// own (a terminal's Ctrl-C reaches gpuorch only, which then interrupts
// each task exactly once and waits for its results) — or, for a sharded
// task (run.shards > 1), its shards as a Slurm job step would run them
// (startShards).
func (l *Local) start(exp *Experiment, dir string, i int, env []string, logf *os.File) (*taskProc, error) {
	if k := exp.Plan.Run.Shards; k > 1 {
		return l.startShards(dir, i, k, env, logf)
	}
	cmd := exec.Command(l.binary, "loadgen", "run", "--manifest", ManifestPath(i))
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", l.binary, err)
	}
	return &taskProc{pgid: cmd.Process.Pid, wait: func() int { return exitCode(cmd, cmd.Wait()) }}, nil
}

// startShards runs the k shards of task i as srun runs them under Slurm:
// k processes with SLURM_PROCID 0…k-1 of SLURM_STEP_NUM_TASKS k (all in
// shard 0's process group), each output line prefixed "s: " (srun
// --label); once all have ended, whatever became of them, the merge of
// their summaries, whose exit code is the task's.
func (l *Local) startShards(dir string, i, k int, env []string, logf *os.File) (*taskProc, error) {
	env = append(env[:len(env):len(env)], fmt.Sprintf("GPUORCH_SHARD_ATTEMPT=local-%d-%d-%d", os.Getpid(), i, time.Now().UnixNano()),
		"SLURM_STEP_ID=0", "SLURM_NTASKS="+strconv.Itoa(k), "SLURM_STEP_NUM_TASKS="+strconv.Itoa(k))
	var mu sync.Mutex
	var cmds []*exec.Cmd
	var labels []*labelWriter
	pgid := 0
	for s := range k {
		cmd := exec.Command(l.binary, "loadgen", "run", "--manifest", ManifestPath(i), "--shard", fmt.Sprintf("%d/%d", s, k))
		lw := &labelWriter{mu: &mu, w: logf, prefix: []byte(strconv.Itoa(s) + ": ")}
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, lw, lw
		cmd.Env = append(env[:len(env):len(env)], "SLURM_PROCID="+strconv.Itoa(s), "SLURM_NODEID="+strconv.Itoa(s), "SLURM_LOCALID=0")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: pgid}
		if err := cmd.Start(); err != nil {
			if pgid != 0 {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
			for _, c := range cmds {
				_ = c.Wait()
			}
			return nil, fmt.Errorf("start shard %d of %d: %s: %w", s, k, l.binary, err)
		}
		if s == 0 {
			pgid = cmd.Process.Pid
		}
		cmds, labels = append(cmds, cmd), append(labels, lw)
	}
	wait := func() int {
		for s, c := range cmds {
			if err := c.Wait(); err != nil {
				labels[s].Write([]byte(fmt.Sprintf("gpuorch: shard %d of %d: %v\n", s, k, err)))
			}
			labels[s].flush()
		}
		merge := exec.Command(l.binary, "loadgen", "run", "--manifest", ManifestPath(i), "--shard", "merge")
		merge.Dir, merge.Env, merge.Stdout, merge.Stderr = dir, env, logf, logf
		merge.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return exitCode(merge, merge.Run())
	}
	return &taskProc{pgid: pgid, wait: wait}, nil
}

// labelWriter writes whole lines, each prefixed, to a writer that others
// share.
type labelWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix []byte
	buf    []byte
}

func (l *labelWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		n := bytes.IndexByte(l.buf, '\n')
		if n < 0 {
			return len(p), nil
		}
		l.mu.Lock()
		_, _ = l.w.Write(append(append([]byte(nil), l.prefix...), l.buf[:n+1]...))
		l.mu.Unlock()
		l.buf = l.buf[n+1:]
	}
}

// flush writes a last line without its newline.
func (l *labelWriter) flush() {
	if len(l.buf) > 0 {
		l.Write([]byte("\n"))
	}
}

// shardedFailure is the message of a failed sharded task: what the merged
// summary its attempt (begun at start) wrote says — which shard failed or
// died, and why — when there is one, else msg.
func shardedFailure(plan *Plan, dir string, i int, start time.Time, msg string) string {
	if plan.Run.Shards <= 1 {
		return msg
	}
	path := filepath.Join(dir, SummaryPath(i))
	var sum loadgen.Summary
	if fi, err := os.Stat(path); err != nil || fi.ModTime().Before(start) || readJSON(path, &sum) != nil || sum.Error == "" || len(sum.Shards) == 0 {
		return msg
	}
	return sum.Error
}
