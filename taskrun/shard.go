package taskrun

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
)

// shardSpec is what --shard asks a process to do.
type shardSpec struct {
	index, count int
	merge        bool
}

// parseShard reads Options.Shard: "" (the whole task), "I/K" (shard I of
// K), "slurm" (this Slurm task's: SLURM_PROCID of SLURM_STEP_NUM_TASKS), or
// "merge" (merge the shards' summaries; "merge/K" when the manifest does not
// say K). manifest is the manifest's shards; when it is above 1, K must
// equal it.
func parseShard(v string, manifest int, getenv func(string) string) (shardSpec, error) {
	sharded := manifest > 1
	var sp shardSpec
	switch {
	case v == "":
		if sharded {
			return sp, fmt.Errorf("this task runs as %d shards: run each with --shard I/%d (--shard slurm in a Slurm job step), then --shard merge", manifest, manifest)
		}
		return shardSpec{count: 1}, nil
	case v == "merge":
		if !sharded {
			return sp, errors.New("--shard merge: the manifest does not say how many shards there are (shards); give --shard merge/K")
		}
		return shardSpec{merge: true, count: manifest}, nil
	case v == "slurm":
		id, n := getenv("SLURM_PROCID"), cmp.Or(getenv("SLURM_STEP_NUM_TASKS"), getenv("SLURM_NTASKS"))
		if id == "" || n == "" {
			return sp, errors.New("--shard slurm: SLURM_PROCID and SLURM_STEP_NUM_TASKS are not set (run it under srun)")
		}
		v = id + "/" + n
	}
	a, b, ok := strings.Cut(v, "/")
	if a == "merge" && ok {
		sp.merge = true
		a = "0"
	}
	i, err1 := strconv.Atoi(a)
	k, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return shardSpec{}, fmt.Errorf("--shard %q: want I/K (shard I of K, from 0), slurm, or merge", v)
	}
	if k < 2 || k > loadgen.MaxShards || i < 0 || i >= k {
		return shardSpec{}, fmt.Errorf("--shard %q: want 0 ≤ I < K and 2 ≤ K ≤ %d", v, loadgen.MaxShards)
	}
	if sharded && k != manifest {
		return shardSpec{}, fmt.Errorf("--shard %q: the manifest says %d shards", v, manifest)
	}
	sp.index, sp.count = i, k
	return sp, nil
}

// runShard runs shard sp of the task: its part of the workload, from the
// start all shards agree on, keeping its histograms, its outputs in its own
// directory (tasks/<i>/shards/<s>/) and its points tagged shard=<s>.
func runShard(ctx context.Context, cfg *loadgen.Config, w *loadgen.Workload, opts Options, sp shardSpec) (*loadgen.Summary, error) {
	attempt, err := attemptID(os.Getenv)
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	open, closed, err := w.Shard(sp.index, sp.count, loadgen.ShardOptions{KeepSeq: len(cfg.Target.PromptFiles) > 0})
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	host := cmp.Or(os.Getenv("SLURMD_NODENAME"), hostname())
	info := &loadgen.ShardInfo{Index: sp.index, Count: sp.count, Attempt: attempt, Host: host, PID: os.Getpid(),
		Split: strings.Trim(open+","+closed, ",")}
	task := layout.Task(opts.Dir)
	rv := &rendezvous{dir: task.ShardStart(attempt), shard: sp.index, count: sp.count, host: host,
		timeout: cmp.Or(cfg.ShardTimeout.D(), loadgen.DefaultShardTimeout)}
	met := false
	ro := loadgen.RunOptions{
		KeepHDR:         true,
		SkipCalibration: sp.index != 0,
		Rendezvous: func(ctx context.Context, calib map[string]time.Duration) (time.Time, map[string]time.Duration, error) {
			start, use, me, err := rv.meet(ctx, calib)
			if err != nil {
				return start, nil, err
			}
			met = true
			info.Start, info.StartOffset = start, time.Now().Sub(start)
			info.ClockOffset, info.ClockUncertainty = me.ClockOffset, me.ClockUncertainty
			return start, use, nil
		},
	}
	sum, err := run(ctx, cfg, w, opts, task.Shard(sp.index), info, ro)
	if err != nil && !met && ctx.Err() == nil {
		rv.fail(err) // the others need not wait for this one
	}
	return sum, err
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// mergeShards merges the summaries the shards of this attempt wrote into the
// task's summary.json (loadgen.MergeSummaries), names every shard that
// failed or wrote none, and returns the merged summary with an error unless
// every shard completed. The points stay the shards' own: review merges
// their histograms (results.MergeShards).
func mergeShards(cfg *loadgen.Config, task layout.Task, count int) (*loadgen.Summary, error) {
	attempt, err := attemptID(os.Getenv)
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	var sums []*loadgen.Summary
	var missing []int
	for s := range count {
		var sum loadgen.Summary
		if readJSON(task.Shard(s).Summary(), &sum) != nil || sum.Shard == nil || sum.Shard.Attempt != attempt {
			missing = append(missing, s)
			continue
		}
		sums = append(sums, &sum)
	}
	var m *loadgen.Summary
	if len(sums) > 0 {
		if m, err = loadgen.MergeSummaries(sums); err != nil {
			return nil, fmt.Errorf("merge the shards' summaries: %w", err)
		}
	} else {
		m = &loadgen.Summary{Experiment: cfg.Experiment, Task: cfg.Task, Workload: cfg.Workload.Name, Target: cfg.Target.URL,
			Protocol: cfg.Target.Protocol, Tags: cfg.Tags, Status: loadgen.StatusFailed}
	}
	if len(missing) > 0 {
		ready := readyRecords(task.ShardStart(attempt))
		var msgs []string
		for _, s := range missing {
			rec := ready[s]
			info := loadgen.ShardInfo{Index: s, Count: count, Attempt: attempt, Host: rec.Host, PID: rec.PID,
				Status: "missing", Error: "wrote no summary: the shard died or was killed"}
			m.Shards = append(m.Shards, info)
			msgs = append(msgs, fmt.Sprintf("%s wrote no summary: it died or was killed (its log lines start with %q)", info.Name(), strconv.Itoa(s)+": "))
		}
		sort.Slice(m.Shards, func(i, j int) bool { return m.Shards[i].Index < m.Shards[j].Index })
		m.Status = loadgen.StatusFailed
		if m.Error != "" {
			msgs = append(msgs, m.Error)
		}
		m.Error = strings.Join(msgs, "; ")
	}
	if err := atomicfile.WriteJSON(task.Summary(), m, 0o644); err != nil {
		return m, err
	}
	switch m.Status {
	case loadgen.StatusCompleted:
		return m, nil
	case loadgen.StatusInterrupted:
		return m, errkind.Interrupted(errors.New("a shard was interrupted: " + m.Error))
	}
	return m, errors.New(m.Error)
}
