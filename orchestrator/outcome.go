package orchestrator

import (
	"context"
	"errors"
	"fmt"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/sbatch"
)

// Outcome is how an experiment's run ended, as an error of the kind the CLI
// maps to its exit code (nil: every task completed, or was submitted):
// interrupted, a service unavailable (the run's error, or every failed task
// unable to reach its target), or a failure. The per-task outcome has
// already been shown, so a failure from the tasks is errkind.Reported.
func Outcome(ctx context.Context, st State, execErr error) error {
	switch {
	case st.State == ExpInterrupted || ctx.Err() != nil:
		return errkind.Reported(errkind.Interrupted(fmt.Errorf("experiment %s interrupted", st.ID)))
	case errors.Is(execErr, errkind.ErrUnavailable):
		return errkind.Unavailablef("run: %w (experiment %s saved as %s; retry with %s)", execErr, st.ID, st.State, sbatch.CommandLine("gpuorch", "run", "--resume", st.ID))
	case execErr != nil:
		return fmt.Errorf("run: %w (experiment %s is %s)", execErr, st.ID, st.State)
	case st.State == ExpCancelled:
		return errkind.Reported(fmt.Errorf("experiment %s cancelled", st.ID))
	case st.State == ExpFailed:
		unreachable, other := 0, 0
		for _, t := range st.Tasks {
			switch {
			case t.State == TaskCompleted:
			case t.ExitCode != nil && *t.ExitCode == TaskExitUnreachable:
				unreachable++
			default:
				other++
			}
		}
		if unreachable > 0 && other == 0 {
			return errkind.Reported(errkind.Unavailablef("experiment %s: %d task(s) could not reach their target", st.ID, unreachable))
		}
		return errkind.Reported(fmt.Errorf("experiment %s failed", st.ID))
	}
	return nil
}
