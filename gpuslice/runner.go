package gpuslice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs a command and returns its standard output. The admin and the
// enforcer call Slurm's CLIs (sacctmgr, scontrol) only through it, so callers
// can log, dry-run or point at another installation.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExecRunner runs commands with os/exec. Errors carry the command line and
// its standard error.
type ExecRunner struct{}

// ErrNoSlurm is wrapped by errors from a Slurm command that is not installed
// or whose controller cannot be reached.
var ErrNoSlurm = errors.New("slurm unavailable")

func (ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if errors.Is(err, exec.ErrNotFound) || unreachable(msg) {
			return out.Bytes(), fmt.Errorf("%s %s: %w: %v %s", name, strings.Join(args, " "), ErrNoSlurm, err, msg)
		}
		return out.Bytes(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, msg)
	}
	return out.Bytes(), nil
}

func unreachable(stderr string) bool {
	for _, s := range []string{"Unable to contact slurm controller", "fetch_config", "Connection refused", "slurmdbd: Connection", "Problem talking to the database"} {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	return false
}
