package gpuslice

import (
	"bufio"
	"os"
	"runtime"
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

// DeviceConfig holds the peak the slicing maths uses. It is null when not
// known (a CPU, or a GPU model missing from the table).
type DeviceConfig struct {
	PeakFP16TFLOPS *float64 `json:"peak_fp16_TFLOPS"`
}

// CPUDevice describes this machine's CPU from /proc/cpuinfo: the model name,
// logical CPUs (num_virtual_cores) and sockets (available_count). Its peak
// FP16 is left null: it depends on vector units and clocks gpuorch does not
// measure.
func CPUDevice() NodeDevice {
	name, sockets := "unknown CPU", map[string]bool{}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
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
		f.Close()
	}
	n := len(sockets)
	if n == 0 {
		n = 1
	}
	return NodeDevice{Name: name, Type: "cpu", DeviceInfo: map[string]any{"num_virtual_cores": runtime.NumCPU()}, AvailableCount: n}
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
