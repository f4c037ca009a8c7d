package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/sbatch"
)

func init() {
	RegisterExecutor("slurm", func(o ExecutorOptions) (Executor, error) { return NewSlurm(o) })
}

// Slurm submits an experiment's tasks as ONE sbatch array job: array index
// i runs `gpuorch loadgen run --manifest $GPUORCH_EXPERIMENT_DIR/tasks/i/
// manifest.json`, its output in tasks/i/log. Submit returns once slurmctld
// accepted the job; Refresh reads the tasks' states back from squeue and
// sacct. See docs/slurm.md.
type Slurm struct {
	binary string
	client *sbatch.Client
	log    *slog.Logger
}

// NewSlurm builds the Slurm executor. Binary, when set, overrides the
// spec's slurm.binary and the default (this process's executable).
func NewSlurm(o ExecutorOptions) (*Slurm, error) {
	lg := o.Logger
	if lg == nil {
		lg = slog.Default()
	}
	return &Slurm{binary: o.Binary, client: &sbatch.Client{Log: lg}, log: lg}, nil
}

// SetClient replaces the Slurm client (tests point it at another slurm.conf).
func (s *Slurm) SetClient(c *sbatch.Client) { s.client = c }

func (s *Slurm) Name() string { return "slurm" }

// resolveBinary picks the gpuorch binary tasks run: the executor option,
// the spec's slurm.binary, or this executable, made absolute.
func resolveBinary(opt string, plan *Plan) (string, error) {
	bin := opt
	if bin == "" {
		bin = plan.Slurm.Binary
	}
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find the gpuorch binary (set slurm.binary): %w", err)
		}
		bin = exe
	}
	if !filepath.IsAbs(bin) {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return "", err
		}
		bin = abs
	}
	return bin, nil
}

