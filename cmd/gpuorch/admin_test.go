package main

import (
	"fmt"
	"os"
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

// TestAdminPlanRefusesPoolsFile: a pools file that would plan negative
// shards, let apply (as root) rewrite a file outside Slurm's configuration,
// give a node to two pools or a profile a request above its limit is
// refused before Slurm is asked anything: exit 2, file:line and key.
func TestAdminPlanRefusesPoolsFile(t *testing.T) {
	t.Setenv("SLURM_CONF", "")
	example, err := os.ReadFile("../../examples/pools.toml")
	if err != nil {
		t.Fatal(err)
	}
	// lineOf is the line of examples/pools.toml that holds s.
	lineOf := func(s string) int {
		i := strings.Index(string(example), s)
		if i < 0 {
			t.Fatalf("examples/pools.toml lacks %q", s)
		}
		return strings.Count(string(example)[:i], "\n") + 1
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"oversubscription nan", "oversubscription = 1.0", "oversubscription = nan",
			fmt.Sprintf(":%d: pools.a100.oversubscription NaN", lineOf("oversubscription = 1.0"))},
		{"include file outside", `include_file = "/etc/slurm/gpuorch-pools.conf"`, `include_file = "/etc/passwd"`,
			fmt.Sprintf(`:%d: slurm.include_file "/etc/passwd": must be a file directly in Slurm's configuration directory /etc/slurm`, lineOf("include_file ="))},
		{"shared nodes", `nodes = "node[3-4]"`, `nodes = "node[2-4]"`,
			fmt.Sprintf(`:%d: pools.h100.nodes "node[2-4]": node2 is in pools.a100 too (line %d)`, lineOf(`nodes = "node[3-4]"`), lineOf(`nodes = "node[1-2]"`))},
		{"request above limit", `requests = { tflops = 5, vram = "3Gi" }`, `requests = { tflops = 50, vram = "3Gi" }`,
			fmt.Sprintf(`:%d: profiles.small-infer.requests.tflops 50 is above profiles.small-infer.limits.tflops 15`, lineOf(`requests = { tflops = 5, vram = "3Gi" }`))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(example), tc.old) {
				t.Fatalf("examples/pools.toml lacks %q", tc.old)
			}
			p := filepath.Join(t.TempDir(), "pools.toml")
			if err := os.WriteFile(p, []byte(strings.Replace(string(example), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", t.TempDir()) // no Slurm: the file must be refused before it is needed
			out, errOut, code := runCLI(t, t.TempDir(), "admin", "plan", p)
			if code != exitUsage || !strings.Contains(errOut, p+tc.want) {
				t.Fatalf("exit %d (want 2), stderr lacks %q:\n%s%s", code, p+tc.want, out, errOut)
			}
		})
	}
}
