package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/orchestrator"
)

// Issue 13, class 6e: flags written after the arguments, as README itself
// writes them, work for every command (cliargs.FlagsFirst).
func TestFlagsAfterArguments(t *testing.T) {
	home := t.TempDir()
	exp := makeExperiment(t, home, "after", 1)
	if err := exp.UpdateTask(2, func(ts *orchestrator.TaskStatus) { ts.State = orchestrator.TaskCompleted }); err != nil {
		t.Fatal(err)
	}
	e := newCLIEnv(t)
	out := filepath.Join(t.TempDir(), "scripts")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "r.html")
	cases := []struct {
		name string
		args []string
		want func(stdout, stderr string) bool
	}{
		{"render SPEC -o DIR", []string{"render", e.spec, "-o", out, "--binary", "/bin/true"}, func(o, _ string) bool {
			m, _ := filepath.Glob(filepath.Join(out, "*.sbatch"))
			return len(m) == 1
		}},
		{"status EXP --watch --json", []string{"status", exp.ID(), "--watch", "--interval", "10ms", "--json"}, func(o, _ string) bool {
			return strings.Contains(o, `"state": "completed"`)
		}},
		{"run SPEC --dry-run --json", []string{"run", e.spec, "--dry-run", "--json"}, func(o, _ string) bool {
			return strings.Contains(o, `"tasks"`)
		}},
		{"results report EXP -o FILE", []string{"results", "report", exp.ID(), "-o", report}, func(string, string) bool {
			_, err := os.Stat(report)
			return err == nil
		}},
		{"results show EXP --csv", []string{"results", "show", exp.ID(), "--csv"}, func(o, _ string) bool {
			return strings.HasPrefix(o, "experiment,task,")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("GPUORCH_RESULTS_SOURCE", "local")
			o, eo, code := runCLI(t, home, c.args...)
			if code != 0 || !c.want(o, eo) {
				t.Fatalf("%v: exit %d\nstdout %q\nstderr %q", c.args, code, o, eo)
			}
		})
	}
}

// Issue 13, class 6a and 6f: a bad value of a flag with a fixed set of
// values, or an unknown flag wherever it is written, is bad input (exit 2)
// refused before anything runs or is printed.
func TestBadFlagsRefusedBeforeRunning(t *testing.T) {
	e := newCLIEnv(t)
	img := filepath.Join(t.TempDir(), "img.sif")
	if err := os.WriteFile(img, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"image", "validate", "--arch", "bogus", img}, `--arch: unknown arch "bogus" (want one of "", 386, amd64`},
		{[]string{"run", "--dry-run", "--executor", "bogus", e.spec}, `--executor: unknown executor "bogus" (want one of local, slurm)`},
		{[]string{"bench", "run", "--yes", "--executor", "bogus", "../../examples/bench-sim.toml"}, `--executor: unknown executor "bogus"`},
		{[]string{"loadgen", "run", "--target", "http://127.0.0.1:1", "--protocol", "grpc"}, `--protocol: unknown protocol "grpc" (want one of http, kserve, openai, openai-chat)`},
		{[]string{"loadgen", "run", "--target", "http://127.0.0.1:1", "--pacer-priority", "max"}, `--pacer-priority: unknown pacer priority "max"`},
		{[]string{"loadgen", "run", "--target", "http://127.0.0.1:1", "--arrival", "poison"}, `--arrival: unknown arrival "poison" (want one of poisson, fixed, gamma, closed, azure`},
		{[]string{"slice", "plan", "--pools", "../../examples/pools.toml", "--qos", "urgent"}, `--qos: unknown qos "urgent" (want one of low, medium, high, critical)`},
		{[]string{"render", e.spec, "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"status", "x", "--interval", "soon"}, `invalid value "soon" for flag -interval`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args[:2], " "), func(t *testing.T) {
			o, eo, code := runCLI(t, t.TempDir(), c.args...)
			if code != exitUsage || !strings.Contains(eo, c.want) || o != "" || strings.Count(eo, "\n") > 1 {
				t.Fatalf("%v: exit %d\nstdout %q\nstderr %q\nwant exit 2, only %q", c.args, code, o, eo, c.want)
			}
		})
	}
}
