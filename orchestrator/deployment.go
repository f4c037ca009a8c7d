package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/gpuorch/gpuorch/deploy"
	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/sbatch"
)

// resolveDeployment checks [deployment] against the rest of the spec
// (deploy.Spec.Resolve) and keeps the result for the plan; an error names
// the key's file and line. With a [slice], the slice is the replicas' (not
// the load's): its replicas and autoscaling range are the deployment's.
func (d *decoder) resolveDeployment(s *Spec) error {
	if len(s.Workloads) == 0 {
		return d.Errorf([]string{"deployment"}, "[deployment] serves the load of [[workload]] tables: add one")
	}
	in := deploy.Inputs{
		Slice: s.deploySlice, Interval: s.Run.Interval.D(), Deadline: s.SLO.Deadline.D(), Protocol: s.Target.Protocol,
		HasSLO: s.SLO.Deadline > 0 || s.SLO.Factor > 0 || s.SLO.TTFT > 0 || s.SLO.TPOT > 0 || s.SLO.E2EL > 0,
	}
	if tbl, ok := s.raw["slice"].(map[string]any); ok {
		in.SliceKeys = mapKeys(tbl)
	}
	p, err := s.Deployment.Resolve(in)
	if err != nil {
		var ke *deploy.KeyError
		if errors.As(err, &ke) {
			return d.Errorf(ke.Key, "%s", ke.Msg)
		}
		return d.Errorf([]string{"deployment"}, "%v", err)
	}
	if p.Time != "" {
		if _, err := (&sbatch.Job{Time: p.Time}).Render(); err != nil {
			return d.Errorf([]string{"deployment", "time"}, "deployment.time %s: %v", clip.Quote(p.Time), err)
		}
	}
	s.deployment = p
	return nil
}

// planDeployment completes the plan's deployment once its tasks are known:
// the replicas' time limit covers the longest task.
func planDeployment(s *Spec, p *Plan) {
	if s.deployment == nil {
		return
	}
	dp := *s.deployment
	if dp.Time == "" {
		var longest time.Duration
		for _, t := range p.Tasks {
			longest = max(longest, t.Config.Duration.D())
		}
		dp.Time = sbatch.FormatTime(2*longest + dp.ReadyTimeout.D() + 2*time.Minute)
	}
	p.Deployment = &dp
}

// writeDeployment finishes the experiment's deployment for executor
// (deploy.Plan.Finish) and writes deployment.json and, for replicas on
// Slurm, their job script slurm/replica.sbatch. binary "" is the spec's
// slurm.binary, else this executable.
func writeDeployment(e *Experiment, executor, binary string) error {
	if e.Plan.Deployment == nil {
		return nil
	}
	bin, err := resolveBinary(binary, e.Plan)
	if err != nil {
		return err
	}
	dp := *e.Plan.Deployment
	if err := dp.Finish(executor, bin, ""); err != nil {
		return errkind.Invalid(err)
	}
	if dp.Executor == "slurm" {
		job, err := ReplicaJob(e.Plan, e.ID(), e.Dir, bin)
		if err != nil {
			return errkind.Invalid(err)
		}
		script, err := job.Render()
		if err != nil {
			return errkind.Invalid(err)
		}
		path, err := filepath.Abs(layout.Experiment(e.Dir).ReplicaScript())
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(path, []byte(script), 0o644); err != nil {
			return err
		}
		dp.Script = path
	}
	return deploy.WritePlan(e.Dir, &dp)
}

// ReplicaJob is the Slurm job of one replica of the experiment's
// deployment: in the deployment's slice when it has one (ApplySlice:
// partition, QOS, shards, MPS environment, the enforcer beside the
// replica), running `gpuorch deploy replica` (deploy.RunReplica). The task
// submits it once per replica with the replica's name, output and
// environment on the sbatch command line.
func ReplicaJob(plan *Plan, expID, expDir, binary string) (*sbatch.Job, error) {
	dp := plan.Deployment
	if dp == nil {
		return nil, errors.New("the plan has no deployment")
	}
	dir, err := filepath.Abs(expDir)
	if err != nil {
		return nil, err
	}
	j := &sbatch.Job{
		Name: expID + ".replica", Time: dp.Time, WorkDir: dir, Account: plan.Slurm.Account,
		Output:  sbatch.PatternIn(dir, "slurm/replica-%j.log"), // the task names each replica's own
		Comment: "gpuorch deployment " + expID,
	}
	j.Env = append(j.Env, sbatch.Env("GPUORCH_EXPERIMENT_DIR", dir))
	keys := make([]string, 0, len(dp.Env))
	for k := range dp.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		j.Env = append(j.Env, sbatch.Env(k, dp.Env[k]))
	}
	j.Body = []sbatch.Line{sbatch.Comment("gpuorch: one replica of the deployment; gpuorch deploy replica starts the server on a free port and publishes its address")}
	replica := sbatch.Command(sbatch.Lit(binary), sbatch.Lit("deploy"), sbatch.Lit("replica"))
	if sl := dp.Slice; sl != nil {
		j.Body = append(j.Body, sbatch.Comment(fmt.Sprintf("gpuorch: [slice] pool %s, qos %s, %s of one %s", sl.Workload.Pool, sl.Workload.QoS, sl.Gres, sl.GPU.Name)))
		ApplySlice(j, *sl, binary, replica)
	} else {
		j.Body = append(j.Body, sbatch.Exec(sbatch.Lit(binary), sbatch.Lit("deploy"), sbatch.Lit("replica")))
	}
	if _, err := j.Render(); err != nil {
		return nil, fmt.Errorf("[deployment]: %w", err)
	}
	return j, nil
}

// Cancel is `gpuorch cancel`: it cancels the given tasks (nil = every
// unfinished one; an index the plan does not have is errkind.ErrInvalid)
// through the executor, then stops every replica of their deployments that
// may still run (their tasks stop them too; this catches those of a task
// that was killed). It returns how many tasks became cancelled.
func Cancel(ctx context.Context, exp *Experiment, ex Executor, indices []int) (int, error) {
	indices = append([]int(nil), indices...)
	sort.Ints(indices)
	for _, i := range indices {
		if i < 0 || i >= len(exp.Plan.Tasks) {
			return 0, errkind.Invalidf("experiment %s has no task %d (it has 0..%d)", exp.ID(), i, len(exp.Plan.Tasks)-1)
		}
	}
	if len(indices) == 0 {
		indices = nil
	}
	before := exp.Snapshot()
	if err := ex.Cancel(ctx, exp, indices); err != nil {
		return 0, err // an unreachable Slurm is errkind.ErrUnavailable
	}
	if _, err := deploy.CancelReplicas(ctx, nil, exp.Dir, indices); err != nil {
		return 0, fmt.Errorf("stop the deployment's replicas: %w", err)
	}
	after := exp.Snapshot()
	n := 0
	for i := range after.Tasks {
		if after.Tasks[i].State == TaskCancelled && before.Tasks[i].State != TaskCancelled {
			n++
		}
	}
	return n, nil
}