// SlurmJob is the array job for the given task indices of an experiment
// whose directory is expDir, running binary. It is what Submit submits and
// what `gpuorch render` writes.
func SlurmJob(plan *Plan, expID, expDir, binary string, indices []int) (*sbatch.Job, error) {
	if len(indices) == 0 {
		return nil, errors.New("no tasks to submit")
	}
	dir, err := filepath.Abs(expDir)
	if err != nil {
		return nil, err
	}
	// The directory is literal text in --output's pattern (PatternIn
	// escapes its '%'); a backslash makes Slurm replace none of the
	// pattern's symbols, so such a directory cannot carry tasks/%a/log.
	if strings.ContainsRune(dir, '\\') {
		return nil, fmt.Errorf("experiment directory %q contains a backslash, which Slurm's --output patterns cannot carry; use another GPUORCH_HOME", dir)
	}
	sp := plan.Slurm
	j := &sbatch.Job{
		Name:          expID,
		Partition:     sp.Partition,
		QOS:           sp.QOS,
		Account:       sp.Account,
		Time:          sp.Time,
		CPUsPerTask:   sp.CPUsPerTask,
		Mem:           sp.Mem,
		GPUs:          sp.GPUs,
		Constraint:    sp.Constraint,
		NodeList:      sp.Nodelist,
		Exclude:       sp.Exclude,
		Array:         sbatch.ArraySpec(indices),
		ArrayThrottle: sp.Throttle,
		Output:        sbatch.PatternIn(dir, sbatch.FilePattern(layout.TasksDir+"/%a/"+layout.LogFile)),
		WorkDir:       dir,
		OpenMode:      "append", // a retried task appends to its log
		Comment:       sp.Comment,
	}
	if j.Comment == "" {
		j.Comment = "gpuorch experiment " + expID
	}
	if sp.Nodes > 0 {
		j.Nodes = strconv.Itoa(sp.Nodes)
	}
	if dp := plan.Deployment; dp != nil && dp.LocalGPU && dp.Slice != nil && j.Partition == "" {
		// is_local_gpu: the replicas go to the load's node, so the load
		// runs on a node of their pool.
		j.Partition = dp.Slice.Partition
		if j.QOS == "" {
			j.QOS = dp.Slice.SlurmQoS
		}
	}
	if sp.Gres != "" {
		j.GRES = strings.Split(sp.Gres, ",")
	}
	if j.Time == "" && plan.Run.Duration > 0 {
		// The load run plus calibration, flushing and start-up slack.
		j.Time = sbatch.FormatTime(plan.Run.Duration.D()*2 + 2*time.Minute)
	}
	for _, a := range sp.ExtraArgs {
		o, err := parseExtraArg(a)
		if err != nil {
			return nil, err
		}
		j.Extra = append(j.Extra, o)
	}
	j.Env = append(j.Env, sbatch.Env("GPUORCH_EXPERIMENT_DIR", dir))
	for _, kv := range plan.TaskEnv() {
		k, v, _ := strings.Cut(kv, "=")
		j.Env = append(j.Env, sbatch.Env(k, v))
	}
	keys := make([]string, 0, len(sp.Env))
	for k := range sp.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !sbatch.ValidName(k) {
			return nil, fmt.Errorf("slurm.env: %q is not an environment variable name", k)
		}
		j.Env = append(j.Env, sbatch.Env(k, sp.Env[k]))
	}
	task := []sbatch.Arg{sbatch.Lit(binary), sbatch.Lit("loadgen"), sbatch.Lit("run"), sbatch.Lit("--manifest"),
		sbatch.Cat(sbatch.Var("GPUORCH_EXPERIMENT_DIR"), sbatch.Lit("/tasks/"), sbatch.Var("SLURM_ARRAY_TASK_ID"), sbatch.Lit("/manifest.json"))}
	j.Body = []sbatch.Line{sbatch.Comment("gpuorch: one array task per sweep point; task i reads tasks/i/manifest.json")}
	if k := plan.Run.Shards; k > 1 {
		shardedBody(j, k, max(plan.Run.ShardsPerNode, 1), sp.CPUsPerTask, task)
		if _, err := j.Render(); err != nil {
			return nil, fmt.Errorf("[slurm]: %w", err)
		}
		return j, nil
	}
	if sl := plan.Slurm.Slice; sl != nil {
		// Partition, QOS, shards and env from the slice, and the task
		// beside its enforcer (so not exec'd).
		j.Body = append(j.Body, sbatch.Comment(fmt.Sprintf("gpuorch: [slice] pool %s, qos %s, %s of one %s", sl.Workload.Pool, sl.Workload.QoS, sl.Gres, sl.GPU.Name)))
		ApplySlice(j, *sl, binary, sbatch.Command(task...))
	} else {
		j.Body = append(j.Body, sbatch.Exec(task...))
	}
	if _, err := j.Render(); err != nil {
		return nil, fmt.Errorf("[slurm]: %w", err)
	}
	return j, nil
}

// shardedBody makes each array task of j one sharded task: ceil(k/perNode)
// nodes, and one job step of k tasks, perNode per node (srun), each running
// its shard of the
// task (--shard slurm: SLURM_PROCID of k); then, in the batch step once all
// shards have ended, whatever became of them, the merge of their summaries,
// whose exit status is the task's. srun keeps the other shards running when
// one dies (--kill-on-bad-exit=0) and prefixes each output line with the
// shard's number (--label). slurm.cpus_per_task is given to srun too: since
// Slurm 22.05 a step no longer inherits the job's --cpus-per-task, and a
// shard confined to one CPU cannot pace in real time (docs/loadgen.md).
func shardedBody(j *sbatch.Job, k, perNode, cpus int, task []sbatch.Arg) {
	nodes := strconv.Itoa((k + perNode - 1) / perNode)
	j.Nodes, j.NTasksPerNode = nodes, perNode
	srun := sbatch.Lits("srun", "--nodes="+nodes, "--ntasks="+strconv.Itoa(k), "--ntasks-per-node="+strconv.Itoa(perNode))
	if cpus > 0 {
		srun = append(srun, sbatch.Lit("--cpus-per-task="+strconv.Itoa(cpus)))
	}
	srun = append(append(srun, sbatch.Lits("--kill-on-bad-exit=0", "--label")...), task...)
	j.Body = []sbatch.Line{
		sbatch.Comment(fmt.Sprintf("gpuorch: one array task per sweep point, run as %d shards on %s nodes; task i reads tasks/i/manifest.json", k, nodes)),
		sbatch.Command(append(srun, sbatch.Lits("--shard", "slurm")...)...),
		sbatch.Comment("gpuorch: merge the shards' summaries; the task fails naming any shard that did not complete"),
		sbatch.Exec(append(task[:len(task):len(task)], sbatch.Lits("--shard", "merge")...)...),
	}
}

