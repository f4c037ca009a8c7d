package gpuslice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/results"
)

// DeviceSample is one GPU's compute processes at one poll.
type DeviceSample struct {
	Index int
	Procs []ProcUsage
}

// ProcUsage is one process on one GPU. SMUtil is -1 when the device does
// not report per-process utilisation.
type ProcUsage struct {
	PID        int
	UsedMemory uint64
	SMUtil     int
}

// GPUReader samples the GPUs (nvmlx.Session, over real NVML or a mock).
// When some GPUs fail it returns the others' samples and an error.
type GPUReader interface {
	Sample() ([]DeviceSample, error)
}

// ProcTable maps a process to its Slurm job.
type ProcTable interface {
	// JobOf returns the job id of pid, or ok=false if it is in no job or
	// gone.
	JobOf(pid int) (job string, ok bool)
}

// Signaller acts on processes and jobs.
type Signaller interface {
	Signal(pid int, sig syscall.Signal) error
	Requeue(ctx context.Context, job string) error
}

// Clock is time.Now, injectable for tests.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// JobLimit is what one job may use and what happens when it uses more.
type JobLimit struct {
	VRAM           Bytes         // 0: no VRAM limit
	ComputePercent int           // SM %, 0: no compute limit
	QoS            string        // level name, for metrics
	OnOverrun      string        // VRAM: requeue, terminate, report
	Grace          time.Duration // SIGTERM → SIGKILL
	// OnComputeOverrun is what happens to a job whose SM share stays over
	// ComputePercent for ComputeWindow: report ("" too), terminate, requeue.
	OnComputeOverrun string
	// ComputeWindow: 0 takes the enforcer's ComputeSustain.
	ComputeWindow time.Duration
}

// LimitFromEnv reads a job's limit from the GPUORCH_SLICE_* variables that
// Plan puts in the job's environment (per-job mode).
func LimitFromEnv(getenv func(string) string) (JobLimit, error) {
	var l JobLimit
	if v := getenv(EnvVRAMLimit); v != "" {
		b, err := ParseBytes(v)
		if err != nil {
			return l, fmt.Errorf("%s: %w", EnvVRAMLimit, err)
		}
		l.VRAM = b
	}
	if v := getenv(EnvThreadPct); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return l, fmt.Errorf("%s %q: want 0..100", EnvThreadPct, v)
		}
		if n < 100 {
			l.ComputePercent = n
		}
	}
	l.QoS = getenv(EnvQoS)
	l.OnOverrun = getenv(EnvOnOverrun)
	switch l.OnOverrun {
	case "":
		l.OnOverrun = ActionTerminate
	case ActionRequeue, ActionTerminate, ActionReport:
	default:
		return l, fmt.Errorf("%s %q: want requeue, terminate or report", EnvOnOverrun, l.OnOverrun)
	}
	l.OnComputeOverrun = getenv(EnvOnComputeOverrun)
	switch l.OnComputeOverrun {
	case "":
		l.OnComputeOverrun = ActionReport
	case ActionRequeue, ActionTerminate, ActionReport:
	default:
		return l, fmt.Errorf("%s %q: want report, terminate or requeue", EnvOnComputeOverrun, l.OnComputeOverrun)
	}
	if v := getenv(EnvComputeWindow); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return l, fmt.Errorf("%s %q: want a duration such as 10s", EnvComputeWindow, v)
		}
		l.ComputeWindow = d
	}
	l.Grace = 30 * time.Second
	if v := getenv(EnvGrace); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return l, fmt.Errorf("%s %q: want a duration such as 30s", EnvGrace, v)
		}
		l.Grace = d
	}
	if l.VRAM == 0 && l.ComputePercent == 0 {
		return l, fmt.Errorf("no limit in the environment (%s, %s): is this job's script rendered from a slice?", EnvVRAMLimit, EnvThreadPct)
	}
	return l, nil
}

// Limits gives each job's limit; jobs without one are never acted on.
type Limits interface {
	Limit(job string) (JobLimit, bool)
}

// StaticLimits is a fixed job → limit table.
type StaticLimits map[string]JobLimit

func (s StaticLimits) Limit(job string) (JobLimit, bool) { l, ok := s[job]; return l, ok }

