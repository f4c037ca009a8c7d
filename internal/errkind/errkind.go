// Package errkind holds the kinds of failure that gpuorch's exit codes
// distinguish (docs/cli.md): bad input (2), a service that cannot be reached
// (3) and an interruption (130); every other error is a failure (1).
//
// Packages mark an error with its kind where they know it, and the kind
// survives any wrapping with fmt.Errorf("…: %w", err). The CLI asks one
// function (exitCode in cmd/gpuorch) which code an error gets.
package errkind

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalid: bad flags, arguments, input files or values.
	ErrInvalid = errors.New("invalid input")
	// ErrUnavailable: a service gpuorch needs (a load target, Slurm,
	// InfluxDB, NVML) cannot be reached. It says nothing about the input.
	ErrUnavailable = errors.New("service unavailable")
	// ErrInterrupted: the user interrupted the operation (Ctrl-C, SIGTERM);
	// what was measured so far is kept.
	ErrInterrupted = errors.New("interrupted")
)

// kinded is an error with a kind added; its message is the error's own.
type kinded struct {
	err  error
	kind error
}

func (e *kinded) Error() string   { return e.err.Error() }
func (e *kinded) Unwrap() []error { return []error{e.err, e.kind} }

func mark(err, kind error) error {
	if err == nil || errors.Is(err, kind) {
		return err
	}
	return &kinded{err: err, kind: kind}
}

// Invalid marks err as bad input. It returns nil for nil.
func Invalid(err error) error { return mark(err, ErrInvalid) }

// Invalidf is Invalid(fmt.Errorf(format, args...)).
func Invalidf(format string, args ...any) error { return Invalid(fmt.Errorf(format, args...)) }

// Unavailable marks err as an unreachable service. It returns nil for nil.
func Unavailable(err error) error { return mark(err, ErrUnavailable) }

// Unavailablef is Unavailable(fmt.Errorf(format, args...)).
func Unavailablef(format string, args ...any) error {
	return Unavailable(fmt.Errorf(format, args...))
}

// Interrupted marks err as an interruption. It returns nil for nil.
func Interrupted(err error) error { return mark(err, ErrInterrupted) }

// reported is an error whose message the user has already been shown.
type reported struct{ err error }

func (e *reported) Error() string { return e.err.Error() }
func (e *reported) Unwrap() error { return e.err }

// Reported marks err as already shown to the user (a table of failed tasks,
// say): the CLI exits with its kind's code and prints nothing more.
func Reported(err error) error {
	if err == nil {
		return nil
	}
	return &reported{err: err}
}

// IsReported reports whether err, or an error it wraps, was marked Reported.
func IsReported(err error) bool {
	var r *reported
	return errors.As(err, &r)
}
