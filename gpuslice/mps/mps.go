// Package mps runs one MPS control daemon per Slurm job: what the MPS hook
// (hook.sh, Slurm's Prolog and Epilog) does through `gpuorch slice mps
// prolog|epilog`. The prolog starts nvidia-cuda-mps-control -d on the job's
// GPUs with its own CUDA_MPS_PIPE_DIRECTORY and CUDA_MPS_LOG_DIRECTORY
// (DIR/<jobid>/pipe, DIR/<jobid>/log), sets the slice's limits on the daemon
// (set_default_active_thread_percentage, set_default_device_pinned_mem_limit)
// and reads them back; the epilog quits it. A GPU serves one MPS server at a
// time, so a job whose GPU another live job's (or a node-wide) MPS daemon
// holds is refused. The outcome is a file in DIR/<jobid> the job script
// reads: env (the variables that reach the daemon), refused (why the job
// must not run) or unavailable (why it runs without MPS).
package mps

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/sbatch"
)

// Outcome files in DIR/<jobid>, read by the job script (orchestrator.ApplySlice).
const (
	FileEnv         = "env"         // export lines: CUDA_MPS_PIPE_DIRECTORY, CUDA_MPS_LOG_DIRECTORY
	FileRefused     = "refused"     // the message; the job exits 75 before its command
	FileUnavailable = "unavailable" // the message; the job runs without MPS
)

// DefaultProcName is what the kernel shows as the name (comm, cut to 15
// bytes) of both nvidia-cuda-mps-control and nvidia-cuda-mps-server.
const DefaultProcName = "nvidia-cuda-mps"

// Config is where the daemons live and how they are found.
type Config struct {
	Dir     string // per-job directories DIR/<jobid>
	Control string // the MPS control program
	// ProcName is the process name prefix that marks an MPS process in
	// /proc; default DefaultProcName.
	ProcName string
	Proc     string // default /proc
	// ReadyWait bounds waiting for a new daemon to answer; StopWait for a
	// quit daemon to go before it is killed. Default 10 s each.
	ReadyWait, StopWait time.Duration
	// JobRunning says whether a job still runs, to tell a live job's daemon
	// from one its epilog never stopped; default: scontrol show job.
	JobRunning func(ctx context.Context, job string) (bool, error)
	// Now is time.Now for the log; tests may fix it.
	Now func() time.Time
}

// Job is the job a prolog or epilog runs for.
type Job struct {
	ID       string
	Node     string
	UID, GID int
	GPUs     []int // this node's GPUs of the job (SLURM_JOB_GPUS)
	Req      gpuslice.MPSRequest
}

var jobID = regexp.MustCompile(`^[0-9]+$`)

// JobFromEnv reads the job from the variables Slurm gives its prolog and
// epilog. ok is false when the job's comment carries no MPS request.
func JobFromEnv(getenv func(string) string) (j Job, ok bool, err error) {
	j.Req, ok, err = gpuslice.ParseMPSComment(getenv("SLURM_JOB_COMMENT"))
	if !ok || err != nil {
		return j, ok, err
	}
	j.ID, j.Node = getenv("SLURM_JOB_ID"), getenv("SLURMD_NODENAME")
	if !jobID.MatchString(j.ID) {
		return j, true, fmt.Errorf("SLURM_JOB_ID %q: want a job id", j.ID)
	}
	if j.UID, err = strconv.Atoi(getenv("SLURM_JOB_UID")); err != nil {
		return j, true, fmt.Errorf("SLURM_JOB_UID %q: want a user id", getenv("SLURM_JOB_UID"))
	}
	if j.GID, err = strconv.Atoi(getenv("SLURM_JOB_GID")); err != nil {
		return j, true, fmt.Errorf("SLURM_JOB_GID %q: want a group id", getenv("SLURM_JOB_GID"))
	}
	for _, g := range strings.Split(getenv("SLURM_JOB_GPUS"), ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		n, err := strconv.Atoi(g)
		if err != nil || n < 0 {
			return j, true, fmt.Errorf("SLURM_JOB_GPUS %q: want GPU indices", getenv("SLURM_JOB_GPUS"))
		}
		j.GPUs = append(j.GPUs, n)
	}
	return j, true, nil
}

