package sbatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// Error is a Slurm command that failed. Its message quotes Slurm's own
// stderr, which is what users know how to act on ("Invalid qos
// specification", "Invalid partition name specified", …). When Slurm could
// not be reached (the tool is missing, slurmctld or slurmdbd does not answer)
// it matches errors.Is(err, errkind.ErrUnavailable).
type Error struct {
	Args        []string // the command line
	ExitCode    int      // -1 when it did not run or was killed
	Stderr      string
	Unreachable bool // slurmctld/slurmdbd could not be contacted, or the tool is missing
	Err         error
}

func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if msg == "" {
		msg = fmt.Sprintf("exit status %d", e.ExitCode)
	}
	if strings.HasPrefix(msg, e.Args[0]+":") {
		return msg // Slurm's tools prefix their own name
	}
	return fmt.Sprintf("%s: %s", e.Args[0], msg)
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Is(target error) bool { return target == errkind.ErrUnavailable && e.Unreachable }

// unreachableMarkers are the messages Slurm's clients print when they cannot
// talk to slurmctld or slurmdbd.
var unreachableMarkers = []string{
	"Unable to contact slurm controller",
	"Unable to establish connection",
	"Socket timed out on send/recv",
	"Zero Bytes were transmitted or received",
	"Connection refused",
	"Connection reset by peer",
	"Communication connection failure",
	"failed to open persistent connection",
	"Problem talking to the database",
	"slurmdbd: Connection",
	"backup controller in standby mode",
	"Slurm temporarily unable to accept job",
	"Transport endpoint is not connected",
	// configless mode: the configuration could not be fetched from slurmctld
	"fetch_config",
	// what 22.05's `scontrol requeue` prints when slurmctld does not answer
	"Unexpected message received",
}

// connectFailure are the unreachable messages after which the request surely
// did not reach Slurm, so any command, even one that changes something, can
// be retried without risking doing it twice.
var connectFailure = []string{
	"Unable to contact slurm controller (connect failure)",
	"Connection refused",
	"Slurm temporarily unable to accept job",
}

func containsAny(s string, subs []string) bool {
	for _, m := range subs {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// Runner runs Slurm's command-line tools: every package that calls Slurm goes
// through it (Client, and gpuslice's admin, node listing and enforcer). The
// zero value is ready to use: tools from PATH, a 60 s timeout per call, 4
// attempts with backoff while Slurm is unreachable.
type Runner struct {
	// BinDir holds sbatch, squeue, … ("" = look them up in PATH).
	BinDir string
	// Env is added to the tools' environment (e.g. SLURM_CONF=…).
	Env []string
	// Timeout bounds each call (default 60 s); the context may end it sooner.
	// A call that runs out of time counts as Slurm being unreachable.
	Timeout time.Duration
	// Attempts is how often a call is tried while Slurm is unreachable
	// (default 4); Backoff is the first wait, doubled each time (default 1 s).
	Attempts int
	Backoff  time.Duration
	Log      *slog.Logger
}

// Run runs a Slurm tool and returns its standard output (also when it
// fails). Calls that can be repeated (squeue, sacct, sinfo, `scontrol
// show`, `sacctmgr show|list`, scancel) are retried while Slurm is
// unreachable; any other call only after a connect failure, when Slurm
// surely never saw it; a tool that is not installed is not retried. Errors
// are *Error.
func (x Runner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	retry := retryConnect
	if repeatable(name, args) {
		retry = retryAlways
	}
	out, err := x.call(ctx, nil, retry, name, args...)
	return []byte(out), err
}

// repeatable says whether running the command twice is harmless.
func repeatable(name string, args []string) bool {
	verb := ""
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			verb = a
			break
		}
	}
	switch name {
	case "squeue", "sacct", "sinfo", "sshare", "sprio", "sstat", "scancel":
		return true
	case "scontrol":
		return verb == "show"
	case "sacctmgr":
		return verb == "show" || verb == "list"
	}
	return false
}

// missing says the tool is not installed: trying again will not help.
func missing(e *Error) bool {
	return errors.Is(e.Err, exec.ErrNotFound) || errors.Is(e.Err, os.ErrNotExist)
}

func retryAlways(*Error) bool    { return true }
func retryConnect(e *Error) bool { return containsAny(e.Stderr, connectFailure) }

func (x Runner) log() *slog.Logger {
	if x.Log != nil {
		return x.Log
	}
	return slog.Default()
}

// once executes one tool once. stdin may be nil.
func (x Runner) once(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	timeout := x.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	path := name
	if x.BinDir != "" {
		path = filepath.Join(x.BinDir, name)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = time.Second
	if len(x.Env) > 0 {
		cmd.Env = append(os.Environ(), x.Env...)
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.String(), nil
	}
	e := &Error{Args: append([]string{name}, args...), ExitCode: -1, Stderr: stderr.String(), Err: err}
	var ee *exec.ExitError
	switch {
	case missing(e):
		e.Unreachable = true
		e.Stderr = fmt.Sprintf("%s not found: Slurm's tools are not installed here (for a test cluster run test/slurm/up.sh)", name)
	case ctx.Err() != nil:
		e.Unreachable = true
		e.Stderr = strings.TrimSpace(e.Stderr + fmt.Sprintf("\n%s did not answer within %v", name, timeout))
		if ctx.Err() == context.Canceled {
			e.Err = ctx.Err()
		}
	case errors.As(err, &ee):
		e.ExitCode = ee.ExitCode()
		e.Unreachable = containsAny(e.Stderr, unreachableMarkers)
	}
	return stdout.String(), e
}

// call runs a tool, retrying with backoff while Slurm is unreachable and
// retry(err) allows it.
func (x Runner) call(ctx context.Context, stdin []byte, retry func(*Error) bool, name string, args ...string) (string, error) {
	attempts := x.Attempts
	if attempts <= 0 {
		attempts = 4
	}
	wait := x.Backoff
	if wait <= 0 {
		wait = time.Second
	}
	for i := 1; ; i++ {
		out, err := x.once(ctx, stdin, name, args...)
		var e *Error
		if err == nil || !errors.As(err, &e) || !e.Unreachable || missing(e) || !retry(e) || i >= attempts || ctx.Err() != nil {
			return out, err
		}
		x.log().Warn("slurm unreachable, retrying", "cmd", name, "attempt", i, "wait", wait, "err", e.Error())
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}
