package sbatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// Client is gpuorch's typed view of Slurm (submit, queue, accounting,
// cancel, …), each call run through Runner with the fields below. The zero
// value is ready to use: tools from PATH, a 60 s timeout per call, 4
// attempts with backoff while Slurm is unreachable.
type Client struct {
	// BinDir holds sbatch, squeue, … ("" = look them up in PATH).
	BinDir string
	// Env is added to the tools' environment (e.g. SLURM_CONF=…).
	Env []string
	// Timeout bounds each call (default 60 s); the context may end it sooner.
	Timeout time.Duration
	// Attempts is how often a call is tried while Slurm is unreachable
	// (default 4); Backoff is the first wait, doubled each time (default 1 s).
	Attempts int
	Backoff  time.Duration
	Log      *slog.Logger
}

// runner is the runner the client's calls go through.
func (c *Client) runner() Runner {
	return Runner{BinDir: c.BinDir, Env: c.Env, Timeout: c.Timeout, Attempts: c.Attempts, Backoff: c.Backoff, Log: c.Log}
}

// call runs a tool through the client's runner, retrying while Slurm is
// unreachable and retry allows it.
func (c *Client) call(ctx context.Context, stdin []byte, retry func(*Error) bool, name string, args ...string) (string, error) {
	return c.runner().call(ctx, stdin, retry, name, args...)
}

// Submit submits a batch script with `sbatch --parsable`, the script on
// stdin, extra sbatch arguments first. It returns the job id (the master id
// for an array). A submission is retried only after a connect failure, when
// slurmctld surely never saw it, so no job is submitted twice.
func (c *Client) Submit(ctx context.Context, script string, args ...string) (string, error) {
	argv := append([]string{"--parsable"}, args...)
	out, err := c.call(ctx, []byte(script), retryConnect, "sbatch", argv...)
	if err != nil {
		return "", err
	}
	return parseParsable(out)
}

// SubmitFile is Submit with the script read by sbatch from path (sbatch
// records the path; Slurm's own tools show it).
func (c *Client) SubmitFile(ctx context.Context, path string, args ...string) (string, error) {
	argv := append(append([]string{"--parsable"}, args...), path)
	out, err := c.call(ctx, nil, retryConnect, "sbatch", argv...)
	if err != nil {
		return "", err
	}
	return parseParsable(out)
}

// parseParsable reads sbatch --parsable output: "<jobid>" or
// "<jobid>;<cluster>", possibly after warning lines.
func parseParsable(out string) (string, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	id, _, _ := strings.Cut(last, ";")
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return "", fmt.Errorf("sbatch --parsable printed %q, not a job id", strings.TrimSpace(out))
	}
	return id, nil
}

// Ping asks slurmctld whether it is up (`scontrol ping`), without retries.
func (c *Client) Ping(ctx context.Context) error {
	out, err := c.runner().once(ctx, nil, "scontrol", "ping")
	if err != nil {
		var e *Error
		if errors.As(err, &e) && strings.Contains(e.Stderr+out, "DOWN") {
			e.Unreachable = true
		}
		return err
	}
	if !strings.Contains(out, "is UP") {
		return &Error{Args: []string{"scontrol", "ping"}, Stderr: strings.TrimSpace(out), Unreachable: true}
	}
	return nil
}

// Cancel cancels a job, or some of its array tasks (`scancel 123_[1,4-6]`).
// Cancelling a job that already ended is not an error.
func (c *Client) Cancel(ctx context.Context, jobID string, indices ...int) error {
	target := jobID
	if len(indices) > 0 {
		target = jobID + "_[" + ArraySpec(indices) + "]"
	}
	_, err := c.call(ctx, nil, retryAlways, "scancel", target)
	var e *Error
	if errors.As(err, &e) && (strings.Contains(e.Stderr, "already completed") || strings.Contains(e.Stderr, "Invalid job id")) {
		return nil
	}
	return err
}

// CancelJobs cancels whole jobs with one scancel call.
func (c *Client) CancelJobs(ctx context.Context, jobIDs ...string) error {
	if len(jobIDs) == 0 {
		return nil
	}
	_, err := c.call(ctx, nil, retryAlways, "scancel", jobIDs...)
	var e *Error
	if errors.As(err, &e) && (strings.Contains(e.Stderr, "already completed") || strings.Contains(e.Stderr, "Invalid job id")) {
		return nil
	}
	return err
}

// ShowJob returns `scontrol show job -o ID` as key → value for each record
// (one per array task still known to slurmctld), read by ParseOneliners.
func (c *Client) ShowJob(ctx context.Context, jobID string) ([]map[string]string, error) {
	out, err := c.call(ctx, nil, retryAlways, "scontrol", "show", "job", "-o", jobID)
	if err != nil {
		return nil, err
	}
	return ParseOneliners(out), nil
}

// ClusterName returns the Slurm cluster's name (ClusterName in `scontrol
// show config`, which reads it from slurmctld).
func (c *Client) ClusterName(ctx context.Context) (string, error) {
	out, err := c.call(ctx, nil, retryAlways, "scontrol", "show", "config")
	if err != nil {
		return "", err
	}
	name, ok := parseConfig(out)["ClusterName"]
	if !ok || name == "" {
		return "", fmt.Errorf("scontrol show config: no ClusterName in its output")
	}
	return name, nil
}