// The hook hands gpuorch its [mps] paths in these variables (defaults:
// gpuslice.DefaultMPSDir, DefaultMPSControl).
const (
	EnvDir     = "GPUORCH_MPS_DIR"
	EnvControl = "GPUORCH_MPS_CONTROL"
)

// Hook is `gpuorch slice mps prolog|epilog`, what the MPS hook runs: the
// job from Slurm's prolog environment, the directory and control program
// from EnvDir and EnvControl (c's own are ignored). A job without an MPS
// request is left alone. It returns the line to print.
func (c Config) Hook(ctx context.Context, what string, getenv func(string) string) (string, error) {
	if what != "prolog" && what != "epilog" {
		return "", errkind.Invalidf("gpuorch slice mps %q: want prolog or epilog", what)
	}
	c.Dir, c.Control = cmp(getenv(EnvDir), gpuslice.DefaultMPSDir), cmp(getenv(EnvControl), gpuslice.DefaultMPSControl)
	j, ok, err := JobFromEnv(getenv)
	switch {
	case err != nil:
		return "", errkind.Invalid(err)
	case !ok:
		return "no gpuorch-mps= request in SLURM_JOB_COMMENT: nothing to do", nil
	case what == "epilog":
		return "gpuorch: MPS of job " + j.ID + " stopped", c.Epilog(ctx, j.ID)
	}
	o, err := c.Prolog(ctx, j)
	return o.Message, err
}

// Outcome is what the prolog did for a job.
type Outcome struct {
	Job     string
	Started bool   // the daemon runs with the limits set
	Refused string // why the job must not run
	// Unavailable says why the job runs without MPS (no control program,
	// no GPU on this node).
	Unavailable string
	Message     string // one line for the log
}

func (c Config) procName() string { return cmp(c.ProcName, DefaultProcName) }
func (c Config) proc() string     { return cmp(c.Proc, "/proc") }

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func wait(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// JobDir is the job's directory.
func (c Config) JobDir(job string) string { return filepath.Join(c.Dir, job) }

// Prolog starts the job's MPS daemon, or records why not. The error is for
// what could not be recorded (the directory cannot be written).
func (c Config) Prolog(ctx context.Context, j Job) (Outcome, error) {
	o := Outcome{Job: j.ID}
	if !jobID.MatchString(j.ID) {
		return o, fmt.Errorf("job id %q: want digits", j.ID)
	}
	unlock, err := c.lock()
	if err != nil {
		return o, err
	}
	defer unlock()
	// A daemon of an earlier run of this job (requeued) is not to be trusted.
	if err := c.stop(ctx, j.ID); err != nil {
		return o, err
	}
	where := "job " + j.ID
	if j.Node != "" {
		where += " on " + j.Node
	}
	if len(j.GPUs) == 0 {
		o.Unavailable = fmt.Sprintf("gpuorch: no MPS for %s: the job has no GPU on this node (SLURM_JOB_GPUS is empty)", where)
		return o, c.record(j, FileUnavailable, o.Unavailable+"\n", &o)
	}
	if fi, err := os.Stat(c.Control); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		o.Unavailable = fmt.Sprintf("gpuorch: no MPS for %s: %s is not an executable (no NVIDIA driver here?); the slice's compute limit is watched by the enforcer only", where, c.Control)
		return o, c.record(j, FileUnavailable, o.Unavailable+"\n", &o)
	}
	hs, err := c.holders()
	if err != nil {
		return o, err
	}
	for _, h := range hs {
		shared := h.sharesGPU(j.GPUs)
		if shared < 0 || h.job == j.ID {
			continue
		}
		if h.job != "" {
			running, rerr := c.jobRunning(ctx, h.job)
			if rerr == nil && !running {
				// Its epilog never ran (slurmd restarted, node rebooted
				// mid-job): the daemon is stale.
				if err := c.stop(ctx, h.job); err != nil {
					return o, err
				}
				c.log("prolog", h.job, "stopped the stale MPS daemon of ended job "+h.job)
				continue
			}
			o.Refused = fmt.Sprintf("gpuorch: MPS refused for %s: GPU %d is held by job %s's MPS daemon (pid %s, %s). "+
				"A GPU serves one MPS server at a time, and that one carries job %s's limits. "+
				"The job did not start (exit 75); resubmit it, or keep compute-limited slices on separate GPUs.",
				where, shared, h.job, joinInts(h.pids), h.pipe, h.job)
		} else {
			o.Refused = fmt.Sprintf("gpuorch: MPS refused for %s: GPU %d is held by an MPS daemon gpuorch did not start (pid %s, pipe directory %s). "+
				"A GPU serves one MPS server at a time. The job did not start (exit 75); stop that daemon (echo quit | CUDA_MPS_PIPE_DIRECTORY=%s nvidia-cuda-mps-control) or keep this node out of the pool.",
				where, shared, joinInts(h.pids), h.pipe, h.pipe)
		}
		return o, c.record(j, FileRefused, o.Refused+"\n", &o)
	}
	if err := c.start(ctx, j); err != nil {
		c.stop(ctx, j.ID)
		o.Refused = fmt.Sprintf("gpuorch: MPS refused for %s: the MPS control daemon did not take the slice's limits: %v. The job did not start (exit 75).", where, err)
		return o, c.record(j, FileRefused, o.Refused+"\n", &o)
	}
	o.Started = true
	mem := "no pinned memory limit"
	if j.Req.PinnedMiB > 0 {
		mem = fmt.Sprintf("%dM pinned device memory per GPU", j.Req.PinnedMiB)
	}
	o.Message = fmt.Sprintf("gpuorch: MPS for %s: GPU %s, %d %% of the threads, %s (%s)", where, joinInts(j.GPUs), j.Req.ThreadPercent, mem, c.JobDir(j.ID))
	c.log("prolog", j.ID, o.Message)
	return o, nil
}

