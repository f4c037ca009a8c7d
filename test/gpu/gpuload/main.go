// Command gpuload is a GPU workload that needs no CUDA toolkit: it loads
// the driver's libcuda.so.1 at run time (dlopen, through cgo, with the few
// driver API prototypes declared in cuda.go), allocates and writes the
// device memory asked for, runs a busy kernel given as PTX text (the driver
// JIT-compiles it for the GPU at hand) for the time asked for, optionally
// holds the memory a while longer, and prints what it achieved as JSON.
//
// test/gpu/check.sh runs it against gpuorch's enforcer and under MPS. It
// lives beside that script rather than under cmd/ because it is a test
// workload, not a part of gpuorch: gpuorch itself never needs the driver
// API, and this keeps it (and its cgo) out of the gpuorch binary.
//
//	gpuload --mem 2Gi --busy 10s            # hold 2 GiB, keep the SMs busy for 10 s
//	gpuload --mem 1Gi --busy 0 --hold 60s   # only hold 1 GiB for a minute
//
// Exit codes: 0 done; 1 a CUDA call failed; 2 bad flags; 3 no NVIDIA driver
// or no GPU on this machine (the message starts "no NVIDIA driver" or "no
// NVIDIA GPU"). It builds anywhere cgo does; it needs no GPU to build.
package main

import (
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/gpuorch/gpuorch/gpuslice"
)

//go:generate llc -march=nvptx64 -mcpu=sm_70 -mattr=+ptx60 -O2 busy.ll -o busy.ptx

// busyPTX is the kernel busy(float *out, uint32 iters): each thread runs
// iters iterations of two dependent FP32 FMA chains (busy.ll).
//
//go:embed busy.ptx
var busyPTX string

// Exit codes.
const (
	exitOK       = 0
	exitCUDA     = 1
	exitUsage    = 2
	exitNoDriver = 3
)