// EnforcerConfig tunes the enforcer.
type EnforcerConfig struct {
	Node     string        // for metrics; default hostname
	Interval time.Duration // poll period; default 500 ms
	// ComputeSustain is how long a job's SM share must stay above its
	// compute limit before its compute policy applies, for jobs whose
	// limit names no window; default 10 s.
	ComputeSustain time.Duration
	// ComputeHysteresis: once over its compute limit, a job counts as over
	// until its share falls to limit × (1 − ComputeHysteresis); default
	// 0.2. Between the two, the window keeps running.
	ComputeHysteresis float64
	// DryRun reports what it would do and touches nothing.
	DryRun bool
}

// Enforcer polls the GPUs, charges each process to its job and acts on
// jobs over their VRAM limit. It only ever signals PIDs that NVML lists on
// a GPU and the process table puts in the offending job, re-checked just
// before the signal.
type Enforcer struct {
	GPU    GPUReader
	Procs  ProcTable
	Sig    Signaller
	Limits Limits
	Clock  Clock
	Sink   results.Sink // may be nil
	Config EnforcerConfig

	mu   sync.Mutex
	jobs map[string]*jobState
}

// jobState is what the enforcer remembers of a job between polls. Stopping
// a job (SIGTERM, requeue, SIGKILL) is one escalation whichever limit
// started it; reports are once per kind and episode.
type jobState struct {
	termAt   time.Time // SIGTERM sent or requeue asked
	killed   bool
	requeued bool
	reported map[string]bool // kind → reported in this episode
	compute  computeEpisode
}

// computeEpisode is a run of polls with the job's SM share over its limit,
// kept going by hysteresis until the share falls to the release level.
type computeEpisode struct {
	over  bool
	since time.Time
	n     int     // polls with a reading
	sum   float64 // their shares, for the mean
}

// Event kinds.
const (
	KindVRAM    = "vram"
	KindCompute = "compute"
)

// Event is something the enforcer did or saw at one poll.
type Event struct {
	Time    time.Time `json:"time"`
	Job     string    `json:"job"`
	QoS     string    `json:"qos"`
	Kind    string    `json:"kind"`   // vram or compute
	Action  string    `json:"action"` // sigterm, sigkill, requeue, report, dry-run
	PIDs    []int     `json:"pids"`
	Used    uint64    `json:"used"`  // bytes (vram) or SM % (compute)
	Limit   uint64    `json:"limit"` // same unit
	Devices []int     `json:"devices"`
	Err     string    `json:"error,omitempty"`
}

type jobUsage struct {
	vram    uint64
	sm      map[int]int // device → summed SM % of the job's processes
	smKnown bool        // some device of the job reported per-process SM use
	pids    []int
	devices map[int]bool
}

// share is the job's SM % on its busiest GPU (a limit is per GPU), or -1
// when none of its GPUs reports per-process utilisation.
func (u *jobUsage) share() int {
	if !u.smKnown {
		return -1
	}
	peak := 0
	for _, v := range u.sm {
		peak = max(peak, v)
	}
	return peak
}

