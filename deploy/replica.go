package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
)

// Environment of a replica (its Slurm job or process), beside
// GPUORCH_EXPERIMENT_DIR.
const (
	EnvTask    = "GPUORCH_DEPLOY_TASK"    // the task index whose deployment it belongs to
	EnvReplica = "GPUORCH_DEPLOY_REPLICA" // its name, r0, r1, …
)

// Address is what a replica publishes in its directory (address.json) once
// its server process runs: where to reach it.
type Address struct {
	URL     string    `json:"url"`
	Host    string    `json:"host"`
	Port    int       `json:"port"`
	Node    string    `json:"node,omitempty"` // the Slurm node (SLURMD_NODENAME), else the host name
	Job     string    `json:"job,omitempty"`  // SLURM_JOB_ID
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// ReadPlan reads deployment.json from an experiment directory; ok is false
// (and err nil) when the experiment has no deployment.
func ReadPlan(expDir string) (p *Plan, ok bool, err error) {
	b, err := limitio.ReadFile(layout.Experiment(expDir).Deployment(), limitio.Record.As("deployment file"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	p = &Plan{}
	if err := json.Unmarshal(b, p); err != nil {
		return nil, false, fmt.Errorf("read %s: %w", layout.Experiment(expDir).Deployment(), err)
	}
	return p, true, nil
}

// WritePlan writes deployment.json into an experiment directory.
func WritePlan(expDir string, p *Plan) error {
	return atomicfile.WriteJSON(layout.Experiment(expDir).Deployment(), p, 0o644)
}

// serverArgv fills in the server's argv: "gpuorch" first is self, {host}
// and {port} the address.
func serverArgv(tmpl []string, self, host string, port int) []string {
	args := make([]string, len(tmpl))
	for i, a := range tmpl {
		a = strings.ReplaceAll(a, "{port}", strconv.Itoa(port))
		args[i] = strings.ReplaceAll(a, "{host}", host)
	}
	if len(args) > 0 && args[0] == "gpuorch" {
		args[0] = self
	}
	return args
}

// freePort asks the kernel for a free TCP port on host.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RunReplica is one replica: what `gpuorch deploy replica` does in its
// Slurm job (or local process). It picks a free port on this node, starts
// the deployment's server on it, publishes the address in the replica's
// directory, and runs until the server exits, ctx ends (scancel's SIGTERM),
// or the task stops renewing its lease — so a replica never outlives the
// task that started it, even one killed with SIGKILL. self is the gpuorch
// binary; progress goes to log.
func RunReplica(ctx context.Context, expDir string, task int, name, self string, log io.Writer) error {
	plan, ok, err := ReadPlan(expDir)
	if err != nil {
		return errkind.Invalid(err)
	}
	if !ok {
		return errkind.Invalidf("experiment %s has no deployment (%s)", expDir, layout.DeploymentFile)
	}
	dir := layout.Experiment(expDir).Task(task).Replica(name)
	if err := os.MkdirAll(string(dir), 0o755); err != nil {
		return err
	}
	bind, advertise := "127.0.0.1", "127.0.0.1"
	if plan.Executor == "slurm" {
		bind = "0.0.0.0"
		if advertise, err = os.Hostname(); err != nil {
			return fmt.Errorf("replica %s: host name: %w", name, err)
		}
	}
	port, err := freePort(bind)
	if err != nil {
		return errkind.Unavailable(err)
	}
	argv := serverArgv(plan.Server, self, bind, port)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "GPUORCH_SERVER_PORT="+strconv.Itoa(port), "HOST="+bind)
	for k, v := range plan.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(log, "gpuorch deploy replica %s: starting %s\n", name, strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("replica %s: start %s: %w", name, argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	node := os.Getenv("SLURMD_NODENAME")
	if node == "" {
		node, _ = os.Hostname()
	}
	addr := Address{URL: "http://" + net.JoinHostPort(advertise, strconv.Itoa(port)), Host: advertise, Port: port, Node: node,
		Job: os.Getenv("SLURM_JOB_ID"), PID: cmd.Process.Pid, Started: time.Now().UTC()}
	if err := atomicfile.WriteJSON(dir.Address(), addr, 0o644); err != nil {
		stopProcess(cmd.Process.Pid, done, 10*time.Second)
		return fmt.Errorf("replica %s: publish address: %w", name, err)
	}
	fmt.Fprintf(log, "gpuorch deploy replica %s: server pid %d at %s on %s\n", name, cmd.Process.Pid, addr.URL, node)

	lease := newLeaseWatch(layout.Experiment(expDir).Task(task).Lease(), plan.Lease.D())
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("replica %s: server exited: %w", name, err)
			}
			return fmt.Errorf("replica %s: server exited", name)
		case <-ctx.Done():
			fmt.Fprintf(log, "gpuorch deploy replica %s: stopping the server (%v)\n", name, context.Cause(ctx))
			stopProcess(cmd.Process.Pid, done, 10*time.Second)
			return nil
		case now := <-tick.C:
			if lease.expired(now) {
				fmt.Fprintf(log, "gpuorch deploy replica %s: the task has not renewed its lease for %s; stopping the server\n", name, plan.Lease)
				stopProcess(cmd.Process.Pid, done, 10*time.Second)
				return nil
			}
		}
	}
}

// stopProcess sends SIGTERM to the process group of pid, and SIGKILL when
// it is still there after grace; done reports the process's end.
func stopProcess(pid int, done <-chan error, grace time.Duration) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
}

// leaseWatch notices a lease file that stopped changing. It compares the
// file's state with what it saw before and times the gap on this node's
// clock, so clocks that differ between nodes do not matter.
type leaseWatch struct {
	path    string
	timeout time.Duration
	last    string
	changed time.Time
}

func newLeaseWatch(path string, timeout time.Duration) *leaseWatch {
	if timeout <= 0 {
		timeout = DefaultLease
	}
	w := &leaseWatch{path: path, timeout: timeout, changed: time.Now()}
	w.last = w.stamp()
	return w
}

func (w *leaseWatch) stamp() string {
	b, err := limitio.ReadFile(w.path, limitio.Small.As("lease"))
	if err != nil {
		return ""
	}
	return string(b)
}

func (w *leaseWatch) expired(now time.Time) bool {
	if s := w.stamp(); s != w.last {
		w.last, w.changed = s, now
	}
	return now.Sub(w.changed) > w.timeout
}

// renewLease writes a new stamp into the task's lease file (no fsync: a
// watcher only needs to see it change, and a torn stamp is a change too).
func renewLease(path string, now time.Time) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(now.UTC().Format(time.RFC3339Nano)+"\n"), 0o644)
}

// RunReplicaFromEnv is RunReplica for the replica named by the
// environment the deployment sets (GPUORCH_EXPERIMENT_DIR, EnvTask,
// EnvReplica), with this executable as gpuorch.
func RunReplicaFromEnv(ctx context.Context, log io.Writer) error {
	expDir, name := os.Getenv("GPUORCH_EXPERIMENT_DIR"), os.Getenv(EnvReplica)
	task, err := strconv.Atoi(os.Getenv(EnvTask))
	if expDir == "" || name == "" || err != nil || strings.ContainsAny(name, "/\\") {
		return errkind.Invalidf("deploy replica: run by a deployment, which sets GPUORCH_EXPERIMENT_DIR, %s and %s", EnvTask, EnvReplica)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return RunReplica(ctx, expDir, task, name, self, log)
}
