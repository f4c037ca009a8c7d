package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/sbatch"
)

// JobRecord is job.json in a replica's directory: how its task started it,
// so that `gpuorch cancel` can stop it even when the task is gone.
type JobRecord struct {
	Executor  string    `json:"executor"`       // slurm or local
	Job       string    `json:"job,omitempty"`  // Slurm job id
	PID       int       `json:"pid,omitempty"`  // local process (its process group)
	Host      string    `json:"host,omitempty"` // where the local process runs
	Submitted time.Time `json:"submitted"`
}

// jobStatus is what a launcher knows of a replica's job.
type jobStatus struct {
	running bool   // started (Slurm: RUNNING)
	pending string // Slurm: queued, with this reason
	gone    bool   // ended, or left the queue
	why     string // how it ended
	node    string
}

// launcher starts replicas somewhere and stops them.
type launcher interface {
	start(ctx context.Context, r *replicaRun) error
	// poll reports the state of each replica's job by name.
	poll(ctx context.Context, rs []*replicaRun) (map[string]jobStatus, error)
	// stop ends the replicas and returns once they are gone (or ctx ends).
	stop(ctx context.Context, rs []*replicaRun) error
}

// replicaEnv is the environment a replica needs beside the inherited one.
func replicaEnv(expDir string, task int, name string) []string {
	return []string{"GPUORCH_EXPERIMENT_DIR=" + expDir, EnvTask + "=" + strconv.Itoa(task), EnvReplica + "=" + name}
}

// slurmLauncher runs each replica as one Slurm job of the deployment's
// replica script (slurm/replica.sbatch: its slice's partition, QOS, shards,
// MPS environment and enforcer), named after the experiment, task and
// replica, its output in the replica's directory.
type slurmLauncher struct {
	plan   *Plan
	client *sbatch.Client
	expDir string
	expID  string
	task   int
	// node is where the task runs: replicas go there when the plan wants
	// them on the load's node (is_local_gpu).
	node string
}

func (l *slurmLauncher) jobName(r *replicaRun) string {
	return fmt.Sprintf("%s.t%d.%s", l.expID, l.task, r.name)
}

func (l *slurmLauncher) start(ctx context.Context, r *replicaRun) error {
	if l.plan.Script == "" {
		return errkind.Invalidf("deployment: no replica script in %s (experiment created without the slurm executor?)", layout.DeploymentFile)
	}
	if strings.ContainsRune(string(r.dir), '\\') {
		return errkind.Invalidf("deployment: the replica directory %s holds a backslash, which Slurm's --output patterns cannot express; use another GPUORCH_HOME", clip.Quote(string(r.dir)))
	}
	args := []string{"--job-name=" + l.jobName(r), "--output=" + string(sbatch.LiteralPattern(r.dir.Log())),
		"--export=ALL," + strings.Join(replicaEnv(l.expDir, l.task, r.name), ",")}
	if l.plan.LocalGPU {
		if l.node == "" {
			return errkind.Invalidf("deployment: is_local_gpu puts replicas on the task's node, but this task runs outside Slurm (no SLURMD_NODENAME)")
		}
		args = append(args, "--nodelist="+l.node)
	}
	if strings.ContainsAny(l.expDir, ",") {
		return errkind.Invalidf("deployment: the experiment directory %s holds a comma, which sbatch --export cannot pass; use another GPUORCH_HOME", clip.Quote(l.expDir))
	}
	id, err := l.client.SubmitFile(ctx, l.plan.Script, args...)
	if err != nil {
		return fmt.Errorf("submit replica %s: %w", r.name, err)
	}
	r.job = id
	return writeJob(r, JobRecord{Executor: "slurm", Job: id, Submitted: r.submitted})
}