// parseExtraArg turns one slurm.extra_args entry ("--gpu-bind=closest",
// "--exclusive") into an #SBATCH option.
func parseExtraArg(a string) (sbatch.Option, error) {
	if !strings.HasPrefix(a, "--") {
		return sbatch.Option{}, fmt.Errorf("slurm.extra_args: %q: want a long option, --name or --name=value", a)
	}
	name, val, _ := strings.Cut(a[2:], "=")
	// sbatch takes any unambiguous abbreviation of an option ("--out").
	for _, own := range []string{"array", "output", "error", "chdir", "job-name", "open-mode", "wrap"} {
		if len(name) >= 2 && strings.HasPrefix(own, name) {
			return sbatch.Option{}, fmt.Errorf("slurm.extra_args: --%s is set by gpuorch itself", own)
		}
	}
	return sbatch.Option{Name: name, Value: val}, nil
}

// scriptName is where the rendered script of submission n (1-based) goes,
// relative to the experiment directory.
func scriptName(n int) string { return filepath.Join("slurm", fmt.Sprintf("submit-%d.sbatch", n)) }

// Submit renders the array job for indices, saves the script in the
// experiment directory, submits it with one `sbatch --parsable`, and records
// the job id at once. Tasks that are still queued or running in an earlier
// job are refused, so a resume never runs a task twice.
func (s *Slurm) Submit(ctx context.Context, exp *Experiment, indices []int) error {
	bin, err := resolveBinary(s.binary, exp.Plan)
	if err != nil {
		return err
	}
	if err := s.refuseLive(ctx, exp, indices); err != nil {
		return err
	}
	st := exp.Snapshot()
	n := len(st.Submissions)
	if n == 0 {
		return errors.New("slurm executor: no submission recorded (call through orchestrator.Execute)")
	}
	job, err := SlurmJob(exp.Plan, st.ID, exp.Dir, bin, indices)
	if err != nil {
		return err
	}
	script, err := job.Render()
	if err != nil {
		return err
	}
	rel := scriptName(n)
	path := filepath.Join(exp.Dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("slurm executor: %w", err)
	}
	if err := atomicfile.WriteFile(path, []byte(script), 0o644); err != nil {
		return err
	}
	if err := exp.Update(func(s *State) error {
		s.Submissions[n-1].Script = rel
		return nil
	}); err != nil {
		return err
	}
	abs, _ := filepath.Abs(path)
	id, err := s.client.SubmitFile(ctx, abs)
	if err != nil {
		if errors.Is(err, errkind.ErrUnavailable) {
			// "service unavailable: " leads the message, as it always has.
			return fmt.Errorf("%w: submit %s: %w", errkind.ErrUnavailable, rel, err)
		}
		return fmt.Errorf("submit %s: %w", rel, err)
	}
	s.log.Debug("submitted array job", "experiment", st.ID, "job", id, "tasks", len(indices))
	return exp.Update(func(st *State) error {
		st.Submissions[n-1].JobID = id
		for _, i := range indices {
			t := &st.Tasks[i]
			t.JobID = id + "_" + strconv.Itoa(i)
			t.Attempts++
		}
		return nil
	})
}