// parseConfig reads `scontrol show config`: "Key = Value" lines, padded
// with blanks; lines with no single word before '=' (headings, the ping
// line) are skipped.
func parseConfig(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(l, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			continue
		}
		if _, seen := m[k]; !seen { // the main section comes first
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

const squeueFormat = "%i|%T|%r|%N"

// Queue lists the job's tasks still in slurmctld's queue (`squeue -r`):
// pending, running, completing. A job squeue no longer knows yields none.
func (c *Client) Queue(ctx context.Context, jobID string) ([]Task, error) {
	out, err := c.call(ctx, nil, retryAlways, "squeue", "--noheader", "--array", "--states=all", "--jobs="+jobID, "--format="+squeueFormat)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && strings.Contains(e.Stderr, "Invalid job id") {
			return nil, nil
		}
		return nil, err
	}
	return parseSqueue(out)
}

func parseSqueue(out string) ([]Task, error) {
	return parseRows("squeue", out, 4, func(id TaskID, f []string) (Task, error) {
		st := ParseState(f[1])
		// squeue --states=all also lists recently finished tasks; only
		// non-terminal ones are "in the queue".
		return Task{JobID: id.JobID, State: st, Raw: f[1], Reason: nonNone(f[2]), Nodes: f[3], InQueue: !st.Terminal()}, nil
	})
}

// parseRows parses the '|'-separated rows of squeue or sacct: each row's
// first field is a job or array-task id, and a row standing for a range of
// pending tasks ("123_[5-9%2]") yields one Task per index.
func parseRows(tool, out string, fields int, row func(id TaskID, f []string) (Task, error)) ([]Task, error) {
	var tasks []Task
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) < fields {
			return nil, fmt.Errorf("%s: unexpected line %q", tool, line)
		}
		id, err := ParseTaskID(f[0])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tool, err)
		}
		t, err := row(id, f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tool, err)
		}
		indices := id.Indices
		if indices == nil {
			indices = []int{id.Index}
		}
		for _, i := range indices {
			t.Index = i
			tasks = append(tasks, t)
		}
	}
	return tasks, nil
}

func nonNone(s string) string {
	if s == "None" || s == "(null)" || s == "None assigned" {
		return ""
	}
	return s
}

const sacctFormat = "JobID,State,ExitCode,NodeList,Start,End"

// Accounting lists the job's tasks from `sacct -P -X` (allocations only, no
// steps). Exit codes come from this text output: 22.05's --json reports 0
// for failed jobs.
func (c *Client) Accounting(ctx context.Context, jobID string) ([]Task, error) {
	out, err := c.call(ctx, nil, retryAlways, "sacct", "--parsable2", "--noheader", "--allocations",
		"--jobs="+jobID, "--format="+sacctFormat)
	if err != nil {
		return nil, err
	}
	return parseSacct(out)
}

func parseSacct(out string) ([]Task, error) {
	return parseRows("sacct", out, 6, func(id TaskID, f []string) (Task, error) {
		exit, err := ParseExitStatus(f[2])
		if err != nil {
			return Task{}, err
		}
		st := ParseState(f[1])
		end := parseTime(f[5])
		return Task{JobID: id.JobID, State: st, Raw: f[1], Exit: exit, Nodes: nonNone(f[3]),
			Start: parseTime(f[4]), End: end, Accurate: st.Terminal() && !end.IsZero()}, nil
	})
}

// Tasks merges squeue and sacct into one row per task of the job, sorted by
// index. A task squeue still lists takes its live state from squeue (and
// exit code, times from sacct when present); otherwise sacct's row is used.
// A task in neither (finished, sacct lagging) is StateUnknown. want, when
// given, lists the indices that should exist, so tasks Slurm has not reported
// at all show up as StateUnknown too.
func (c *Client) Tasks(ctx context.Context, jobID string, want ...int) ([]Task, error) {
	q, err := c.Queue(ctx, jobID)
	if err != nil {
		return nil, err
	}
	a, err := c.Accounting(ctx, jobID)
	if err != nil {
		return nil, err
	}
	return MergeTasks(jobID, q, a, want), nil
}

// MergeTasks is the merge Tasks does, on already parsed rows.
func MergeTasks(jobID string, queue, acct []Task, want []int) []Task {
	byIdx := map[int]Task{}
	for _, t := range acct {
		byIdx[t.Index] = t
	}
	for _, t := range queue {
		if !t.InQueue {
			if _, ok := byIdx[t.Index]; !ok {
				t.Accurate = false
				byIdx[t.Index] = t
			}
			continue
		}
		if old, ok := byIdx[t.Index]; ok {
			t.Exit, t.Start, t.End = old.Exit, old.Start, old.End
			if t.Nodes == "" {
				t.Nodes = old.Nodes
			}
		}
		t.Accurate = false
		byIdx[t.Index] = t
	}
	for _, i := range want {
		if _, ok := byIdx[i]; !ok {
			byIdx[i] = Task{JobID: jobID, Index: i, State: StateUnknown}
		}
	}
	out := make([]Task, 0, len(byIdx))
	for _, t := range byIdx {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// Wait polls Tasks every interval until every task in want (or every task
// reported, when want is empty) is Done, calling progress (if not nil) after
// each poll. It returns the final rows.
func (c *Client) Wait(ctx context.Context, jobID string, want []int, interval time.Duration, progress func([]Task)) ([]Task, error) {
	if interval <= 0 {
		interval = time.Second
	}
	for {
		tasks, err := c.Tasks(ctx, jobID, want...)
		if err != nil && !errors.Is(err, errkind.ErrUnavailable) {
			return tasks, err
		}
		if err == nil {
			if progress != nil {
				progress(tasks)
			}
			done := len(tasks) > 0
			for _, t := range tasks {
				if !t.Done() {
					done = false
					break
				}
			}
			if done {
				return tasks, nil
			}
		}
		select {
		case <-ctx.Done():
			return tasks, ctx.Err()
		case <-time.After(interval):
		}
	}
}