func writeJob(r *replicaRun, rec JobRecord) error {
	if err := os.MkdirAll(string(r.dir), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteJSON(r.dir.Job(), rec, 0o644)
}

func (l *slurmLauncher) ids(rs []*replicaRun) []string {
	var ids []string
	for _, r := range rs {
		if r.job != "" {
			ids = append(ids, r.job)
		}
	}
	return ids
}

func (l *slurmLauncher) poll(ctx context.Context, rs []*replicaRun) (map[string]jobStatus, error) {
	ids := l.ids(rs)
	out := map[string]jobStatus{}
	if len(ids) == 0 {
		return out, nil
	}
	tasks, err := l.client.Queue(ctx, strings.Join(ids, ","))
	if err != nil {
		return nil, err
	}
	byJob := map[string]sbatch.Task{}
	for _, t := range tasks {
		byJob[t.JobID] = t
	}
	for _, r := range rs {
		if r.job == "" {
			continue
		}
		t, ok := byJob[r.job]
		switch {
		case !ok:
			out[r.name] = jobStatus{gone: true, why: "Slurm job " + r.job + " left the queue"}
		case !t.InQueue:
			out[r.name] = jobStatus{gone: true, why: "Slurm job " + r.job + " " + t.Raw, node: t.Nodes}
		case t.State == sbatch.StateRunning || t.State == sbatch.StateCompleting:
			out[r.name] = jobStatus{running: true, node: t.Nodes}
		default:
			out[r.name] = jobStatus{pending: cmpOr(t.Reason, string(t.State))}
		}
	}
	return out, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// stop cancels the replicas' jobs and waits until squeue no longer lists
// them as queued, running or completing.
func (l *slurmLauncher) stop(ctx context.Context, rs []*replicaRun) error {
	ids := l.ids(rs)
	if len(ids) == 0 {
		return nil
	}
	if err := l.client.CancelJobs(ctx, ids...); err != nil {
		return fmt.Errorf("cancel replica jobs %s: %w", strings.Join(ids, ","), err)
	}
	for {
		tasks, err := l.client.Queue(ctx, strings.Join(ids, ","))
		if err != nil {
			return err
		}
		live := 0
		for _, t := range tasks {
			if t.InQueue {
				live++
			}
		}
		if live == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica jobs %s still in the queue: %w", strings.Join(ids, ","), ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// localLauncher runs each replica as a process on this machine (its own
// process group, stopped with SIGTERM and, after 10 s, SIGKILL).
type localLauncher struct {
	self   string
	expDir string
	task   int

	mu    sync.Mutex
	procs map[string]*localProc
}

type localProc struct {
	cmd  *exec.Cmd
	done chan error
	err  error // once done is closed
	log  *os.File
}

func (l *localLauncher) start(ctx context.Context, r *replicaRun) error {
	if err := os.MkdirAll(string(r.dir), 0o755); err != nil {
		return err
	}
	lf, err := os.OpenFile(r.dir.Log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(l.self, "deploy", "replica")
	cmd.Env = append(os.Environ(), replicaEnv(l.expDir, l.task, r.name)...)
	cmd.Dir = l.expDir
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start replica %s: %w", r.name, err)
	}
	p := &localProc{cmd: cmd, done: make(chan error), log: lf}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	l.mu.Lock()
	if l.procs == nil {
		l.procs = map[string]*localProc{}
	}
	l.procs[r.name] = p
	l.mu.Unlock()
	r.job = "pid " + strconv.Itoa(cmd.Process.Pid)
	host, _ := os.Hostname()
	return writeJob(r, JobRecord{Executor: "local", PID: cmd.Process.Pid, Host: host, Submitted: r.submitted})
}

func (l *localLauncher) proc(name string) *localProc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs[name]
}

func (l *localLauncher) poll(_ context.Context, rs []*replicaRun) (map[string]jobStatus, error) {
	out := map[string]jobStatus{}
	host, _ := os.Hostname()
	for _, r := range rs {
		p := l.proc(r.name)
		if p == nil {
			continue
		}
		select {
		case <-p.done:
			why := "exited"
			if p.err != nil {
				why = p.err.Error()
			}
			out[r.name] = jobStatus{gone: true, why: "process " + why, node: host}
		default:
			out[r.name] = jobStatus{running: true, node: host}
		}
	}
	return out, nil
}

func (l *localLauncher) stop(ctx context.Context, rs []*replicaRun) error {
	var wg sync.WaitGroup
	for _, r := range rs {
		p := l.proc(r.name)
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pid := p.cmd.Process.Pid
			_ = syscall.Kill(-pid, syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				<-p.done
			case <-ctx.Done():
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				<-p.done
			}
		}()
	}
	wg.Wait()
	return nil
}

// CancelReplicas stops every replica the experiment's tasks (nil = all)
// ever started that may still run: their Slurm jobs with one scancel, local
// processes on this host with SIGTERM. It is what `gpuorch cancel` does
// besides cancelling the tasks, for replicas whose task could not stop them
// (killed). It returns how many it asked to stop.
func CancelReplicas(ctx context.Context, client *sbatch.Client, expDir string, tasks []int) (int, error) {
	if _, ok, err := ReadPlan(expDir); err != nil || !ok {
		return 0, err
	}
	var pattern []string
	if tasks == nil {
		pattern = []string{filepath.Join(layout.Experiment(expDir).Tasks(), "*", layout.ReplicasDir, "*", layout.JobFile)}
	}
	for _, i := range tasks {
		pattern = append(pattern, filepath.Join(string(layout.Experiment(expDir).Task(i)), layout.ReplicasDir, "*", layout.JobFile))
	}
	host, _ := os.Hostname()
	var jobs []string
	n := 0
	for _, p := range pattern {
		files, _ := filepath.Glob(p)
		for _, f := range files {
			b, err := limitio.ReadFile(f, limitio.Small.As("replica job record"))
			if err != nil {
				continue
			}
			var rec JobRecord
			if json.Unmarshal(b, &rec) != nil {
				continue
			}
			switch {
			case rec.Executor == "slurm" && rec.Job != "":
				jobs = append(jobs, rec.Job)
			case rec.Executor == "local" && rec.PID > 0 && rec.Host == host:
				if err := syscall.Kill(-rec.PID, syscall.SIGTERM); err == nil {
					n++
				}
			}
		}
	}
	if len(jobs) == 0 {
		return n, nil
	}
	if client == nil {
		client = &sbatch.Client{}
	}
	q, err := client.Queue(ctx, strings.Join(jobs, ","))
	if err != nil {
		return n, fmt.Errorf("replica jobs: %w", err)
	}
	var live []string
	for _, t := range q {
		if t.InQueue {
			live = append(live, t.JobID)
		}
	}
	if len(live) == 0 {
		return n, nil
	}
	if err := client.CancelJobs(ctx, live...); err != nil && !errors.Is(err, context.Canceled) {
		return n, fmt.Errorf("cancel replica jobs: %w", err)
	}
	return n + len(live), nil
}
