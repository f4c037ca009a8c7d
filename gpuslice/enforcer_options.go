package gpuslice

import (
	"os"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// What Slurm tells a job's processes: the job's id and the node's name.
const (
	EnvJobID    = "SLURM_JOB_ID"
	EnvNodeName = "SLURMD_NODENAME"
)

// EnforcerOptions say which jobs a node's enforcer serves and how it runs.
// nvmlx.NewEnforcer builds the enforcer from them; the environment is read
// here (through Getenv) so that every caller reads it the same way.
type EnforcerOptions struct {
	// Job is the job to watch in per-job mode; "" means $SLURM_JOB_ID.
	Job string
	// LimitsDir selects daemon mode: every job that registered its limits
	// in it (DirLimits). Without it, the one job's limits come from its
	// GPUORCH_SLICE_* variables (LimitFromEnv).
	LimitsDir string
	// Metrics is a line-protocol file slice_violation points are appended
	// to; "" writes none.
	Metrics string
	// Node names the node in metrics; "" means $SLURMD_NODENAME, else the
	// hostname.
	Node           string
	Interval       time.Duration // poll period; default 500 ms
	ComputeSustain time.Duration // see EnforcerConfig
	DryRun         bool
	// Getenv reads the environment; default os.Getenv.
	Getenv func(string) string
}

func (o EnforcerOptions) getenv(k string) string {
	if o.Getenv == nil {
		return os.Getenv(k)
	}
	return o.Getenv(k)
}

// JobID is the job the options name: Job, else $SLURM_JOB_ID ("" if
// neither).
func (o EnforcerOptions) JobID() string {
	if o.Job != "" {
		return o.Job
	}
	return o.getenv(EnvJobID)
}

// JobLimits gives the limits the enforcer acts on: the registered ones in
// LimitsDir (daemon mode), else the job's own from the environment. A
// missing job or a bad limit variable is bad input (errkind.ErrInvalid).
func (o EnforcerOptions) JobLimits() (Limits, error) {
	if o.LimitsDir != "" {
		return &DirLimits{Dir: o.LimitsDir}, nil
	}
	job := o.JobID()
	if job == "" {
		return nil, errkind.Invalidf("no job: run inside a Slurm job, or give --job ID, or --limits-dir DIR for daemon mode")
	}
	lim, err := LimitFromEnv(o.getenv)
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	return StaticLimits{job: lim}, nil
}

// Config is the enforcer's configuration, with the node's name resolved.
func (o EnforcerOptions) Config() EnforcerConfig {
	node := o.Node
	if node == "" {
		node = o.getenv(EnvNodeName)
	}
	if node == "" {
		node, _ = os.Hostname()
	}
	return EnforcerConfig{Node: node, Interval: o.Interval, ComputeSustain: o.ComputeSustain, DryRun: o.DryRun}
}

// Register writes the job's limit variables to dir/<job> for a node daemon
// (RegisterLimits) and returns the job's id.
func (o EnforcerOptions) Register(dir string) (string, error) {
	job := o.JobID()
	return job, RegisterLimits(dir, job, o.getenv)
}
