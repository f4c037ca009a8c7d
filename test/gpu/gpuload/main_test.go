package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/testgate"
)

func runLoad(t *testing.T, args ...string) (Result, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	var r Result
	if code == exitOK {
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("output is not a result: %v\n%s", err, out.String())
		}
	}
	return r, errOut.String(), code
}

// Without the driver library, gpuload says so and exits 3.
func TestNoDriver(t *testing.T) {
	_, errOut, code := runLoad(t, "--libcuda", "/nonexistent/libcuda.so.1", "--mem", "1Gi")
	if code != exitNoDriver || !strings.HasPrefix(errOut, "gpuload: no NVIDIA driver: /nonexistent/libcuda.so.1: cannot open shared object file") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mem", "lots"}, `--mem: bad memory quantity "lots"`},
		{[]string{"--busy", "-1s"}, "must not be negative"},
		{[]string{"--threads", "100"}, "a multiple of 32"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--nope"}, "flag provided but not defined: -nope"},
	} {
		if _, errOut, code := runLoad(t, c.args...); code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q; want %d and %q", c.args, code, errOut, exitUsage, c.want)
		}
	}
}

// With a stand-in driver library (testdata/fakecuda.c: the same entry
// points, a pretend device) the whole path runs: dlopen and dlsym, the PTX
// handed to the driver, the kernel's arguments, the busy loop and the JSON.
func TestFakeDriver(t *testing.T) {
	gcc := testgate.Tool(t, "gcc", "gcc")
	dir := t.TempDir()
	lib := filepath.Join(dir, "libcuda.so.1")
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", lib, "testdata/fakecuda.c").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	log := filepath.Join(dir, "launches")
	t.Setenv("FAKECUDA_LOG", log)
	t.Setenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "25")
	r, errOut, code := runLoad(t, "--libcuda", lib, "--mem", "3Mi", "--busy", "200ms", "--blocks-per-sm", "2", "--threads", "64")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if r.Name != "Fake GPU 0" || r.SMs != 4 || r.ComputeCapability != "9.0" || r.DriverVersion != 12040 || r.MemRequested != 3<<20 ||
		r.MemTotal-r.MemFree < 3<<20 || r.Grid != 8 || r.Block != 64 || r.Kernels < 2 || r.BusySeconds < 0.2 || r.FMA <= 0 ||
		r.FMAPerSecond != r.FMA/r.BusySeconds || r.MPSThreadPercentage != "25" {
		t.Fatalf("%+v", r)
	}
	if !strings.Contains(errOut, "holds 3145728 bytes on device 0 (Fake GPU 0)") {
		t.Errorf("no ready line: %s", errOut)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != r.Kernels || !strings.HasPrefix(lines[0], "launch grid=8 block=64 iters=4096 out=") {
		t.Fatalf("%d kernels, launches:\n%s", r.Kernels, b)
	}
	// A driver without a GPU: exit 3, "no NVIDIA GPU".
	t.Setenv("FAKECUDA", "nodevice")
	if _, errOut, code := runLoad(t, "--libcuda", lib); code != exitNoDriver || !strings.Contains(errOut, "no NVIDIA GPU: cuInit: CUDA_ERROR_NO_DEVICE (100)") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// busy.ptx is what llc makes of busy.ll (go generate).
func TestPTXIsGenerated(t *testing.T) {
	llc := testgate.Tool(t, "llvm", "llc")
	out := filepath.Join(t.TempDir(), "busy.ptx")
	if b, err := exec.Command(llc, "-march=nvptx64", "-mcpu=sm_70", "-mattr=+ptx60", "-O2", "busy.ll", "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	want, _ := os.ReadFile(out)
	if string(want) != busyPTX {
		t.Fatal("busy.ptx is stale: run go generate ./test/gpu/gpuload/")
	}
}
