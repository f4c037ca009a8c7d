package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// pasted runs the command line that follows marker in out (to the end of
// its line) in bash, as a user pasting gpuorch's hint would, with the
// command replaced by a function that prints its arguments. It returns
// them, and fails t if pasting ran anything else (a file appeared in dir).
func pasted(t *testing.T, dir, out, marker string) []string {
	t.Helper()
	i := strings.Index(out, marker)
	if i < 0 {
		t.Fatalf("no %q in %q", marker, out)
	}
	line, _, _ := strings.Cut(out[i+len(marker):], "\n")
	line = strings.TrimRight(line, ")")
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	word, _, _ := strings.Cut(line, " ")
	cmd := exec.Command(bash, "-c", word+`() { printf '%s\0' "$@"; }; `+line)
	cmd.Dir = dir
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash -c %q: %v", line, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatalf("pasting %q ran code", line)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// Issue 13, class 6b: every "run this" hint quotes its paths and names
// (sbatch.CommandLine), so a $(…) in GPUORCH_HOME or a path never runs when
// the hint is pasted.
func TestHintsPasteSafely(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "$(touch pwned) it's")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newCLIEnv(t)

	t.Run("render: sbatch SCRIPT", func(t *testing.T) {
		_, errOut, code := runCLI(t, filepath.Join(dir, "runs"), "render", "--binary", "/bin/true", e.spec)
		args := pasted(t, dir, errOut, "submit by hand: ")
		if code != 0 || len(args) != 1 || !strings.HasPrefix(args[0], dir+"/runs/") {
			t.Fatalf("exit %d, sbatch got %q\n%s", code, args, errOut)
		}
	})
	t.Run("bench new: gpuorch bench plan OUT", func(t *testing.T) {
		out := filepath.Join(dir, "my spec.toml")
		answers := "my-bench\n\n\n1\nconfiguration\n\nlocalhost\n16\n16\nm\ncommand\nserve --port {port}\n\n\n"
		_, errOut, code := runWithStdin(t, t.TempDir(), strings.NewReader(answers), "bench", "new", "-o", out)
		if args := pasted(t, dir, errOut, "check it with: "); code != 0 || !slices.Equal(args, []string{"bench", "plan", out}) {
			t.Fatalf("exit %d, gpuorch got %q\n%s", code, args, errOut)
		}
	})
	t.Run("credentials: chmod 600 FILE", func(t *testing.T) {
		p := filepath.Join(dir, "credentials.json")
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Setenv("GPUORCH_CREDENTIALS", p)
		_, errOut, code := runCLI(t, t.TempDir(), "credentials", "list")
		if args := pasted(t, dir, errOut, "run "); code != exitUsage || !slices.Equal(args, []string{"600", p}) {
			t.Fatalf("exit %d, chmod got %q\n%s", code, args, errOut)
		}
	})
	t.Run("InfluxDB token file: chmod 600 FILE", func(t *testing.T) {
		p := filepath.Join(dir, "token")
		if err := os.WriteFile(p, []byte("u:p"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Setenv("GPUORCH_CONFIG", "/dev/null")
		t.Setenv("GPUORCH_INFLUX_URL", "http://127.0.0.1:1")
		t.Setenv("GPUORCH_INFLUX_TOKEN_FILE", p)
		_, errOut, code := runCLI(t, t.TempDir(), "results", "ping")
		if args := pasted(t, dir, errOut, "run: "); code != exitUsage || !slices.Equal(args, []string{"600", p}) {
			t.Fatalf("exit %d, chmod got %q\n%s", code, args, errOut)
		}
	})
}
