// Package nvmlx is gpuorch's NVML layer: a session over go-nvml (or one of
// its mock servers) that never calls NVML after a failed Init, the node
// inventory, and the per-device process sampling the enforcer polls.
package nvmlx

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/gpuorch/gpuorch/gpuslice"
)

// Lib is the part of go-nvml gpuorch calls at the top level. nvml.New()
// and the mock servers (mock/dgxa100, mock/dgxh100, mock/server) satisfy it.
type Lib interface {
	Init() nvml.Return
	Shutdown() nvml.Return
	DeviceGetCount() (int, nvml.Return)
	DeviceGetHandleByIndex(int) (nvml.Device, nvml.Return)
	SystemGetDriverVersion() (string, nvml.Return)
	SystemGetCudaDriverVersion() (int, nvml.Return)
}

// ErrNoNVML is wrapped by Open's error when NVML could not be initialised
// (no driver or library: not a GPU machine).
var ErrNoNVML = errors.New("NVML unavailable")

// Session is an initialised NVML. Only Open creates one, and only after
// Init succeeded, so no NVML function runs after a failed Init: with the
// library missing, any call (Shutdown included) kills the process with a
// symbol lookup error.
type Session struct {
	lib      Lib
	devs     []nvml.Device
	lastSeen []uint64 // per device, for GetProcessUtilization
	mig      []bool   // per device: MIG enabled at Open (changing it needs a GPU reset)
	closed   bool
}

// Default returns the real NVML library (loaded at Init).
func Default() Lib { return nvml.New() }

// Open initialises lib and looks up its devices.
func Open(lib Lib) (*Session, error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		// Do not call ErrorString or Shutdown: both are NVML calls.
		return nil, fmt.Errorf("%w: nvmlInit returned %d (%s)", ErrNoNVML, int(ret), initReason(ret))
	}
	s := &Session{lib: lib}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		s.Close()
		return nil, fmt.Errorf("nvmlDeviceGetCount: %s", nvml.ErrorString(ret))
	}
	for i := 0; i < n; i++ {
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			s.Close()
			return nil, fmt.Errorf("nvmlDeviceGetHandleByIndex(%d): %s", i, nvml.ErrorString(ret))
		}
		s.devs = append(s.devs, d)
		cur, _, ret := d.GetMigMode()
		s.mig = append(s.mig, ret == nvml.SUCCESS && cur == nvml.DEVICE_MIG_ENABLE)
	}
	s.lastSeen = make([]uint64, n)
	return s, nil
}

func initReason(ret nvml.Return) string {
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return "libnvidia-ml.so.1 not found: no NVIDIA driver on this machine"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "NVIDIA driver not loaded"
	case nvml.ERROR_NO_PERMISSION:
		return "no permission to talk to the driver"
	}
	return "see NVML documentation"
}

// Close shuts NVML down (once).
func (s *Session) Close() error {
	if s == nil || s.closed {
		return nil
	}
	s.closed = true
	if ret := s.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvmlShutdown: %s", nvml.ErrorString(ret))
	}
	return nil
}

// Count is the number of devices.
func (s *Session) Count() int { return len(s.devs) }

// GPU is one device's static facts.
type GPU struct {
	Index       int    `json:"index"`
	Name        string `json:"name"`
	UUID        string `json:"uuid"`
	MemoryTotal uint64 `json:"memory_total_bytes"`
	MemoryUsed  uint64 `json:"memory_used_bytes"`
	MIG         string `json:"mig_mode"` // enabled, disabled, n/a
	Compute     string `json:"cuda_compute_capability,omitempty"`
}

// GPUs reads each device's name, UUID, memory, MIG mode and compute
// capability. Optional facts a device does not support are left empty.
func (s *Session) GPUs() ([]GPU, error) {
	var out []GPU
	for i, d := range s.devs {
		g := GPU{Index: i, MIG: "n/a"}
		var ret nvml.Return
		if g.Name, ret = d.GetName(); ret != nvml.SUCCESS {
			return nil, fmt.Errorf("GPU %d: nvmlDeviceGetName: %s", i, nvml.ErrorString(ret))
		}
		g.UUID, _ = d.GetUUID()
		if mem, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
			g.MemoryTotal, g.MemoryUsed = mem.Total, mem.Used
		}
		if cur, _, ret := d.GetMigMode(); ret == nvml.SUCCESS {
			g.MIG = "disabled"
			if cur == nvml.DEVICE_MIG_ENABLE {
				g.MIG = "enabled"
			}
		}
		if maj, min, ret := d.GetCudaComputeCapability(); ret == nvml.SUCCESS {
			g.Compute = strconv.Itoa(maj) + "." + strconv.Itoa(min)
		}
		out = append(out, g)
	}
	return out, nil
}

