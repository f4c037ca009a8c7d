package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runWithStdin runs the app in-process with stdin read from in.
func runWithStdin(t *testing.T, home string, in io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	t.Setenv("GPUORCH_HOME", home)
	app := newApp()
	var o, e bytes.Buffer
	app.Reader, app.Writer, app.ErrWriter = in, &o, &e
	code = run(t.Context(), app, append([]string{"gpuorch"}, args...), &e)
	return o.String(), e.String(), code
}

// Issue 13, class 2: every input file gpuorch reads is limited. /dev/zero
// where a file is meant (or on stdin) used to grow memory until the kernel
// killed gpuorch; now each ends at once, exit 2, naming the input and why.
func TestHostileInputFilesExit2(t *testing.T) {
	dir := t.TempDir()
	spec := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bench, err := os.ReadFile("../../examples/bench-sim.toml")
	if err != nil {
		t.Fatal(err)
	}
	datasetSpec := spec("dataset.toml", strings.Replace(strings.Replace(string(bench), `eval_with = "configuration"`, `eval_with = "dataset"`, 1),
		"[configuration]\nmax_input_tokens = 100\nmax_output_tokens = 30\n", "[dataset]\nfiles = [\"/dev/zero\"]\n", 1))
	notRegular := "/dev/zero: not a regular file but a character device"
	cases := []struct {
		name  string
		stdin bool // /dev/zero on stdin
		env   map[string]string
		args  []string
		want  string
	}{
		{"azure-trace stats", false, nil, []string{"loadgen", "azure-trace", "stats", "/dev/zero"}, notRegular},
		{"image verify --key", false, nil, []string{"image", "verify", "--key", "/dev/zero", "/dev/null"}, notRegular},
		{"bench dataset", false, nil, []string{"bench", "plan", datasetSpec}, notRegular},
		{"run spec", false, nil, []string{"run", "--dry-run", "/dev/zero"}, notRegular},
		{"render spec", false, nil, []string{"render", "/dev/zero"}, notRegular},
		{"train parse", false, nil, []string{"train", "parse", "/dev/zero"}, notRegular},
		{"sim-server config", false, nil, []string{"sim-server", "--print-config", "--config", "/dev/zero"}, notRegular},
		{"pools file", false, nil, []string{"slice", "plan", "--pools", "/dev/zero", "--profile", "x"}, notRegular},
		{"manifest", false, nil, []string{"loadgen", "run", "--manifest", "/dev/zero"}, notRegular},
		{"InfluxDB config", false, map[string]string{"GPUORCH_CONFIG": "/dev/zero", "GPUORCH_INFLUX_URL": "http://127.0.0.1:1"}, []string{"results", "ping"}, notRegular},
		{"bench step file", false, nil, []string{"bench", "step", "/dev/zero"}, notRegular},
		{"spec on stdin", true, nil, []string{"run", "--dry-run", "-"}, "<stdin>:1: line longer than 1 MiB, the limit for a spec"},
		{"step payload on stdin", true, nil, []string{"bench", "step", "-"}, "<stdin>:1: line longer than 1 MiB, the limit for a step payload"},
		{"secret on stdin", true, nil, []string{"credentials", "add", "x"}, "<stdin>:1: line longer than 32 KiB, the limit for a secret"},
		{"answers on stdin", true, nil, []string{"bench", "new"}, "<stdin>:1: line longer than 32 KiB, the limit for an answer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			t.Setenv("GPUORCH_CREDENTIALS", filepath.Join(t.TempDir(), "credentials.json"))
			var in io.Reader = strings.NewReader("")
			if c.stdin {
				f, err := os.Open("/dev/zero")
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				in = f
			}
			_, errOut, code := runWithStdin(t, t.TempDir(), in, c.args...)
			if code != exitUsage || !strings.Contains(errOut, c.want) {
				t.Fatalf("%v: exit %d, stderr %q; want exit 2 and %q", c.args, code, errOut, c.want)
			}
		})
	}
}

// A spec on a stdin that never ends (a pipe whose writer says nothing)
// used to keep gpuorch past SIGTERM; the read now stops with the command.
func TestStdinReadStopsOnSIGTERM(t *testing.T) {
	e := newCLIEnv(t)
	cmd := e.command(nil, "run", "--dry-run", "-")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	cmd.Stdin = pr
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	time.Sleep(300 * time.Millisecond) // reading stdin by now
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
			t.Fatalf("got %v, want exit 130; stderr %s", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("gpuorch kept reading stdin after SIGTERM")
	}
}