// taskJobs maps each task to the Slurm array job that last ran it, from the
// submission history (robust even if a task's own JobID was reset).
func taskJobs(st *State) map[int]string {
	m := map[int]string{}
	for _, sub := range st.Submissions {
		if sub.JobID == "" {
			continue
		}
		for _, i := range sub.Indices {
			m[i] = sub.JobID
		}
	}
	return m
}

// refuseLive fails if any of indices is still queued or running in an
// earlier Slurm job.
func (s *Slurm) refuseLive(ctx context.Context, exp *Experiment, indices []int) error {
	st := exp.Snapshot()
	jobs := taskJobs(&st)
	byJob := map[string][]int{}
	for _, i := range indices {
		if j, ok := jobs[i]; ok {
			byJob[j] = append(byJob[j], i)
		}
	}
	for job, idx := range byJob {
		q, err := s.client.Queue(ctx, job)
		if err != nil {
			if errors.Is(err, errkind.ErrUnavailable) {
				return fmt.Errorf("%w: %w", errkind.ErrUnavailable, err)
			}
			return err
		}
		want := map[int]bool{}
		for _, i := range idx {
			want[i] = true
		}
		var live []int
		for _, t := range q {
			if t.InQueue && want[t.Index] {
				live = append(live, t.Index)
			}
		}
		if len(live) > 0 {
			sort.Ints(live)
			return fmt.Errorf("tasks %s are still queued or running in Slurm job %s: wait for them (%s) or cancel them (%s) first",
				sbatch.ArraySpec(live), job, sbatch.CommandLine("gpuorch", "status", st.ID), sbatch.CommandLine("gpuorch", "cancel", st.ID))
		}
	}
	return nil
}

// Refresh reads the state of every unfinished submitted task from squeue and
// sacct (one pair of calls per array job) and saves it. A task whose end
// sacct has not recorded yet keeps its previous state.
func (s *Slurm) Refresh(ctx context.Context, exp *Experiment) error {
	st := exp.Snapshot()
	jobs := taskJobs(&st)
	byJob := map[string][]int{}
	for _, t := range st.Tasks {
		if j, ok := jobs[t.Index]; ok && !t.State.Terminal() {
			byJob[j] = append(byJob[j], t.Index)
		}
	}
	if len(byJob) == 0 {
		return nil
	}
	seen := map[int]sbatch.Task{}
	for job, idx := range byJob {
		tasks, err := s.client.Tasks(ctx, job, idx...)
		if err != nil {
			if errors.Is(err, errkind.ErrUnavailable) {
				return fmt.Errorf("%w: %w", errkind.ErrUnavailable, err)
			}
			return err
		}
		want := map[int]bool{}
		for _, i := range idx {
			want[i] = true
		}
		for _, t := range tasks {
			if want[t.Index] {
				seen[t.Index] = t
			}
		}
	}
	return exp.Update(func(s *State) error {
		live := false
		for i, t := range seen {
			ts := &s.Tasks[i]
			applySlurmTask(ts, t)
			live = live || t.InQueue
			if ts.State == TaskFailed && ts.Start != nil {
				// A sharded task: which shard failed or died, from the merge.
				if m := shardedFailure(exp.Plan, exp.Dir, i, *ts.Start, ""); m != "" {
					ts.Error = m + " (log: " + ts.Log + ")"
				}
			}
		}
		// A refused or failed resubmission left the experiment marked
		// not-submitted, but its earlier job is still in the queue.
		if live && s.State == ExpNotSubmitted {
			s.State, s.Error = ExpSubmitted, ""
		}
		s.State = Derive(s.State, s.Tasks)
		return nil
	})
}