// Probe builds this node's inventory: GPUs grouped by model (with peak FP16
// from the GPU table, overrides applied) and the CPU.
func Probe(lib Lib, overrides map[string]gpuslice.GPUSpec) gpuslice.Node {
	host, _ := os.Hostname()
	n := gpuslice.Node{Hostname: host, Status: "Ready"}
	s, err := Open(lib)
	if err != nil {
		n.Note = "no NVIDIA GPU: " + err.Error()
		n.Devices = []gpuslice.NodeDevice{gpuslice.CPUDevice()}
		return n
	}
	defer s.Close()
	n.Driver, _ = lib.SystemGetDriverVersion()
	if v, ret := lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
		n.CUDA = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
	}
	gpus, err := s.GPUs()
	if err != nil {
		n.Status, n.Note = "NotReady", err.Error()
	}
	byName := map[string][]GPU{}
	var names []string
	for _, g := range gpus {
		if byName[g.Name] == nil {
			names = append(names, g.Name)
		}
		byName[g.Name] = append(byName[g.Name], g)
	}
	sort.Strings(names)
	for _, name := range names {
		gs := byName[name]
		var uuids, mig []string
		var idx []int
		var used uint64
		for _, g := range gs {
			uuids, idx, mig = append(uuids, g.UUID), append(idx, g.Index), append(mig, g.MIG)
			used += g.MemoryUsed
		}
		dev := gpuslice.NodeDevice{Name: name, Type: "gpu", AvailableCount: len(gs), DeviceInfo: map[string]any{
			"memory_total_bytes":      gs[0].MemoryTotal,
			"memory_used_bytes":       used,
			"mig_mode":                mig,
			"indices":                 idx,
			"uuids":                   uuids,
			"cuda_compute_capability": gs[0].Compute,
			"driver_version":          n.Driver,
		}}
		if spec, err := gpuslice.LookupGPU(name, overrides); err == nil {
			p := spec.PeakFP16
			dev.DeviceConfig.PeakFP16TFLOPS = &p
		}
		n.Devices = append(n.Devices, dev)
	}
	if len(gpus) == 0 && n.Note == "" {
		n.Note = "NVML found no GPU"
	}
	n.Devices = append(n.Devices, gpuslice.CPUDevice())
	return n
}

// Sample reads every device's compute processes (PID and used memory) and,
// where the device reports it, each process's SM utilisation since the last
// sample. It implements gpuslice.GPUReader.
func (s *Session) Sample() ([]gpuslice.DeviceSample, error) {
	out := make([]gpuslice.DeviceSample, 0, len(s.devs))
	var errs []error
	for i, d := range s.devs {
		procs, ret := d.GetComputeRunningProcesses()
		if ret != nvml.SUCCESS {
			// One GPU failing (fallen off the bus, not supported) must not
			// blind the enforcer to the others.
			errs = append(errs, fmt.Errorf("GPU %d: nvmlDeviceGetComputeRunningProcesses: %s", i, nvml.ErrorString(ret)))
			continue
		}
		ds := gpuslice.DeviceSample{Index: i, Procs: make([]gpuslice.ProcUsage, 0, len(procs))}
		for _, p := range procs {
			ds.Procs = append(ds.Procs, gpuslice.ProcUsage{PID: int(p.Pid), UsedMemory: p.UsedGpuMemory, SMUtil: -1})
		}
		if s.mig[i] {
			// On a MIG GPU, processes are listed per MIG device; charge them
			// to the parent GPU's sample.
			mp, err := migProcesses(d)
			if err != nil {
				errs = append(errs, fmt.Errorf("GPU %d: %w", i, err))
			}
			ds.Procs = append(ds.Procs, mp...)
		}
		if !s.mig[i] {
			s.smUtil(i, d, ds.Procs)
		}
		out = append(out, ds)
	}
	return out, errors.Join(errs...)
}

// smUtil fills in each process's SM utilisation: the mean of the samples
// NVML took since the last poll. NVML returns a sample only for a process
// with some utilisation in its period, and NOT_FOUND when there is none
// since lastSeen, so a listed process without one was idle (0). A device
// that does not report per-process utilisation (NOT_SUPPORTED, MIG) leaves
// -1: unknown, which the enforcer never reads as idle.
func (s *Session) smUtil(i int, d nvml.Device, procs []gpuslice.ProcUsage) {
	util, ret := d.GetProcessUtilization(s.lastSeen[i])
	if ret != nvml.SUCCESS && ret != nvml.ERROR_NOT_FOUND {
		return
	}
	sum := make(map[uint32][2]uint64, len(util)) // pid → (sum, n)
	for _, u := range util {
		if u.TimeStamp > s.lastSeen[i] {
			s.lastSeen[i] = u.TimeStamp
		}
		v := sum[u.Pid]
		sum[u.Pid] = [2]uint64{v[0] + uint64(u.SmUtil), v[1] + 1}
	}
	for k := range procs {
		procs[k].SMUtil = 0
		if v := sum[uint32(procs[k].PID)]; v[1] > 0 {
			procs[k].SMUtil = int((v[0] + v[1]/2) / v[1])
		}
	}
}

func migProcesses(d nvml.Device) ([]gpuslice.ProcUsage, error) {
	n, ret := d.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvmlDeviceGetMaxMigDeviceCount: %s", nvml.ErrorString(ret))
	}
	var out []gpuslice.ProcUsage
	for k := 0; k < n; k++ {
		md, ret := d.GetMigDeviceHandleByIndex(k)
		if ret == nvml.ERROR_NOT_FOUND {
			continue // no MIG device in this slot
		}
		if ret != nvml.SUCCESS {
			return out, fmt.Errorf("nvmlDeviceGetMigDeviceHandleByIndex(%d): %s", k, nvml.ErrorString(ret))
		}
		procs, ret := md.GetComputeRunningProcesses()
		if ret != nvml.SUCCESS {
			return out, fmt.Errorf("MIG device %d: nvmlDeviceGetComputeRunningProcesses: %s", k, nvml.ErrorString(ret))
		}
		for _, p := range procs {
			out = append(out, gpuslice.ProcUsage{PID: int(p.Pid), UsedMemory: p.UsedGpuMemory, SMUtil: -1})
		}
	}
	return out, nil
}
