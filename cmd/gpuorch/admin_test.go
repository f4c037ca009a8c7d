package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminCLI checks `gpuorch admin`'s exit codes: bad arguments and pools
// files exit 2, an unreachable Slurm (its commands not on PATH) 3 with the
// hint how to start the test cluster.
func TestAdminCLI(t *testing.T) {
	const pools = "../../examples/pools.toml"
	missing := filepath.Join(t.TempDir(), "nope.toml")
	tests := []struct {
		name  string
		noBin bool
		args  []string
		code  int
		want  string
	}{
		{"plan no argument", false, []string{"admin", "plan"}, exitUsage, "want one argument: the pools file"},
		{"apply two arguments", false, []string{"admin", "apply", pools, pools}, exitUsage, "want one argument"},
		{"remove missing file", false, []string{"admin", "remove", missing}, exitUsage, "nope.toml"},
		{"plan without slurm", true, []string{"admin", "plan", pools}, exitUnavailable, "\n(is Slurm running? for the test cluster: bash test/slurm/up.sh)\n"},
		{"apply without slurm", true, []string{"admin", "apply", "--json", pools}, exitUnavailable, "[]\n"},
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
}
