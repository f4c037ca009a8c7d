package gpuslice

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Node is one machine's inventory in the shape of the benchmark workflow's
// node-metrics API (hostname, status, devices[…]), with GPU memory, MIG mode
// and driver added under device_info.
type Node struct {
	Hostname string       `json:"hostname"`
	Status   string       `json:"status"`
	Devices  []NodeDevice `json:"devices"`
	// Driver is the NVIDIA driver version; empty without NVML.
	Driver string `json:"driver_version,omitempty"`
	CUDA   string `json:"cuda_driver_version,omitempty"`
	// Slurm fields, filled by `gpuorch nodes` from scontrol.
	SlurmState string `json:"slurm_state,omitempty"`
	Partitions string `json:"partitions,omitempty"`
	Gres       string `json:"gres,omitempty"`
	// Note says what could not be seen ("no NVIDIA GPU: …").
	Note string `json:"note,omitempty"`
}

// NodeDevice is one kind of device on a node and how many there are.
type NodeDevice struct {
	Name           string         `json:"name"`
	Type           string         `json:"type"` // "gpu" or "cpu"
	DeviceInfo     map[string]any `json:"device_info"`
	DeviceConfig   DeviceConfig   `json:"device_config"`
	AvailableCount int            `json:"available_count"`
}

// DeviceConfig holds the peak the slicing maths and simulate use, under
// the names of the benchmark workflow's node payload (Bud's llm-benchmark
// collector). PeakFP16TFLOPS is null when not known (a GPU model missing
// from the table, a CPU missing from the CPU table). For a GPU the figures
// are one GPU's; for a CPU, as Bud's collector reports them, all sockets'
// together (peak and memory bandwidth), with MemPerDeviceGB the memory per
// available_count unit.
type DeviceConfig struct {
	PeakFP16TFLOPS      *float64 `json:"peak_fp16_TFLOPS"`
	MemoryBandwidthGBps *float64 `json:"hbm_bandwidth_in_GB_per_sec,omitempty"`
	MemPerDeviceGB      *float64 `json:"mem_per_GPU_in_GB,omitempty"`
}

// CPUDevice describes this machine's CPU from /proc/cpuinfo and
// /proc/meminfo: the model name, logical CPUs (num_virtual_cores), sockets
// (available_count), memory; and, when the model is in the CPU table
// (MatchCPU), its peak FP16 TFLOPS and memory bandwidth for all sockets.
func CPUDevice() NodeDevice {
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	meminfo, _ := os.ReadFile("/proc/meminfo")
	return cpuDevice(string(cpuinfo), string(meminfo), runtime.NumCPU())
}

// cpuDevice is CPUDevice from the files' text.
func cpuDevice(cpuinfo, meminfo string, logical int) NodeDevice {
	name, sockets := "unknown CPU", map[string]bool{}
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			name = strings.TrimSpace(v)
		case "physical id":
			sockets[strings.TrimSpace(v)] = true
		}
	}
	n := len(sockets)
	if n == 0 {
		n = 1
	}
	d := NodeDevice{Name: name, Type: "cpu", DeviceInfo: map[string]any{"num_virtual_cores": logical, "sockets": n}, AvailableCount: n}
	if mem := memTotal(meminfo); mem > 0 {
		d.DeviceInfo["memory_total_bytes"] = uint64(mem)
		per := float64(mem) / 1e9 / float64(n)
		d.DeviceConfig.MemPerDeviceGB = &per
	}
	if p, err := MatchCPU(name); err == nil {
		peak, bw := p.PeakFP16*float64(n), p.BandwidthGBps*float64(n)
		d.DeviceConfig.PeakFP16TFLOPS, d.DeviceConfig.MemoryBandwidthGBps = &peak, &bw
		d.DeviceInfo["cpu_model"] = p.Model
	}
	return d
}

// memTotal is MemTotal of /proc/meminfo in bytes (0 when absent).
func memTotal(meminfo string) Bytes {
	for _, line := range strings.Split(meminfo, "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseUint(f[0], 10, 64); err == nil {
					return Bytes(kb) * 1024
				}
			}
		}
	}
	return 0
}

// HasGPU reports whether the node has a GPU device.
func (n Node) HasGPU() bool {
	for _, d := range n.Devices {
		if d.Type == "gpu" {
			return true
		}
	}
	return false
}
