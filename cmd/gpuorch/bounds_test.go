package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSpecBoundsFromTheCLI: a spec with a value a task would refuse is
// refused by run, run --dry-run and render with file:line and exit 2,
// creating nothing.
func TestSpecBoundsFromTheCLI(t *testing.T) {
	e := newCLIEnv(t)
	for _, c := range []struct{ old, new, want string }{
		{`"workload.rate" = [1, 2, 3]`, `"workload.rate" = [1, nan, 3]`, ":11: "},
		{`"workload.rate" = [1, 2, 3]`, `"workload.rate" = [1, 2, -3]`, ":11: "},
		{`duration = "1s"`, `duration = "0s"`, ":13: "},
		{`url = "http://127.0.0.1:9"`, `url = "http://127.0.0.1:99999"`, ":4: "},
		{`protocol = "kserve"`, "protocol = \"http\"\nmethod = \"GET / HTTP/1.1\\r\\nX-Injected: 1\\r\\n\"", ":6: "},
	} {
		if !strings.Contains(cliSpec, c.old) {
			t.Fatalf("cliSpec lacks %q", c.old)
		}
		spec := filepath.Join(t.TempDir(), "spec.toml")
		if err := os.WriteFile(spec, []byte(strings.Replace(cliSpec, c.old, c.new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		// run goes last: were the spec accepted, its tasks would run.
		for _, args := range [][]string{{"run", "--dry-run", spec}, {"render", spec}, {"run", "--executor", "slurm", spec}, {"run", spec}} {
			if args[0] == "run" && args[1] != "--dry-run" {
				if _, _, code := e.run(nil, "run", "--dry-run", spec); code == 0 {
					t.Errorf("%q accepted by --dry-run; not running it", c.new)
					break
				}
			}
			_, errOut, code := e.run(nil, args...)
			if code != exitUsage || !strings.Contains(errOut, spec+c.want) {
				t.Errorf("%s with %q: exit %d, stderr %q; want exit 2 and %q", args[0:len(args)-1], c.new, code, errOut, spec+c.want)
			}
		}
	}
	if _, err := os.Stat(e.home); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(e.home)
		t.Errorf("refused specs created %s (%d entries)", e.home, len(ents))
	}
}

// rawListener accepts connections and counts them, so a test can tell that
// nothing was sent.
func rawListener(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return "http://" + ln.Addr().String(), &n
}

// TestLoadgenFlagBounds: absurd numbers and raw-request injection in flags
// are flag errors (exit 2) before anything is sent, and are refused fast.
func TestLoadgenFlagBounds(t *testing.T) {
	url, conns := rawListener(t)
	run := []string{"loadgen", "run", "--target", url, "--duration", "1s"}
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"vanishing rate", append(run, "--rate", "1e-300"), "--rate"},
		{"infinite rate", append(run, "--rate", "inf"), "--rate"},
		{"rate 1e300", append(run, "--rate", "1e300"), "--rate"},
		{"NaN slo factor", append(run, "--rate", "10", "--slo-factor", "NaN"), "--slo-factor"},
		{"absurd duration", []string{"loadgen", "run", "--target", url, "--rate", "10", "--duration", "1000000h"}, "--duration"},
		{"negative concurrency", append(run, "--arrival", "closed", "--concurrency", "-4"), "--concurrency"},
		{"huge max-in-flight", append(run, "--rate", "10", "--max-in-flight", "1000000000000"), "--max-in-flight"},
		{"CRLF in method", append(run, "--rate", "10", "--method", "GET / HTTP/1.1\r\nX-Injected: 1\r\n"), "--method"},
		{"CRLF in method over https", []string{"loadgen", "run", "--target", strings.Replace(url, "http:", "https:", 1), "--duration", "1s", "--rate", "10", "--method", "GET\r\nX: 1"}, "--method"},
		{"CRLF in header", append(run, "--rate", "10", "--header", "X-A: 1\r\nX-Injected: 1"), "--header"},
		{"port 99999", []string{"loadgen", "run", "--target", "http://127.0.0.1:99999", "--duration", "1s", "--rate", "10"}, "--target"},
		{"clockwork copies", append(run, "slo-exp-1", "m", "1000000000", "poisson", "100", "2", "32", "2", "mul", "7"), "copies"},
		{"plan at an infinite rate", []string{"loadgen", "plan", "--duration", "2s", "poisson-open-loop", "4", "inf"}, "rate"},
		{"plan at 1e300", []string{"loadgen", "plan", "--duration", "2s", "poisson-open-loop", "4", "+1e300"}, "rate"},
		{"plan for 1000000h", []string{"loadgen", "plan", "--duration", "1000000h", "poisson-open-loop", "4", "100"}, "--duration"},
		{"plan beyond its bound", []string{"loadgen", "plan", "--duration", "100h", "poisson-open-loop", "4", "100000"}, "100000000"},
		{"plan in nanosecond intervals", []string{"loadgen", "plan", "--duration", "1h", "--interval", "1ns", "poisson-open-loop", "4", "1"}, "--interval"},
		{"plan with a billion copies", []string{"loadgen", "plan", "slo-exp-1", "m", "1000000000", "poisson", "100", "2", "32", "2", "mul", "7"}, "copies"},
		{"azure functions", []string{"loadgen", "azure-trace", "generate", "--dir", filepath.Join(t.TempDir(), "az"), "--functions", "1000000000"}, "--functions"},
		{"azure mean rate", []string{"loadgen", "azure-trace", "generate", "--dir", filepath.Join(t.TempDir(), "az"), "--mean-rate", "inf"}, "--mean-rate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := loadgenProc(t, c.args...)
			start := time.Now()
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("still running after 20 s; output:\n%.2000s", out)
			}
			if code := procExitCode(err); code != exitUsage || !strings.Contains(string(out), c.msg) {
				t.Errorf("exit %d (want 2), output mentioning %q:\n%.2000s", code, c.msg, out)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("refusing took %v", el)
			}
		})
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("refused runs opened %d connections to the target", n)
	}
}

// TestLoadgenPlanInterrupted: a long plan stops on SIGINT and SIGTERM.
func TestLoadgenPlanInterrupted(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		// 9e7 arrivals: within the bound, and many seconds of work.
		cmd := loadgenProc(t, "loadgen", "plan", "--duration", "90s", "poisson-open-loop", "4", "1000000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		time.Sleep(500 * time.Millisecond)
		cmd.Process.Signal(sig)
		sent := time.Now()
		select {
		case err := <-done:
			if code := procExitCode(err); code != exitInterrupted {
				t.Errorf("%v: exit %d, want 130", sig, code)
			}
			if el := time.Since(sent); el > 2*time.Second {
				t.Errorf("%v: plan stopped %v after the signal", sig, el)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%v: plan ignored the signal", sig)
		}
	}
}