// Poll samples once and acts. It returns what it did.
func (e *Enforcer) Poll(ctx context.Context) ([]Event, error) {
	// A partial sample (some GPUs failed) is still acted on; the error is
	// returned with the events.
	samples, sampleErr := e.GPU.Sample()
	if sampleErr != nil {
		sampleErr = fmt.Errorf("sample GPUs: %w", sampleErr)
		if len(samples) == 0 {
			return nil, sampleErr
		}
	}
	clock := e.Clock
	if clock == nil {
		clock = realClock{}
	}
	now := clock.Now()
	usage := map[string]*jobUsage{}
	for _, d := range samples {
		for _, p := range d.Procs {
			job, ok := e.Procs.JobOf(p.PID)
			if !ok {
				continue
			}
			u := usage[job]
			if u == nil {
				u = &jobUsage{sm: map[int]int{}, devices: map[int]bool{}}
				usage[job] = u
			}
			u.vram += p.UsedMemory
			if p.SMUtil >= 0 {
				u.sm[d.Index] += p.SMUtil
				u.smKnown = true
			}
			u.pids = append(u.pids, p.PID)
			u.devices[d.Index] = true
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.jobs == nil {
		e.jobs = map[string]*jobState{}
	}
	var events []Event
	jobs := make([]string, 0, len(usage))
	for j := range usage {
		jobs = append(jobs, j)
	}
	sort.Strings(jobs)
	for _, job := range jobs {
		u := usage[job]
		lim, ok := e.Limits.Limit(job)
		if !ok {
			continue
		}
		st := e.jobs[job]
		if st == nil {
			st = &jobState{reported: map[string]bool{}}
			e.jobs[job] = st
		}
		vramOver := lim.VRAM > 0 && u.vram > uint64(lim.VRAM)
		if vramOver {
			if ev, ok := e.act(ctx, now, job, lim, st, u, KindVRAM, lim.OnOverrun, u.vram, uint64(lim.VRAM)); ok {
				events = append(events, ev)
			}
		} else {
			st.reported[KindVRAM] = false
		}
		if mean, sustained := e.computeStep(now, lim, st, u.share()); sustained {
			action := lim.OnComputeOverrun
			if action == "" {
				action = ActionReport
			}
			if ev, ok := e.act(ctx, now, job, lim, st, u, KindCompute, action, uint64(math.Round(mean)), uint64(lim.ComputePercent)); ok {
				events = append(events, ev)
			}
		}
		if !st.compute.over {
			st.reported[KindCompute] = false
		}
		if !vramOver && !st.compute.over && !st.killed && !st.requeued {
			// Back under every limit (e.g. memory freed after SIGTERM):
			// start over.
			st.termAt = time.Time{}
		}
	}
	for job := range e.jobs {
		if usage[job] == nil {
			delete(e.jobs, job) // no GPU process left
		}
	}
	if e.Sink != nil && len(events) > 0 {
		if err := e.Sink.Write(ctx, e.points(events)...); err != nil {
			return events, errors.Join(sampleErr, fmt.Errorf("write slice_violation: %w", err))
		}
	}
	return events, sampleErr
}

func keys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// computeStep feeds one poll's SM share of a job (-1: no reading) into its
// compute episode and says whether the job is in violation: the episode
// spans two polls or more (one busy sample never is a violation), has
// lasted the window, and its mean share is above the limit. It returns that
// mean.
func (e *Enforcer) computeStep(now time.Time, lim JobLimit, st *jobState, share int) (float64, bool) {
	c := &st.compute
	if lim.ComputePercent <= 0 || share < 0 {
		return 0, false // no limit, or nothing to go by: the episode stands
	}
	h := e.Config.ComputeHysteresis
	if h <= 0 || h >= 1 {
		h = 0.2
	}
	limit := float64(lim.ComputePercent)
	switch s := float64(share); {
	case !c.over && s > limit:
		*c = computeEpisode{over: true, since: now, n: 1, sum: s}
	case c.over && s <= limit*(1-h):
		*c = computeEpisode{}
	case c.over:
		c.n++
		c.sum += s
	}
	if !c.over {
		return 0, false
	}
	window := lim.ComputeWindow
	if window <= 0 {
		window = e.Config.ComputeSustain
	}
	if window <= 0 {
		window = 10 * time.Second
	}
	// Polls land on the interval's grid with some jitter: without a little
	// slack, a window that is a multiple of the interval would wait one more
	// poll whenever a tick came a hair early.
	iv := e.Config.Interval
	if iv <= 0 {
		iv = 500 * time.Millisecond
	}
	mean := c.sum / float64(c.n)
	return mean, c.n >= 2 && now.Sub(c.since) >= window-iv/10 && mean > limit
}

// act applies action to a job over a limit of kind: a report once per
// episode; requeue once; SIGTERM once, then SIGKILL to what is still on a
// GPU after the grace time. The escalation is shared between kinds, so a
// job stopped for VRAM is not stopped again for compute.
func (e *Enforcer) act(ctx context.Context, now time.Time, job string, lim JobLimit, st *jobState, u *jobUsage, kind, action string, used, limit uint64) (Event, bool) {
	ev := Event{Time: now, Job: job, QoS: lim.QoS, Kind: kind, Used: used, Limit: limit, Devices: keys(u.devices)}
	if e.Config.DryRun || action == ActionReport {
		if st.reported[kind] {
			return ev, false
		}
		st.reported[kind] = true
		ev.Action, ev.PIDs = action, u.pids
		if e.Config.DryRun {
			ev.Action = "dry-run:" + action
		}
		return ev, true
	}
	switch {
	case action == ActionRequeue && !st.requeued:
		// Slurm stops the job (SIGTERM, then SIGKILL after its KillWait)
		// and queues it again. If its processes still hold the GPU after
		// the grace time, they are killed below like a terminated job's.
		st.requeued, st.termAt = true, now
		ev.Action, ev.PIDs = ActionRequeue, u.pids
		if err := e.Sig.Requeue(ctx, job); err != nil {
			// Not requeueable (--no-requeue, or not a batch job): stop it instead.
			ev.Err = err.Error()
			slog.Warn("requeue failed; terminating instead", "job", job, "err", err)
			ev.Action = "sigterm"
			ev.PIDs = e.signal(job, u.pids, syscall.SIGTERM)
		}
		return ev, true
	case st.termAt.IsZero():
		st.termAt = now
		ev.Action, ev.PIDs = "sigterm", e.signal(job, u.pids, syscall.SIGTERM)
		return ev, true
	case !st.killed && now.Sub(st.termAt) >= lim.Grace:
		st.killed = true
		ev.Action, ev.PIDs = "sigkill", e.signal(job, u.pids, syscall.SIGKILL)
		return ev, true
	}
	return ev, false
}

// signal sends sig to each pid that still belongs to job and returns those
// it signalled.
func (e *Enforcer) signal(job string, pids []int, sig syscall.Signal) []int {
	var done []int
	for _, pid := range pids {
		if j, ok := e.Procs.JobOf(pid); !ok || j != job {
			continue // gone, or the PID was reused by another job's process
		}
		if err := e.Sig.Signal(pid, sig); err != nil {
			if !errors.Is(err, syscall.ESRCH) {
				slog.Warn("signal failed", "pid", pid, "signal", sig, "err", err)
			}
			continue
		}
		done = append(done, pid)
	}
	return done
}

func (e *Enforcer) points(events []Event) []results.Point {
	node := e.Config.Node
	if node == "" {
		node, _ = os.Hostname()
	}
	out := make([]results.Point, 0, len(events))
	for _, ev := range events {
		pids := make([]string, len(ev.PIDs))
		for i, p := range ev.PIDs {
			pids[i] = strconv.Itoa(p)
		}
		f := map[string]any{"used": int64(ev.Used), "limit": int64(ev.Limit), "pids": strings.Join(pids, ","), "n_pids": int64(len(ev.PIDs))}
		if ev.Err != "" {
			f["error"] = ev.Err
		}
		out = append(out, results.Point{Measurement: "slice_violation", Time: ev.Time,
			Tags:   map[string]string{"node": node, "job": ev.Job, "qos": ev.QoS, "kind": ev.Kind, "action": ev.Action},
			Fields: f})
	}
	return out
}

// Run polls every Interval until ctx ends. Sampling errors are logged and
// the next poll tries again.
func (e *Enforcer) Run(ctx context.Context, onEvent func(Event)) error {
	iv := e.Config.Interval
	if iv <= 0 {
		iv = 500 * time.Millisecond
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		evs, err := e.Poll(ctx)
		if err != nil {
			slog.Warn("enforcer poll", "err", err)
		}
		for _, ev := range evs {
			if onEvent != nil {
				onEvent(ev)
			}
		}
		select {
		case <-ctx.Done():
			if e.Sink != nil {
				fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := e.Sink.Flush(fctx); err != nil {
					return fmt.Errorf("flush slice_violation: %w", err)
				}
			}
			return nil
		case <-t.C:
		}
	}
}

// ProcFS is the real process table: /proc/PID/cgroup (a Slurm cgroup path
// .../job_<id>/...) first, since a process cannot leave its cgroup, then
// SLURM_JOB_ID in /proc/PID/environ (for proctrack/linuxproc clusters and
// processes started outside cgroups). Answers are cached by PID and start
// time, so a reused PID is looked up afresh.
type ProcFS struct {
	Root string // default /proc

	mu    sync.Mutex
	cache map[int]procEntry
}

type procEntry struct {
	start string
	job   string
	ok    bool
}

var cgroupJob = regexp.MustCompile(`/job_([0-9]+)(/|$)`)

func (p *ProcFS) root() string {
	if p.Root == "" {
		return "/proc"
	}
	return p.Root
}

// startTime is field 22 of /proc/PID/stat (after the parenthesised comm).
func (p *ProcFS) startTime(pid int) (string, bool) {
	// Raw syscalls into a stack buffer: this runs for every GPU process at
	// every poll, and os.ReadFile's fstat, poller and finalizer cost more
	// than the read.
	fd, err := syscall.Open(p.root()+"/"+strconv.Itoa(pid)+"/stat", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", false
	}
	var buf [1024]byte
	n, err := syscall.Read(fd, buf[:])
	syscall.Close(fd)
	if err != nil || n <= 0 {
		return "", false
	}
	s := string(buf[:n])
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", false
	}
	return f[19], true
}

func (p *ProcFS) JobOf(pid int) (string, bool) {
	start, ok := p.startTime(pid)
	if !ok {
		return "", false
	}
	p.mu.Lock()
	if e, ok := p.cache[pid]; ok && e.start == start {
		p.mu.Unlock()
		return e.job, e.ok
	}
	p.mu.Unlock()
	job, ok := p.lookup(pid)
	p.mu.Lock()
	if p.cache == nil || len(p.cache) > 8192 {
		// Entries of exited processes are never looked up again; starting
		// over now and then bounds a long-running daemon's memory.
		p.cache = map[int]procEntry{}
	}
	p.cache[pid] = procEntry{start: start, job: job, ok: ok}
	p.mu.Unlock()
	return job, ok
}

func (p *ProcFS) lookup(pid int) (string, bool) {
	dir := p.root() + "/" + strconv.Itoa(pid)
	if b, err := limitio.ReadFile(dir+"/cgroup", procFile); err == nil {
		if m := cgroupJob.FindStringSubmatch(string(b)); m != nil {
			return m[1], true
		}
	}
	b, err := limitio.ReadFile(dir+"/environ", procFile)
	if err != nil {
		return "", false
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, "SLURM_JOB_ID="); ok && v != "" {
			return v, true
		}
	}
	return "", false
}

