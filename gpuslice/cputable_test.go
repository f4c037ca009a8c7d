package gpuslice

import (
	"encoding/json"
	"math"
	"runtime"
	"strings"
	"testing"
)

// The seed's node (Bud's payload): "Intel(R) Xeon(R) Platinum 8480+", 224
// virtual cores. The table gives per-socket figures; 224 logical CPUs are
// two sockets of 112.
func TestMatchCPUSeedNode(t *testing.T) {
	p, err := MatchCPU("Intel(R) Xeon(R) Platinum 8480+")
	if err != nil {
		t.Fatal(err)
	}
	if p.Model != "XEON 8480" || p.Cores != 56 || p.Threads != 112 || p.BaseGHz != 2.0 || p.FLOPsPerCycle != 1024 || p.Unit != "AMX-BF16" {
		t.Fatalf("row = %+v", p)
	}
	// 56 cores × 2.0 GHz × 1024 FLOPs/cycle; 8 channels × 4800 MT/s × 8 bytes.
	if math.Abs(p.PeakFP16-114.688) > 1e-9 || math.Abs(p.BandwidthGBps-307.2) > 1e-9 || p.Memory != "DDR5-4800 × 8" {
		t.Errorf("peaks = %v TFLOPS, %v GB/s, %s", p.PeakFP16, p.BandwidthGBps, p.Memory)
	}
	if n := p.Sockets(224); n != 2 {
		t.Errorf("sockets of 224 logical CPUs = %d", n)
	}
	if n := p.Sockets(0); n != 1 {
		t.Errorf("sockets of unknown = %d", n)
	}
	if !strings.HasPrefix(p.Source, "https://www.intel.com/") {
		t.Errorf("source = %q", p.Source)
	}
}

func TestMatchCPUNames(t *testing.T) {
	for _, c := range []struct {
		name, model string
		peak        float64
	}{
		{"Intel(R) Xeon(R) Platinum 8480+", "XEON 8480", 114.688},
		{"intel xeon platinum 8480+", "XEON 8480", 114.688},
		{"Xeon 8480+", "XEON 8480", 114.688},
		{"Intel(R) Xeon(R) Platinum 8490H", "XEON 8490H", 60 * 1.9 * 1024 / 1000},
		{"INTEL(R) XEON(R) PLATINUM 8592+", "XEON 8592", 64 * 1.9 * 1024 / 1000},
		{"Intel(R) Xeon(R) 6980P", "XEON 6980P", 128 * 2.0 * 1024 / 1000},
		{"Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", "XEON 8380", 40 * 2.3 * 64 / 1000},
		{"Intel(R) Xeon(R) Platinum 8480C", "", 0}, // a different (cloud) part
		{"AMD EPYC 9654 96-Core Processor", "", 0},
		{"cpu", "", 0},
	} {
		p, err := MatchCPU(c.name)
		if c.model == "" {
			if err == nil || !strings.Contains(err.Error(), "not in the CPU table") {
				t.Errorf("%q: %+v %v, want no match", c.name, p, err)
			}
			continue
		}
		if err != nil || p.Model != c.model || math.Abs(p.PeakFP16-c.peak) > 1e-9 {
			t.Errorf("%q: %+v %v, want %s %v", c.name, p, err, c.model, c.peak)
		}
	}
	for _, m := range CPUModels() {
		if _, err := MatchCPU(m); err != nil {
			t.Errorf("the table's own name %q does not match: %v", m, err)
		}
	}
}

// The inventory's CPU device from /proc text: a two-socket 8480+ node gets
// the table's peak and bandwidth for both sockets; an unknown CPU keeps a
// null peak (JSON null, as the node payload writes it).
func TestCPUDeviceFromProc(t *testing.T) {
	var cpuinfo strings.Builder
	for i := 0; i < 4; i++ {
		cpuinfo.WriteString("processor\t: " + string(rune('0'+i)) + "\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: " + string(rune('0'+i%2)) + "\n\n")
	}
	d := cpuDevice(cpuinfo.String(), "MemTotal:       2113265884 kB\nMemFree: 1 kB\n", 224)
	if d.Type != "cpu" || d.Name != "Intel(R) Xeon(R) Platinum 8480+" || d.AvailableCount != 2 || d.DeviceInfo["num_virtual_cores"] != 224 {
		t.Fatalf("device = %+v", d)
	}
	if p := d.DeviceConfig.PeakFP16TFLOPS; p == nil || math.Abs(*p-229.376) > 1e-9 {
		t.Errorf("peak = %v, want 229.376 (2 × 114.688)", p)
	}
	if b := d.DeviceConfig.MemoryBandwidthGBps; b == nil || math.Abs(*b-614.4) > 1e-9 {
		t.Errorf("bandwidth = %v", b)
	}
	if d.DeviceInfo["memory_total_bytes"] != uint64(2113265884)*1024 || d.DeviceConfig.MemPerDeviceGB == nil {
		t.Errorf("memory = %v, per device %v", d.DeviceInfo["memory_total_bytes"], d.DeviceConfig.MemPerDeviceGB)
	}
	u := cpuDevice("model name\t: AMD EPYC 9654 96-Core Processor\n", "", 192)
	if u.DeviceConfig.PeakFP16TFLOPS != nil || u.AvailableCount != 1 {
		t.Errorf("unknown CPU: %+v", u)
	}
	b, _ := json.Marshal(u)
	if !strings.Contains(string(b), `"device_config":{"peak_fp16_TFLOPS":null}`) {
		t.Errorf("unknown CPU JSON: %s", b)
	}
	// This machine: whatever it is, the device says so.
	me := CPUDevice()
	if me.Name == "" || me.DeviceInfo["num_virtual_cores"] != runtime.NumCPU() || me.AvailableCount < 1 {
		t.Errorf("this machine: %+v", me)
	}
}
