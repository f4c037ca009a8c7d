package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/orchestrator"
)

const deploySpec = `[experiment]
name = "cli-deploy"
[target]
protocol = "kserve"
models = ["m"]
[[workload]]
arrival = "poisson"
rate = 8
[slo]
deadline = "1s"
[run]
duration = "4s"
[deployment]
sim_server = ["--dnn", "m:b1=20ms"]
replicas = 2
`

// TestRunCLIDeployment: `gpuorch run` of a spec with a [deployment] starts
// the replicas (real `gpuorch sim-server` processes started by `gpuorch
// deploy replica`), spreads the load over both, stops them, and `results
// show` prints what the deployment did; with the slurm executor the array
// task does the same from inside its job, with the replicas as Slurm jobs,
// and none is left in squeue.
func TestRunCLIDeployment(t *testing.T) {
	for _, executor := range []string{"local", "slurm"} {
		t.Run(executor, func(t *testing.T) {
			if executor == "slurm" {
				testgate.Slurm(t)
			}
			t.Parallel()
			e := newCLIEnv(t)
			if err := os.WriteFile(e.spec, []byte(deploySpec), 0o644); err != nil {
				t.Fatal(err)
			}
			out, errOut, code := e.run(nil, "run", "--executor", executor, "--wait", "--interval", "300ms", e.spec)
			id := strings.Fields(out + " x")[0]
			if code != 0 {
				st := e.state(id)
				log, _ := os.ReadFile(filepath.Join(e.home, id, orchestrator.LogPath(0)))
				t.Fatalf("exit %d %s\n%s\nstate %+v\nlog:\n%s", code, out, errOut, st, log)
			}
			show, errOut, code := e.run(nil, "results", "show", id)
			if code != 0 {
				t.Fatalf("results show: exit %d %s", code, errOut)
			}
			for _, want := range []string{"deployment of t000: signal none; 0 scale-up(s), 0 scale-down(s), 0 replaced; ready replicas 2..2",
				"r0 ready", "r1 ready", "r0 stopped", "r1 stopped", "REPLICA  NODE"} {
				if !strings.Contains(show, want) {
					t.Errorf("results show lacks %q:\n%s", want, show)
				}
			}
			for _, r := range []string{"r0", "r1"} {
				b, err := os.ReadFile(filepath.Join(e.home, id, "tasks", "0", "replicas", r, "log"))
				if err != nil || !strings.Contains(string(b), "sim-server: 1 models") || !strings.Contains(string(b), "sim-server: stopped") {
					t.Errorf("replica %s log: %v\n%s", r, err, b)
				}
			}
			if executor == "slurm" {
				q, err := exec.Command("squeue", "-h", "-o", "%i %j").Output()
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(q), id) {
					t.Errorf("squeue still lists the experiment's jobs:\n%s", q)
				}
			}
		})
	}
}
