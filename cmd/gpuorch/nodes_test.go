package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/gpuslice/nvmlx"
)

// TestNodesCLI runs `gpuorch nodes` in process: this node's probe on the
// app's writer, bad input exit 2, no Slurm (nothing on PATH) exit 3 with
// the hint.
func TestNodesCLI(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.toml")
	requireGPU := exitUnavailable // no NVIDIA GPU here: exit 3 with --require-gpu
	if nvmlx.Probe(nvmlx.Default(), nil).HasGPU() {
		requireGPU = 0
	}
	tests := []struct {
		name  string
		noBin bool
		args  []string
		code  int
		want  string
	}{
		{"probe", false, []string{"nodes", "probe"}, 0, "HOST  "},
		{"probe require gpu", false, []string{"nodes", "probe", "--require-gpu"}, requireGPU, "cpu"},
		{"probe missing pools", false, []string{"nodes", "probe", "--pools", missing}, exitUsage, "nope.toml"},
		{"list missing pools", false, []string{"nodes", "--pools", missing}, exitUsage, "nope.toml"},
		{"list without slurm", true, []string{"nodes"}, exitUnavailable, "(is Slurm running? for the test cluster: bash test/slurm/up.sh)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.noBin {
				t.Setenv("PATH", t.TempDir())
			}
			out, errOut, code := runCLI(t, t.TempDir(), tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
	out, _, code := runCLI(t, t.TempDir(), "nodes", "probe", "--json")
	var n struct {
		Hostname string           `json:"hostname"`
		Devices  []map[string]any `json:"devices"`
	}
	if err := json.Unmarshal([]byte(out), &n); err != nil || code != 0 || n.Hostname == "" || len(n.Devices) == 0 {
		t.Fatalf("nodes probe --json: exit %d, %v:\n%s", code, err, out)
	}
}
