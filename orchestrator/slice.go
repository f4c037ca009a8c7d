package orchestrator

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/tomlstrict"
	"github.com/gpuorch/gpuorch/sbatch"
)

// EnvPools names the pools file a [slice] uses when it sets no slice.pools.
const EnvPools = "GPUORCH_POOLS"

// SliceSpec is the [slice] table: a workload profile referenced by name
// plus per-experiment overrides (gpuslice.Override, keys named like
// TensorFusion's annotations), resolved against a pools file. Every task of
// the experiment runs in the resulting slice (docs/spec.md, "Slices in
// experiment specs").
type SliceSpec struct {
	// Pools is the pools file, relative to the spec's directory; default
	// $GPUORCH_POOLS.
	Pools             string `toml:"pools" json:"pools,omitempty"`
	gpuslice.Override        // profile, pool, qos, tflops_request, …
}

// resolveSlice loads the pools file of s.Slice and plans the slice, so that
// a bad profile or a request that cannot fit is a spec error before anything
// is created or submitted. The result goes to s.Slurm.Slice (and so into
// plan.json).
func (d *decoder) resolveSlice(s *Spec) error {
	ss := s.Slice
	path, from := ss.Pools, []string{"slice", "pools"}
	if path == "" {
		path, from = os.Getenv(EnvPools), []string{"slice"}
		if path == "" {
			return d.Errorf(from, `[slice] needs a pools file: set slice.pools = "pools.toml" (relative to the spec) or $%s`, EnvPools)
		}
	} else if !filepath.IsAbs(path) && s.File != "" {
		path = filepath.Join(filepath.Dir(s.File), path)
	}
	m, err := gpuslice.LoadModel(path)
	if err != nil {
		return d.Errorf(from, "slice.pools: %v", err)
	}
	// Zero means "not given" in an Override; written out, it is refused
	// like a 0 in a profile (it would plan as 100 % of the SMs).
	tbl, _ := s.raw["slice"].(map[string]any)
	for _, k := range []string{"tflops_request", "tflops_limit"} {
		if v, ok := tbl[k]; ok && (v == int64(0) || v == float64(0)) {
			return d.Errorf([]string{"slice", k}, "slice.%s 0: %s (%s)", k, gpuslice.TFLOPSProblem(0, nil), gpuslice.SlicePlace(ss.Pool, ss.Profile))
		}
	}
	sl, err := m.PlanOverride(ss.Override)
	if err != nil {
		key := d.sliceErrKey(s, err)
		msg := err.Error()
		if !strings.Contains(msg, path) {
			msg += " (in " + path + ")"
		}
		return d.Errorf(key, "%s: %s", tomlstrict.Dotted(key), msg)
	}
	if s.Deployment != nil {
		// The slice is the replicas'; [slurm] is the load's job.
		s.deploySlice = &sl
		return nil
	}
	// The slice decides where the job runs; a [slurm] value that says
	// otherwise is a contradiction, not a preference.
	for _, c := range []struct{ key, have, want string }{
		{"partition", s.Slurm.Partition, sl.Partition},
		{"qos", s.Slurm.QOS, sl.SlurmQoS},
		{"gres", s.Slurm.Gres, sl.Gres},
	} {
		if c.have != "" && c.have != c.want {
			return d.Errorf([]string{"slurm", c.key}, "slurm.%s %q conflicts with [slice], which sets %s %q (pool %s, qos %s): remove slurm.%s",
				c.key, c.have, c.key, c.want, sl.Workload.Pool, sl.Workload.QoS, c.key)
		}
	}
	if s.Slurm.GPUs != "" {
		return d.Errorf([]string{"slurm", "gpus"}, "slurm.gpus %q conflicts with [slice]: a slice is %s of one GPU, not whole GPUs; remove slurm.gpus", s.Slurm.GPUs, sl.Gres)
	}
	s.Slurm.Slice = &sl
	return nil
}

