package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/gpuslice"
)

// TestSliceCLI runs `gpuorch slice` in process: output on the app's writer,
// bad input exit 2.
func TestSliceCLI(t *testing.T) {
	const pools = "../../examples/pools.toml"
	t.Setenv(gpuslice.EnvJobID, "")
	for _, k := range []string{gpuslice.EnvVRAMLimit, gpuslice.EnvThreadPct, gpuslice.EnvQoS, gpuslice.EnvOnOverrun, gpuslice.EnvGrace} {
		t.Setenv(k, "")
	}
	reg := t.TempDir()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"plan", nil, []string{"slice", "plan", "--pools", pools, "--profile", "small-infer"}, 0, "sbatch     --partition=gs_a100 --qos=gs_medium --gres=shard:1 --requeue\n"},
		{"plan json", nil, []string{"slice", "plan", "--pools", pools, "--profile", "small-infer", "--json"}, 0, `"gres": "shard:1"`},
		{"plan script", nil, []string{"slice", "plan", "--pools", pools, "--profile", "small-infer", "--script", "--", "python", "serve it.py"}, 0, "#SBATCH --gres=shard:1\n"},
		{"plan missing pools", nil, []string{"slice", "plan", "--pools", filepath.Join(reg, "nope.toml")}, exitUsage, "nope.toml"},
		{"plan unknown profile", nil, []string{"slice", "plan", "--pools", pools, "--profile", "huge"}, exitUsage, `profile "huge"`},
		{"plan bad vram", nil, []string{"slice", "plan", "--pools", pools, "--profile", "small-infer", "--vram-limit", "lots"}, exitUsage, "--vram-limit"},
		{"plan does not fit", nil, []string{"slice", "plan", "--pools", pools, "--pool", "a100", "--tflops-limit", "400"}, exitUsage, "does not fit on one GPU of pool a100"},
		{"plan tflops limit 0", nil, []string{"slice", "plan", "--pools", pools, "--profile", "small-infer", "--tflops-limit", "0"}, exitUsage, "--tflops-request or --tflops-limit 0: 0 TFLOPS would give 100 % of the SMs"},
		{"plan tflops limit NaN", nil, []string{"slice", "plan", "--pools", pools, "--profile", "small-infer", "--tflops-limit", "NaN"}, exitUsage, "tflops limit NaN: not a number (pool a100, profile small-infer)"},
		{"plan script without command", nil, []string{"slice", "plan", "--pools", pools, "--profile", "small-infer", "--script"}, exitUsage, "--script needs the command"},
		{"enforce no job", nil, []string{"slice", "enforce", "--once"}, exitUsage, "no job: run inside a Slurm job"},
		{"enforce no limits", map[string]string{gpuslice.EnvJobID: "42"}, []string{"slice", "enforce", "--once"}, exitUsage, "no limit in the environment"},
		{"register no job", map[string]string{gpuslice.EnvVRAMLimit: "1Gi"}, []string{"slice", "enforce", "--register", reg}, exitUsage, `register: bad job id ""`},
		{"register", map[string]string{gpuslice.EnvVRAMLimit: "1Gi"}, []string{"slice", "enforce", "--job", "7", "--register", reg}, 0, "registered job 7 limits in " + reg + "/7\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			out, errOut, code := runCLI(t, t.TempDir(), tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
}