// procFile bounds what is read of a process's /proc files: a job's
// environment is the user's to make as large as the kernel allows, and the
// enforcer runs as root on every node.
var procFile = limitio.Limits{What: "/proc file", Size: 4 << 20, Line: 4 << 20}

// DirLimits reads job limits from a directory of files named after job ids
// (DIR/<jobid>), each holding the job's GPUORCH_SLICE_* variables as
// NAME=VALUE lines: what `gpuorch slice enforce --register DIR` writes from
// inside a job, for one node daemon serving every job on the node.
type DirLimits struct {
	Dir string

	mu    sync.Mutex
	cache map[string]dirEntry
}

type dirEntry struct {
	mod time.Time
	lim JobLimit
	ok  bool
}

func (d *DirLimits) Limit(job string) (JobLimit, bool) {
	if job == "" || strings.ContainsAny(job, "/.") {
		return JobLimit{}, false
	}
	path := d.Dir + "/" + job
	fi, err := os.Stat(path)
	if err != nil {
		return JobLimit{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.cache[job]; ok && e.mod.Equal(fi.ModTime()) {
		return e.lim, e.ok
	}
	// A job writes this file; the daemon reading it runs as root: it is
	// read within limits, and a file over them is a bad limits file.
	b, err := limitio.ReadFile(path, limitio.Small.As("limits file"))
	var le *limitio.Error
	if err != nil && !errors.As(err, &le) {
		return JobLimit{}, false // unreadable for now: try again next poll
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			env[k] = v
		}
	}
	var lim JobLimit
	if err == nil {
		lim, err = LimitFromEnv(func(k string) string { return env[k] })
	}
	if err != nil {
		slog.Warn("bad limits file", "path", path, "err", err)
	}
	if d.cache == nil {
		d.cache = map[string]dirEntry{}
	}
	d.cache[job] = dirEntry{mod: fi.ModTime(), lim: lim, ok: err == nil}
	return lim, err == nil
}

// RegisterLimits writes the job's limit variables to DIR/<job> for DirLimits.
func RegisterLimits(dir, job string, getenv func(string) string) error {
	if job == "" || strings.ContainsAny(job, "/.") {
		return fmt.Errorf("bad job id %q", job)
	}
	if _, err := LimitFromEnv(getenv); err != nil {
		return err
	}
	var b strings.Builder
	for _, k := range []string{EnvVRAMLimit, EnvTFLOPSLimit, EnvThreadPct, EnvQoS, EnvOnOverrun, EnvGrace, EnvOnComputeOverrun, EnvComputeWindow} {
		if v := getenv(k); v != "" {
			b.WriteString(k + "=" + v + "\n")
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, job), []byte(b.String()), 0o644)
}

// OSSignaller signals with kill(2) and requeues with `scontrol requeue`.
type OSSignaller struct{ Run Runner }

func (s OSSignaller) Signal(pid int, sig syscall.Signal) error {
	if pid <= 1 {
		return fmt.Errorf("refusing to signal pid %d", pid)
	}
	return syscall.Kill(pid, sig)
}

func (s OSSignaller) Requeue(ctx context.Context, job string) error {
	_, err := runner(s.Run).Run(ctx, "scontrol", "requeue", job)
	return err
}