// applySlurmTask maps a Slurm task row onto a task status.
func applySlurmTask(ts *TaskStatus, t sbatch.Task) {
	ts.JobID = t.ID()
	if t.Nodes != "" {
		ts.Node = t.Nodes
	}
	if !t.Start.IsZero() {
		start := t.Start.UTC()
		ts.Start = &start
	}
	switch {
	case t.InQueue && (t.State == sbatch.StateRunning || t.State == sbatch.StateCompleting):
		ts.State = TaskRunning
		ts.Error = ""
		return
	case t.InQueue:
		ts.State = TaskPending
		ts.Error = ""
		if t.Reason != "" {
			ts.Error = "pending: " + t.Reason
		}
		return
	case !t.Done():
		// Left the queue, not yet in sacct: keep the previous state.
		return
	}
	if !t.End.IsZero() {
		end := t.End.UTC()
		ts.End = &end
	}
	code := t.Exit.Code
	ts.ExitCode = &code
	log := " (log: " + ts.Log + ")"
	switch t.State {
	case sbatch.StateCompleted:
		ts.State = TaskCompleted
		ts.Error = ""
	case sbatch.StateTimeout:
		ts.State = TaskTimeout
		ts.Error = "Slurm time limit reached" + log
	case sbatch.StateCancelled:
		ts.State = TaskCancelled
		ts.Error = "Slurm: " + t.Raw
	default:
		ts.State = TaskFailed
		switch {
		case t.State == sbatch.StateFailed && code == TaskExitUnreachable:
			ts.Error = "target unreachable (exit 3)" + log
		case t.State == sbatch.StateFailed && t.Exit.Signal != 0:
			ts.Error = fmt.Sprintf("killed by signal %d", t.Exit.Signal) + log
		case t.State == sbatch.StateFailed:
			ts.Error = fmt.Sprintf("exit code %d", code) + log
		default:
			ts.Error = "Slurm: " + t.Raw + log
		}
	}
}

// Cancel cancels the given tasks (nil = every unfinished one) with scancel,
// one call per array job, and marks them cancelled. Tasks never submitted
// are marked cancelled too.
func (s *Slurm) Cancel(ctx context.Context, exp *Experiment, indices []int) error {
	st := exp.Snapshot()
	jobs := taskJobs(&st)
	want := map[int]bool{}
	for _, i := range indices {
		want[i] = true
	}
	byJob := map[string][]int{}
	var targets []int
	for _, t := range st.Tasks {
		if t.State.Terminal() || (indices != nil && !want[t.Index]) {
			continue
		}
		targets = append(targets, t.Index)
		if j, ok := jobs[t.Index]; ok {
			byJob[j] = append(byJob[j], t.Index)
		}
	}
	for job, idx := range byJob {
		if err := s.client.Cancel(ctx, job, idx...); err != nil {
			if errors.Is(err, errkind.ErrUnavailable) {
				return fmt.Errorf("%w: %w", errkind.ErrUnavailable, err)
			}
			return err
		}
	}
	return exp.Update(func(s *State) error {
		now := time.Now().UTC()
		for _, i := range targets {
			t := &s.Tasks[i]
			if t.State.Terminal() {
				continue
			}
			t.State = TaskCancelled
			t.End = &now
			t.Error = "cancelled by gpuorch cancel"
		}
		s.State = Derive(s.State, s.Tasks)
		return nil
	})
}

// RetryIndices lists the tasks `gpuorch retry` resubmits, under any
// executor: those that failed (including Slurm's NODE_FAIL, PREEMPTED and
// OUT_OF_MEMORY, recorded as failed) or timed out. Cancelled and interrupted
// tasks are left alone (resume them with `gpuorch run --resume`).
func RetryIndices(st *State) []int {
	var idx []int
	for _, t := range st.Tasks {
		if t.State == TaskFailed || t.State == TaskTimeout {
			idx = append(idx, t.Index)
		}
	}
	return idx
}