// Epilog stops the job's daemon (if any) and removes its directory.
func (c Config) Epilog(ctx context.Context, job string) error {
	if !jobID.MatchString(job) {
		return fmt.Errorf("job id %q: want digits", job)
	}
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return c.stop(ctx, job)
}

func (c Config) env(j Job) []string {
	gpus := make([]string, len(j.GPUs))
	for i, g := range j.GPUs {
		gpus[i] = strconv.Itoa(g)
	}
	dir := c.JobDir(j.ID)
	return []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"CUDA_VISIBLE_DEVICES=" + strings.Join(gpus, ","),
		// Slurm's GPU indices are NVML's, which are in PCI bus order.
		"CUDA_DEVICE_ORDER=PCI_BUS_ID",
		"CUDA_MPS_PIPE_DIRECTORY=" + filepath.Join(dir, "pipe"),
		"CUDA_MPS_LOG_DIRECTORY=" + filepath.Join(dir, "log"),
		// The daemon and the servers it starts carry the job's id, so the
		// enforcer charges their GPU memory to the job.
		"SLURM_JOB_ID=" + j.ID,
	}
}

// start creates the job's directories, starts the daemon, sets the limits
// and reads them back, and writes the env file.
func (c Config) start(ctx context.Context, j Job) error {
	dir := c.JobDir(j.ID)
	for _, d := range []string{dir, filepath.Join(dir, "pipe"), filepath.Join(dir, "log")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// The job's processes (its user) must reach the pipes; the daemon runs
	// as root.
	for _, d := range []string{dir, filepath.Join(dir, "pipe")} {
		if err := os.Chown(d, j.UID, j.GID); err != nil {
			return err
		}
	}
	env := c.env(j)
	out, err := os.Create(filepath.Join(dir, "log", "gpuorch-start.out"))
	if err != nil {
		return err
	}
	defer out.Close()
	sctx, cancel := context.WithTimeout(ctx, wait(c.ReadyWait, 10*time.Second))
	defer cancel()
	// Output to a file, not a pipe: the daemon keeps what it inherits, and
	// waiting for a pipe to close would wait for the daemon to end.
	cmd := exec.CommandContext(sctx, c.Control, "-d")
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, "/", out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // not in the prolog's process group
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		return fmt.Errorf("%s -d: %v: %s", c.Control, err, strings.TrimSpace(string(b)))
	}
	// Ready when it answers.
	for {
		if _, err := c.send(sctx, env, "get_default_active_thread_percentage"); err == nil {
			break
		} else if sctx.Err() != nil {
			return fmt.Errorf("the daemon did not answer within %s: %v", wait(c.ReadyWait, 10*time.Second), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmds := []string{"set_default_active_thread_percentage " + strconv.Itoa(j.Req.ThreadPercent)}
	if j.Req.PinnedMiB > 0 {
		for i := range j.GPUs { // device numbers as the daemon sees them
			cmds = append(cmds, fmt.Sprintf("set_default_device_pinned_mem_limit %d %dM", i, j.Req.PinnedMiB))
		}
	}
	if out, err := c.send(sctx, env, cmds...); err != nil {
		return fmt.Errorf("%s: %v", strings.Join(cmds, "; "), err)
	} else if strings.Contains(strings.ToLower(out), "unknown") || strings.Contains(strings.ToLower(out), "error") {
		return fmt.Errorf("%s: %s", strings.Join(cmds, "; "), strings.TrimSpace(out))
	}
	got, err := c.send(sctx, env, "get_default_active_thread_percentage")
	if err != nil {
		return err
	}
	pct, err := strconv.ParseFloat(strings.TrimSpace(got), 64)
	if err != nil || int(pct+0.5) != j.Req.ThreadPercent {
		return fmt.Errorf("get_default_active_thread_percentage says %q after setting %d", strings.TrimSpace(got), j.Req.ThreadPercent)
	}
	// What the job's processes need to reach the daemon.
	var b strings.Builder
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CUDA_MPS_") {
			b.WriteString("export " + k + "=" + sbatch.Quote(v) + "\n")
		}
	}
	return c.write(j, FileEnv, b.String())
}

// send writes commands to the control program's stdin and returns what it
// printed.
func (c Config) send(ctx context.Context, env []string, cmds ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, c.Control)
	cmd.Env, cmd.Dir = env, "/"
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// stop quits the job's daemon, kills what is left of its MPS processes
// after StopWait, and removes the job's directory. The caller holds the
// lock.
func (c Config) stop(ctx context.Context, job string) error {
	dir := c.JobDir(job)
	pipe := filepath.Join(dir, "pipe")
	h, err := c.holder(pipe)
	if err != nil {
		return err
	}
	if h != nil {
		env := c.env(Job{ID: job})
		c.send(ctx, env, "quit") // a dead daemon cannot answer; the wait below decides
		deadline := time.Now().Add(wait(c.StopWait, 10*time.Second))
		for h != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			if h, err = c.holder(pipe); err != nil {
				return err
			}
		}
		for i := 0; h != nil && i < 20; i++ {
			for _, pid := range h.pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(50 * time.Millisecond)
			if h, err = c.holder(pipe); err != nil {
				return err
			}
		}
		if h != nil {
			return fmt.Errorf("MPS processes %s of job %s survive SIGKILL", joinInts(h.pids), job)
		}
		c.log("epilog", job, "stopped the MPS daemon of job "+job)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// holder is the MPS processes (control daemon, servers) of one pipe
// directory.
type holder struct {
	pipe string
	job  string // the job whose directory the pipe is in; "" for a daemon gpuorch did not start
	pids []int
	gpus []int // nil with all: every GPU
	all  bool
}

// sharesGPU returns the first of gpus h holds, or -1.
func (h *holder) sharesGPU(gpus []int) int {
	for _, g := range gpus {
		if h.all || slices.Contains(h.gpus, g) {
			return g
		}
	}
	return -1
}

func (c Config) holder(pipe string) (*holder, error) {
	hs, err := c.holders()
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		if h.pipe == pipe {
			return h, nil
		}
	}
	return nil, nil
}

// holders finds every MPS process in /proc, grouped by pipe directory,
// sorted by it.
func (c Config) holders() ([]*holder, error) {
	ents, err := os.ReadDir(c.proc())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", c.proc(), err)
	}
	byPipe := map[string]*holder{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		base := filepath.Join(c.proc(), e.Name())
		comm, err := os.ReadFile(base + "/comm")
		if err != nil || !strings.HasPrefix(strings.TrimSpace(string(comm)), c.procName()) {
			continue
		}
		// A zombie (a daemon that quit, not yet reaped) holds nothing; its
		// environ reads empty, which would look like a daemon for every GPU.
		if stat, err := os.ReadFile(base + "/stat"); err != nil || zombie(string(stat)) {
			continue
		}
		environ, err := os.ReadFile(base + "/environ")
		if err != nil || len(environ) == 0 {
			continue // gone, or not ours to read
		}
		pipe, visible, hasVisible := "/tmp/nvidia-mps", "", false
		for _, kv := range strings.Split(string(environ), "\x00") {
			if v, ok := strings.CutPrefix(kv, "CUDA_MPS_PIPE_DIRECTORY="); ok && v != "" {
				pipe = filepath.Clean(v)
			} else if v, ok := strings.CutPrefix(kv, "CUDA_VISIBLE_DEVICES="); ok {
				visible, hasVisible = v, true
			}
		}
		h := byPipe[pipe]
		if h == nil {
			h = &holder{pipe: pipe}
			if rel, err := filepath.Rel(c.Dir, pipe); err == nil {
				if job, rest, _ := strings.Cut(rel, "/"); jobID.MatchString(job) && rest == "pipe" {
					h.job = job
				}
			}
			byPipe[pipe] = h
		}
		h.pids = append(h.pids, pid)
		gpus, all := parseVisible(visible, hasVisible)
		h.all = h.all || all
		for _, g := range gpus {
			if !slices.Contains(h.gpus, g) {
				h.gpus = append(h.gpus, g)
			}
		}
	}
	out := make([]*holder, 0, len(byPipe))
	for _, h := range byPipe {
		sort.Ints(h.pids)
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pipe < out[j].pipe })
	return out, nil
}

