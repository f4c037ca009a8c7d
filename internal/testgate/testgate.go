// Package testgate decides whether an integration test runs: one function
// per service or tool of the test environment that scripts/test-env.sh sets
// up and describes in test/env.sh (see DEVELOPERS.md, "Integration tests").
//
//   - A service (the Slurm test cluster, InfluxDB) is switched on by its
//     variable. Unset, the test skips and the message says how to start the
//     service; set, the service must answer, and the test fails if it does
//     not.
//   - A tool (mksquashfs, chromium) is used when it is on PATH. Missing, the
//     test skips and names the Debian package, or fails when
//     GPUORCH_TEST_TOOLS=1 says that test-env.sh installed every tool.
//
// test/env.sh sets every variable, so where it is sourced (make test, CI)
// no integration test skips: it runs or it fails.
//
// Non-test code so that every package's tests can import it; it imports no
// other gpuorch package.
package testgate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The variables test/env.sh sets.
const (
	// EnvSlurm=1: the Slurm test cluster (test/slurm/up.sh) is up, with
	// accounting, and libslurm-dev is installed.
	EnvSlurm = "GPUORCH_TEST_SLURM"
	// EnvInfluxURL: the shared test InfluxDB (test/influxdb/up.sh).
	EnvInfluxURL = "GPUORCH_TEST_INFLUX_URL"
	// EnvInfluxd: the influxd binary (test/influxdb/build.sh), for tests
	// that start, stop and restart a private server.
	EnvInfluxd = "GPUORCH_TEST_INFLUXD"
	// EnvTools=1: every tool test-env.sh installs is installed.
	EnvTools = "GPUORCH_TEST_TOOLS"
)

const (
	slurmHint = "start the Slurm test cluster with `sudo bash test/slurm/up.sh` " +
		"(or `sudo make test-env`) and set " + EnvSlurm + "=1 (`source test/env.sh`)"
	influxHint = "start InfluxDB with `bash test/influxdb/build.sh && eval \"$(bash test/influxdb/up.sh --test-env)\"` " +
		"(or `sudo make test-env && source test/env.sh`), which sets " + EnvInfluxURL + " and " + EnvInfluxd
	toolsHint = "(" + EnvTools + "=1, set by test/env.sh, makes this a failure)"
)

// gate skips t with why and hint, or fails it when required.
func gate(t testing.TB, required bool, why, hint string) {
	t.Helper()
	if required {
		t.Fatalf("%s: %s", why, hint)
	}
	t.Skipf("%s: %s", why, hint)
}

// Slurm runs the test only with GPUORCH_TEST_SLURM=1, and then requires
// Slurm's clients on PATH and slurmctld answering.
func Slurm(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvSlurm) != "1" {
		gate(t, false, "no Slurm test cluster ("+EnvSlurm+" is not 1)", slurmHint)
	}
	for _, tool := range []string{"sinfo", "scontrol", "sbatch", "sacctmgr"} {
		if _, err := exec.LookPath(tool); err != nil {
			gate(t, true, EnvSlurm+"=1 but "+tool+" is not on PATH", slurmHint)
		}
	}
	out, err := slurmCmd("scontrol", "ping")
	if err != nil || !strings.Contains(out, "is UP") {
		gate(t, true, fmt.Sprintf("%s=1 but slurmctld does not answer (scontrol ping: %s %v)", EnvSlurm, out, err), slurmHint)
	}
}

// SlurmAccounting is Slurm with slurmdbd answering (sacctmgr works).
func SlurmAccounting(t testing.TB) {
	t.Helper()
	Slurm(t)
	if out, err := slurmCmd("sacctmgr", "-n", "-P", "show", "qos", "format=name"); err != nil {
		gate(t, true, fmt.Sprintf("%s=1 but Slurm accounting does not answer (sacctmgr show qos: %s %v)", EnvSlurm, out, err), slurmHint)
	}
}

// SlurmAdmin is for tests that apply GPU pools to the cluster: accounting
// and the include file (test/slurm/up.sh creates it) that slurm.conf reads
// the pools' partitions from.
func SlurmAdmin(t testing.TB, includeFile string) {
	t.Helper()
	SlurmAccounting(t)
	if _, err := os.Stat(includeFile); err != nil {
		gate(t, true, fmt.Sprintf("%s=1 but %v", EnvSlurm, err), slurmHint)
	}
}

// MPSHook is where test/slurm/up.sh installs the MPS hook, and what it
// makes slurm.conf run as Prolog and Epilog.
const MPSHook = "/etc/slurm/gpuorch-mps-hook"

