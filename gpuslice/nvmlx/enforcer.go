package nvmlx

import (
	"errors"
	"fmt"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/results"
)

// Enforcer is a gpuslice.Enforcer over this node's GPUs, holding the NVML
// session and the metrics file until Close.
type Enforcer struct {
	*gpuslice.Enforcer
	session *Session
	metrics *results.LineFile
}

// NewEnforcer builds the enforcer `gpuorch slice enforce` runs: the limits
// o chooses (a directory of registered jobs, or one job's environment),
// the GPUs of lib (nil: the real NVML), /proc as the process table, kill(2)
// and `scontrol requeue` to act, and o.Metrics as the sink.
//
// Bad options (no job, a bad limit variable, a metrics file that cannot be
// opened) are errkind.ErrInvalid; a node without NVML is
// errkind.ErrUnavailable.
func NewEnforcer(lib Lib, o gpuslice.EnforcerOptions) (*Enforcer, error) {
	limits, err := o.JobLimits()
	if err != nil {
		return nil, err
	}
	if lib == nil {
		lib = Default()
	}
	sess, err := Open(lib)
	if err != nil {
		if errors.Is(err, ErrNoNVML) {
			return nil, errkind.Unavailablef("no NVIDIA GPU on this node, nothing to enforce: %w", err)
		}
		return nil, err
	}
	e := &Enforcer{session: sess, Enforcer: &gpuslice.Enforcer{GPU: sess, Procs: &gpuslice.ProcFS{}, Sig: gpuslice.OSSignaller{},
		Limits: limits, Config: o.Config()}}
	if o.Metrics != "" {
		if e.metrics, err = results.OpenLineFile(o.Metrics); err != nil {
			sess.Close()
			return nil, errkind.Invalid(err)
		}
		e.Sink = e.metrics
	}
	return e, nil
}

// GPUs is the number of GPUs the enforcer watches.
func (e *Enforcer) GPUs() int { return e.session.Count() }

// Close closes the metrics file (flushing it) and shuts NVML down.
func (e *Enforcer) Close() error {
	var merr error
	if e.metrics != nil {
		if merr = e.metrics.Close(); merr != nil {
			merr = fmt.Errorf("close metrics: %w", merr)
		}
	}
	return errors.Join(merr, e.session.Close())
}
