package gpuslice

import (
	"context"

	"github.com/gpuorch/gpuorch/sbatch"
)

// Runner runs a Slurm command and returns its standard output. The admin,
// ClusterNodes, ProbeNode and the enforcer call Slurm's CLIs (sacctmgr,
// scontrol, srun) only through it, so callers can log, dry-run or point at
// another installation. The default is sbatch.Runner: timeouts, retries
// while Slurm is unreachable, and errors that quote Slurm and match
// errkind.ErrUnavailable when it cannot be reached.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// runner is r, or the default sbatch.Runner when r is nil.
func runner(r Runner) Runner {
	if r == nil {
		return sbatch.Runner{}
	}
	return r
}