// SlurmMPSHook is for tests that run the MPS hook on the cluster (it
// rewrites MPSHook through admin apply): accounting, the pools include
// file, and MPSHook as slurmd's Prolog and Epilog, which up.sh sets up, on
// a running cluster too.
func SlurmMPSHook(t testing.TB, includeFile string) {
	t.Helper()
	SlurmAdmin(t, includeFile)
	out, err := slurmCmd("scontrol", "show", "config")
	if err != nil {
		gate(t, true, fmt.Sprintf("%s=1 but scontrol show config failed: %s %v", EnvSlurm, out, err), slurmHint)
	}
	for _, k := range []string{"Prolog", "Epilog"} {
		found := false
		for _, l := range strings.Split(out, "\n") {
			if name, v, ok := strings.Cut(l, "="); ok && strings.TrimSpace(name) == k && strings.TrimSpace(v) == MPSHook {
				found = true
			}
		}
		if !found {
			gate(t, true, fmt.Sprintf("%s=1 but slurmd's %s is not %s", EnvSlurm, k, MPSHook), "run `sudo bash test/slurm/up.sh` again: it adds the hook to a running cluster")
		}
	}
}

// SlurmSPANK is for the SPANK plugin test: the cluster, Slurm's plugin
// headers (libslurm-dev, installed by test-env.sh), the plugstack.conf.d
// directory that loads a plugin without restarting Slurm, and go to build
// the plugin with.
func SlurmSPANK(t testing.TB) {
	t.Helper()
	Slurm(t)
	for _, p := range []string{"/usr/include/slurm/spank.h", "/etc/slurm/plugstack.conf.d"} {
		if _, err := os.Stat(p); err != nil {
			gate(t, true, fmt.Sprintf("%s=1 but %v", EnvSlurm, err), "apt-get install libslurm-dev slurm-wlm-basic-plugins (scripts/test-env.sh does)")
		}
	}
	if _, err := exec.LookPath("go"); err != nil {
		gate(t, true, "go is not on PATH", "the plugin is built with the go command")
	}
}

func slurmCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// SlurmUnreachableConf writes a slurm.conf that points Slurm's clients at a
// closed port with a 1 s message timeout, and returns the environment entry
// (SLURM_CONF=…) that makes a client use it: a real "slurmctld down" without
// stopping the shared test cluster. Call it after Slurm.
func SlurmUnreachableConf(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/etc/slurm/slurm.conf")
	if err != nil {
		t.Fatalf("read slurm.conf: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		k, _, _ := strings.Cut(strings.TrimSpace(l), "=")
		switch strings.ToLower(k) {
		case "slurmctldport", "messagetimeout":
			continue
		}
		lines = append(lines, l)
	}
	lines = append(lines, "SlurmctldPort=9", "MessageTimeout=1")
	path := filepath.Join(t.TempDir(), "slurm.conf")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return "SLURM_CONF=" + path
}

// InfluxDB returns the shared test server's URL (GPUORCH_TEST_INFLUX_URL),
// which must answer /ping; unset, the test skips.
func InfluxDB(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvInfluxURL)
	if u == "" {
		gate(t, false, "no InfluxDB ("+EnvInfluxURL+" is unset)", influxHint)
	}
	u = strings.TrimRight(u, "/")
	if err := ping(u); err != nil {
		gate(t, true, fmt.Sprintf("%s=%s but InfluxDB does not answer: %v", EnvInfluxURL, u, err), influxHint)
	}
	return u
}

func ping(base string) error {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("/ping: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Influxd returns the influxd binary (GPUORCH_TEST_INFLUXD), which must be
// an executable file; unset, the test skips.
func Influxd(t testing.TB) string {
	t.Helper()
	p := os.Getenv(EnvInfluxd)
	if p == "" {
		gate(t, false, "no influxd binary ("+EnvInfluxd+" is unset)", influxHint)
	}
	fi, err := os.Stat(p)
	if err == nil && (fi.IsDir() || fi.Mode().Perm()&0o111 == 0) {
		err = errors.New("not an executable file")
	}
	if err != nil {
		gate(t, true, fmt.Sprintf("%s=%s: %v", EnvInfluxd, p, err), influxHint)
	}
	return p
}

// Tool returns the path of the first of names on PATH. When none is there
// the test skips, saying to install the Debian package pkg, or fails with
// GPUORCH_TEST_TOOLS=1.
func Tool(t testing.TB, pkg string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	gate(t, os.Getenv(EnvTools) == "1", strings.Join(names, ", ")+" not on PATH",
		"apt-get install "+pkg+" "+toolsHint)
	return ""
}

// Mksquashfs is the tool that builds the test SIF images.
func Mksquashfs(t testing.TB) string {
	t.Helper()
	return Tool(t, "squashfs-tools", "mksquashfs")
}

// Chromium is the headless browser the report is rendered in.
func Chromium(t testing.TB) string {
	t.Helper()
	return Tool(t, "chromium", "chromium", "chromium-browser", "google-chrome")
}

// Slow skips a test that takes a minute or more under `go test -short`, the
// quick local run; make test and CI run it.
func Slow(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow: runs without -short (make test, CI)")
	}
}