// sliceErrKey picks the [slice] key an error from gpuslice is about: the
// first of its candidate keys written in the spec (or set with --set), else
// the profile it came from, else the [slice] table.
func (d *decoder) sliceErrKey(s *Spec, err error) []string {
	var cands []string
	var fe *gpuslice.FitError
	msg := err.Error()
	switch {
	case errors.As(err, &fe) && strings.HasPrefix(fe.What, "tflops"):
		cands = []string{"tflops_limit", "tflops_request"}
	case errors.As(err, &fe):
		cands = []string{"vram_limit", "vram_request"}
	case strings.HasPrefix(msg, "profile "):
		cands = []string{"profile"}
	case strings.HasPrefix(msg, "pool ") || strings.HasPrefix(msg, "no pool"):
		cands = []string{"pool"}
	case strings.HasPrefix(msg, "qos "):
		cands = []string{"qos"}
	case strings.HasPrefix(msg, "tflops"):
		cands = []string{"tflops_request", "tflops_limit"}
	case strings.HasPrefix(msg, "vram"):
		cands = []string{"vram_request", "vram_limit"}
	case strings.HasPrefix(msg, "replicas") || strings.HasPrefix(msg, "autoscaling"):
		cands = []string{"replicas", "min_replicas", "max_replicas", "autoscaling"}
	}
	tbl, _ := s.raw["slice"].(map[string]any)
	for _, k := range append(cands, "profile") {
		if _, ok := tbl[k]; ok {
			return []string{"slice", k}
		}
	}
	return []string{"slice"}
}

// ApplySlice runs job j in slice s: the slice's partition, QOS, shards and
// requeue policy, its MPS and GPUORCH_SLICE_* environment (exported,
// quoted), its MPS request (the comment token, and the check of the MPS
// prolog's outcome: refused exits 75, started exports the daemon's pipe
// directory), and a body that starts the per-job enforcer (`gpuorch slice
// enforce`, which reads those variables) in the background, runs command,
// stops the enforcer and exits with the command's status. command must not
// be an sbatch.Exec line (the shell has to outlive it to stop the
// enforcer). It appends to j.Body, so a caller may put comments first.
func ApplySlice(j *sbatch.Job, s gpuslice.Slice, gpuorchBin string, command sbatch.Line) {
	j.Partition = s.Partition
	j.QOS = s.SlurmQoS
	j.GRES = []string{s.Gres}
	j.Requeue = sbatch.Bool(s.Requeue)
	for _, k := range s.EnvNames() {
		j.Env = append(j.Env, sbatch.Env(k, s.Env[k]))
	}
	if s.MPS != nil {
		// The MPS prolog reads the request from the comment and leaves its
		// outcome in DIR/<jobid> (gpuslice/mps).
		j.Comment = strings.TrimSpace(j.Comment + " " + s.MPS.Token())
		j.Body = append(j.Body,
			sbatch.Comment("gpuorch: the MPS prolog's outcome for this job (docs/gpu-slicing.md, \"MPS per job\")"),
			sbatch.Export("GPUORCH_MPS_JOB_DIR", sbatch.Cat(sbatch.Lit(s.MPS.Dir+"/"), sbatch.Var("SLURM_JOB_ID"))),
			sbatch.Raw(`if [ -r "$GPUORCH_MPS_JOB_DIR/refused" ]; then cat "$GPUORCH_MPS_JOB_DIR/refused" >&2; exit 75; fi
if [ -r "$GPUORCH_MPS_JOB_DIR/env" ]; then . "$GPUORCH_MPS_JOB_DIR/env"
else cat "$GPUORCH_MPS_JOB_DIR/unavailable" >&2 2>/dev/null || echo "gpuorch: no MPS for job $SLURM_JOB_ID: no outcome of the MPS prolog in $GPUORCH_MPS_JOB_DIR (is the hook installed? gpuorch admin plan)" >&2
fi`))
	}
	j.Body = append(j.Body,
		sbatch.Raw(sbatch.Quote(gpuorchBin)+" slice enforce & enforcer=$!"),
		command,
		sbatch.Raw(`rc=$?; kill "$enforcer" 2>/dev/null; exit $rc`),
	)
}

// SliceJob is a job running argv in slice s with the per-job enforcer
// started beside it (ApplySlice, as the Slurm executor does for experiments
// with a [slice]): what `gpuorch slice plan --script` prints.
func SliceJob(s gpuslice.Slice, gpuorchBin string, argv []string) *sbatch.Job {
	j := &sbatch.Job{Name: "slice-" + s.Workload.Pool}
	ApplySlice(j, s, gpuorchBin, sbatch.CommandArgv(argv...))
	return j
}