// zombie says whether a /proc/PID/stat line is of a zombie or dead process.
func zombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[i+1:])
	return i < 0 || len(f) == 0 || f[0] == "Z" || f[0] == "X"
}

// parseVisible reads CUDA_VISIBLE_DEVICES: unset means every GPU; an entry
// that is not an index (a UUID, a MIG device) is taken to mean every GPU
// too, the safe reading for a conflict check.
func parseVisible(v string, set bool) (gpus []int, all bool) {
	if !set {
		return nil, true
	}
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, true
		}
		gpus = append(gpus, n)
	}
	return gpus, false
}

func (c Config) jobRunning(ctx context.Context, job string) (bool, error) {
	if c.JobRunning != nil {
		return c.JobRunning(ctx, job)
	}
	return SlurmJobRunning(ctx, job)
}

// SlurmJobRunning asks slurmctld whether a job still holds its allocation.
func SlurmJobRunning(ctx context.Context, job string) (bool, error) {
	// A prolog must be quick: one try, 10 s at most (an error counts as
	// running, so the job is refused rather than a live daemon stopped).
	recs, err := (&sbatch.Client{Timeout: 10 * time.Second, Attempts: 1}).ShowJob(ctx, job)
	if err != nil {
		if strings.Contains(err.Error(), "Invalid job id") {
			return false, nil
		}
		return false, err
	}
	for _, r := range recs {
		switch r["JobState"] {
		case "RUNNING", "COMPLETING", "SUSPENDED", "CONFIGURING", "STOPPED":
			return true, nil
		}
	}
	return false, nil
}

// lock serialises prologs and epilogs on the node (several jobs start at
// once) with flock on DIR/.lock.
func (c Config) lock() (func(), error) {
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		return nil, fmt.Errorf("MPS directory %q: want an absolute path", c.Dir)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(c.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// record writes an outcome file and logs its message.
func (c Config) record(j Job, name, msg string, o *Outcome) error {
	o.Message = strings.TrimSpace(msg)
	c.log("prolog", j.ID, o.Message)
	if err := os.MkdirAll(c.JobDir(j.ID), 0o700); err != nil {
		return err
	}
	if err := os.Chown(c.JobDir(j.ID), j.UID, j.GID); err != nil {
		return err
	}
	return c.write(j, name, msg)
}

func (c Config) write(j Job, name, content string) error {
	p := filepath.Join(c.JobDir(j.ID), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Chown(p, j.UID, j.GID)
}

// log appends a line to DIR/hook.log: Slurm keeps no prolog output, so
// this is where an admin sees what the hook did.
func (c Config) log(what, job, msg string) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	f, err := os.OpenFile(filepath.Join(c.Dir, "hook.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s job %s: %s\n", now().UTC().Format(time.RFC3339), what, job, msg)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