// Result is what gpuload prints.
type Result struct {
	PID               int     `json:"pid"`
	Device            int     `json:"device"`
	Name              string  `json:"name"`
	ComputeCapability string  `json:"compute_capability"`
	SMs               int     `json:"sms"`
	DriverVersion     int     `json:"cuda_driver_version"`
	MemRequested      uint64  `json:"mem_requested_bytes"`
	MemFree           uint64  `json:"mem_free_bytes"` // after allocating, as the context sees it
	MemTotal          uint64  `json:"mem_total_bytes"`
	BusySeconds       float64 `json:"busy_s"`
	Kernels           int     `json:"kernels"`
	Grid              int     `json:"grid"`
	Block             int     `json:"block"`
	FMA               float64 `json:"fma"`
	FMAPerSecond      float64 `json:"fma_per_s"`
	TFLOPS            float64 `json:"fp32_tflops"` // 2 FLOP per FMA
	HeldSeconds       float64 `json:"held_s"`
	// The MPS client settings in the environment, if any.
	MPSThreadPercentage string `json:"mps_active_thread_percentage,omitempty"`
	MPSPipeDirectory    string `json:"mps_pipe_directory,omitempty"`
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gpuload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mem := fs.String("mem", "0", "device memory to allocate, write and hold, e.g. 2Gi, 512Mi")
	busy := fs.Duration("busy", 5*time.Second, "how long to run the busy kernel (0: none)")
	hold := fs.Duration("hold", 0, "how long to keep the memory and the context after the busy phase")
	device := fs.Int("device", 0, "CUDA device index (counted within CUDA_VISIBLE_DEVICES)")
	blocksPerSM := fs.Int("blocks-per-sm", 8, "blocks per multiprocessor in the busy kernel's grid")
	threads := fs.Int("threads", 256, "threads per block")
	libcuda := fs.String("libcuda", "libcuda.so.1", "the CUDA driver library to load")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	bytes, err := gpuslice.ParseBytes(*mem)
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case err != nil:
		err = fmt.Errorf("--mem: %w", err)
	case *busy < 0 || *hold < 0:
		err = errors.New("--busy and --hold must not be negative")
	case *blocksPerSM < 1 || *threads < 32 || *threads > 1024 || *threads%32 != 0:
		err = errors.New("--blocks-per-sm must be ≥ 1 and --threads a multiple of 32 in 32..1024")
	}
	if err != nil {
		fmt.Fprintln(stderr, "gpuload:", err)
		return exitUsage
	}
	// A CUDA context is current on one OS thread: keep every call on it.
	runtime.LockOSThread()
	if err := openDriver(*libcuda); err != nil {
		fmt.Fprintf(stderr, "gpuload: no NVIDIA driver: %v\n", err)
		return exitNoDriver
	}
	r := Result{PID: os.Getpid(), Device: *device, MemRequested: uint64(bytes),
		MPSThreadPercentage: os.Getenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), MPSPipeDirectory: os.Getenv("CUDA_MPS_PIPE_DIRECTORY")}
	if r.DriverVersion, err = initDriver(); err != nil {
		var ce *cuError
		if errors.As(err, &ce) && ce.code == cudaErrorNoDevice {
			fmt.Fprintf(stderr, "gpuload: no NVIDIA GPU: %v\n", err)
			return exitNoDriver
		}
		fmt.Fprintf(stderr, "gpuload: %v\n", err)
		return exitCUDA
	}
	g, err := openGPU(*device, busyPTX)
	if err != nil {
		fmt.Fprintf(stderr, "gpuload: device %d: %v\n", *device, err)
		return exitCUDA
	}
	defer g.close()
	r.Name, r.ComputeCapability, r.SMs = g.name, g.cc, g.sms
	if err := g.alloc(uint64(bytes)); err != nil {
		fmt.Fprintf(stderr, "gpuload: %s: %v\n", *mem, err)
		return exitCUDA
	}
	if r.MemFree, r.MemTotal, err = g.memInfo(); err != nil {
		fmt.Fprintf(stderr, "gpuload: %v\n", err)
		return exitCUDA
	}
	// The line a script waits for: the memory is allocated and written.
	fmt.Fprintf(stderr, "gpuload: pid %d holds %d bytes on device %d (%s)\n", r.PID, bytes, *device, r.Name)
	if err := busyLoop(g, &r, *busy, *blocksPerSM, *threads); err != nil {
		fmt.Fprintf(stderr, "gpuload: busy kernel: %v\n", err)
		return exitCUDA
	}
	if *hold > 0 {
		fmt.Fprintf(stderr, "gpuload: pid %d holding for %s\n", r.PID, *hold)
		time.Sleep(*hold)
		r.HeldSeconds = hold.Seconds()
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return exitCUDA
	}
	return exitOK
}

// busyLoop launches the busy kernel, one launch at a time, until d has
// passed. The first launches grow the iteration count until one launch
// takes about 20 ms, short enough to stop on time and long enough that
// launch overhead does not count.
func busyLoop(g *gpu, r *Result, d time.Duration, blocksPerSM, threads int) error {
	if d <= 0 {
		return nil
	}
	r.Grid, r.Block = g.sms*blocksPerSM, threads
	iters := uint32(1 << 12)
	const target = 20 * time.Millisecond
	start := time.Now()
	for time.Since(start) < d {
		t0 := time.Now()
		if err := g.launch(r.Grid, r.Block, iters); err != nil {
			return err
		}
		dt := time.Since(t0)
		r.Kernels++
		r.FMA += 2 * float64(iters) * float64(r.Grid) * float64(r.Block)
		if dt < target/2 && iters < 1<<28 {
			grow := uint64(iters) * 4
			if dt > time.Millisecond {
				grow = uint64(float64(iters) * float64(target) / float64(dt))
			}
			iters = uint32(min(grow, 1<<28))
		}
	}
	r.BusySeconds = time.Since(start).Seconds()
	r.FMAPerSecond = r.FMA / r.BusySeconds
	r.TFLOPS = 2 * r.FMAPerSecond / 1e12
	return nil
}
