package perfmodel

import (
	"math"
	"testing"
)

// TestLookupDeviceNames pins what LookupDevice answers, errors and the
// partial Device that comes with them included (llmbench fills the missing
// numbers from the spec), for every row of the GPU table and the NVML
// spellings the matcher accepts, and for names it rejects.
func TestLookupDeviceNames(t *testing.T) {
	for _, c := range []struct {
		name     string
		peak, bw float64
		memGB    float64
		err      string
	}{
		{"H100", 989, 3350, 85.89934592, ""},
		{"h100", 989, 3350, 85.89934592, ""},
		{"NVIDIA H100 80GB HBM3", 989, 3350, 85.89934592, ""},
		{"nvidia h100 80gb hbm3", 989, 3350, 85.89934592, ""},
		{"NVIDIA H100 PCIe", 835, 2000, 85.89934592, ""},
		{"NVIDIA H100 NVL", 989, 3900, 100.931731456, ""},
		{"NVIDIA H100 SXM5 94GB", 989, 3350, 100.931731456, ""},
		{"NVIDIA H100 80GB HBM3 MIG 1g.10gb", 989, 3350, 10.73741824, ""},
		{"NVIDIA H100 80GB HBM3 MIG 3g.40gb", 989, 3350, 42.94967296, ""},
		{"H100 PCIe NVL", 835, 2000, 85.89934592, ""},
		{"H800", 989, 3350, 85.89934592, ""},
		{"NVIDIA H800", 989, 3350, 85.89934592, ""},
		{"NVIDIA H800 PCIe", 835, 2000, 85.89934592, ""},
		{"NVIDIA H800 NVL", 835, 3350, 100.931731456, ""},
		{"H200", 989, 4800, 151.397597184, ""},
		{"NVIDIA H200", 989, 4800, 151.397597184, ""},
		{"NVIDIA H200 141GB HBM3e", 989, 4800, 151.397597184, ""},
		{"NVIDIA H200 NVL", 989, 4800, 151.397597184, ""},
		{"NVIDIA H200 MIG 1g.18gb", 989, 4800, 19.327352832, ""},
		{"H20", 148, 4000, 103.079215104, ""},
		{"NVIDIA H20", 148, 4000, 103.079215104, ""},
		{"B200", 2250, 8000, 193.27352832, ""},
		{"NVIDIA B200", 2250, 8000, 193.27352832, ""},
		{"A100", 312, 2039, 0, "device \"A100\": memory size unknown (say e.g. \"A100 80GB\"); give memory_gb"},
		{"a100", 312, 2039, 0, "device \"a100\": memory size unknown (say e.g. \"A100 80GB\"); give memory_gb"},
		{"NVIDIA A100-SXM4-80GB", 312, 2039, 85.89934592, ""},
		{"NVIDIA A100-SXM4-40GB", 312, 1555, 42.94967296, ""},
		{"Mock NVIDIA A100-SXM4-40GB", 312, 1555, 42.94967296, ""},
		{"a100-sxm4-40gb", 312, 1555, 42.94967296, ""},
		{"NVIDIA A100-PCIE-40GB", 312, 1555, 42.94967296, ""},
		{"NVIDIA A100 80GB PCIe", 312, 1935, 85.89934592, ""},
		{"A100 80GB", 312, 2039, 85.89934592, ""},
		{"A100 40GB", 312, 1555, 42.94967296, ""},
		{"A100 PCIe", 312, 1935, 0, "device \"A100 PCIe\": memory size unknown (say e.g. \"A100 80GB\"); give memory_gb"},
		{"A100 PCIe 40GB", 312, 1555, 42.94967296, ""},
		{"NVIDIA A100-SXM4-40GB MIG 1g.5gb", 312, 1555, 5.36870912, ""},
		{"NVIDIA A100-SXM4-80GB MIG 2g.20gb", 312, 2039, 21.47483648, ""},
		{"A800", 312, 2039, 0, "device \"A800\": memory size unknown (say e.g. \"A100 80GB\"); give memory_gb"},
		{"NVIDIA A800-SXM4-80GB", 312, 2039, 85.89934592, ""},
		{"NVIDIA A800 80GB PCIe", 312, 2039, 85.89934592, ""},
		{"NVIDIA A800-SXM4-40GB", 312, 2039, 42.94967296, ""},
		{"A30", 165, 933, 25.769803776, ""},
		{"NVIDIA A30", 165, 933, 25.769803776, ""},
		{"NVIDIA A30 MIG 1g.6gb", 165, 933, 6.442450944, ""},
		{"A40", 149.7, 696, 51.539607552, ""},
		{"NVIDIA A40", 149.7, 696, 51.539607552, ""},
		{"A10G", 125, 600, 25.769803776, ""},
		{"NVIDIA A10G", 125, 600, 25.769803776, ""},
		{"A10", 125, 600, 25.769803776, ""},
		{"NVIDIA A10", 125, 600, 25.769803776, ""},
		{"L40S", 365, 864, 51.539607552, ""},
		{"NVIDIA L40S", 365, 864, 51.539607552, ""},
		{"L40", 181, 864, 51.539607552, ""},
		{"NVIDIA L40", 181, 864, 51.539607552, ""},
		{"L4", 121, 300, 25.769803776, ""},
		{"NVIDIA L4", 121, 300, 25.769803776, ""},
		{"l4", 121, 300, 25.769803776, ""},
		{"T4", 65, 320, 17.179869184, ""},
		{"Tesla T4", 65, 320, 17.179869184, ""},
		{"V100S", 130, 1134, 34.359738368, ""},
		{"Tesla V100S-PCIE-32GB", 130, 1134, 34.359738368, ""},
		{"V100", 125, 900, 0, "device \"V100\": memory size unknown (say e.g. \"A100 80GB\"); give memory_gb"},
		{"Tesla V100-SXM2-16GB", 125, 900, 17.179869184, ""},
		{"Tesla V100-SXM2-32GB", 125, 900, 34.359738368, ""},
		{"Tesla V100-PCIE-16GB", 125, 900, 17.179869184, ""},
		{"RTX 4090", 165.16, 1008, 25.769803776, ""},
		{"NVIDIA GeForce RTX 4090", 165.16, 1008, 25.769803776, ""},
		{"RTX 5090", 419.2, 1792, 34.359738368, ""},
		{"NVIDIA GeForce RTX 5090", 419.2, 1792, 34.359738368, ""},
		{"MI300X", 1307, 5300, 192, ""},
		{"mi300x", 1307, 5300, 192, ""},
		{"AMD Instinct MI300X", 1307, 5300, 192, ""},
		{"4090", 0, 0, 0, "device \"4090\": GPU model \"4090\": peak FP16 TFLOPS unknown; add [gpu_models.\"4090\"] peak_fp16_tflops = N to the pools file"},
		{"RTX", 0, 0, 0, "device \"RTX\": GPU model \"RTX\": peak FP16 TFLOPS unknown; add [gpu_models.\"RTX\"] peak_fp16_tflops = N to the pools file"},
		{"NVIDIA", 0, 0, 0, "device \"NVIDIA\": GPU model \"NVIDIA\": peak FP16 TFLOPS unknown; add [gpu_models.\"NVIDIA\"] peak_fp16_tflops = N to the pools file"},
		{"Matrox G200", 0, 0, 0, "device \"Matrox G200\": GPU model \"Matrox G200\": peak FP16 TFLOPS unknown; add [gpu_models.\"Matrox G200\"] peak_fp16_tflops = N to the pools file"},
		{"Voodoo 5", 0, 0, 0, "device \"Voodoo 5\": GPU model \"Voodoo 5\": peak FP16 TFLOPS unknown; add [gpu_models.\"Voodoo 5\"] peak_fp16_tflops = N to the pools file"},
		{"NVIDIA GH200 480GB", 0, 0, 0, "device \"NVIDIA GH200 480GB\": GPU model \"NVIDIA GH200 480GB\": peak FP16 TFLOPS unknown; add [gpu_models.\"NVIDIA GH200 480GB\"] peak_fp16_tflops = N to the pools file"},
		{"NVIDIA GB200", 0, 0, 0, "device \"NVIDIA GB200\": GPU model \"NVIDIA GB200\": peak FP16 TFLOPS unknown; add [gpu_models.\"NVIDIA GB200\"] peak_fp16_tflops = N to the pools file"},
		{"NVIDIA RTX 6000 Ada Generation", 0, 0, 0, "device \"NVIDIA RTX 6000 Ada Generation\": GPU model \"NVIDIA RTX 6000 Ada Generation\": peak FP16 TFLOPS unknown; add [gpu_models.\"NVIDIA RTX 6000 Ada Generation\"] peak_fp16_tflops = N to the pools file"},
		{"NVIDIA RTX A6000", 0, 0, 0, "device \"NVIDIA RTX A6000\": GPU model \"NVIDIA RTX A6000\": peak FP16 TFLOPS unknown; add [gpu_models.\"NVIDIA RTX A6000\"] peak_fp16_tflops = N to the pools file"},
		{"AMD Instinct MI250X", 0, 0, 0, "device \"AMD Instinct MI250X\": GPU model \"AMD Instinct MI250X\": peak FP16 TFLOPS unknown; add [gpu_models.\"AMD Instinct MI250X\"] peak_fp16_tflops = N to the pools file"},
		{"H100H200", 0, 0, 0, "device \"H100H200\": GPU model \"H100H200\": peak FP16 TFLOPS unknown; add [gpu_models.\"H100H200\"] peak_fp16_tflops = N to the pools file"},
		{"Tesla K80 12GB", 0, 0, 0, "device \"Tesla K80 12GB\": GPU model \"Tesla K80 12GB\": peak FP16 TFLOPS unknown; add [gpu_models.\"Tesla K80 12GB\"] peak_fp16_tflops = N to the pools file"},
		{"", 0, 0, 0, "device \"\": GPU model \"\": peak FP16 TFLOPS unknown; add [gpu_models.\"\"] peak_fp16_tflops = N to the pools file"},
	} {
		d, err := LookupDevice(c.name)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if d.Name != c.name || d.PeakTFLOPS != c.peak || d.BandwidthGBps != c.bw || d.MemoryGB != c.memGB || msg != c.err {
			t.Errorf("LookupDevice(%q) = %g TFLOPS, %g GB/s, %g GB, error %q; want %g, %g, %g, %q",
				c.name, d.PeakTFLOPS, d.BandwidthGBps, d.MemoryGB, msg, c.peak, c.bw, c.memGB, c.err)
		}
	}
}

// LookupCPU: the seed's Xeon Platinum 8480+ for two sockets (224 virtual
// cores) is twice the table's socket; memory is the node's, not the CPU's.
func TestLookupCPU(t *testing.T) {
	d, err := LookupCPU("Intel(R) Xeon(R) Platinum 8480+", 2)
	if err != nil || d.Kind != "cpu" || d.MemoryGB != 0 || d.PeakTFLOPS < 229.375 || d.PeakTFLOPS > 229.377 || d.BandwidthGBps < 614.39 || d.BandwidthGBps > 614.41 {
		t.Fatalf("8480+ × 2: %+v %v", d, err)
	}
	if d1, _ := LookupCPU("Xeon 8480+", 0); d1.PeakTFLOPS*2 != d.PeakTFLOPS {
		t.Errorf("sockets 0 is one socket: %+v", d1)
	}
	if d, err := LookupCPU("AMD EPYC 9654", 2); err == nil || d.Kind != "cpu" || d.PeakTFLOPS != 0 {
		t.Errorf("unknown CPU: %+v %v", d, err)
	}
	// A CPU device predicts like any device: Llama-2-7B decodes
	// memory-bound at the two sockets' bandwidth.
	d.MemoryGB = 512
	a, _ := LookupArch("llama-2-7b")
	p, err := Predict(Config{Arch: a, Device: d, InputTokens: 50, OutputTokens: 100, Concurrency: 1})
	want := (a.WeightBytes() + a.KVBytesPerToken*100) / (614.4e9 * 0.8)
	if err != nil || p.DecodeBound != "memory" || math.Abs(p.TPOT.Seconds()-want) > 1e-6 {
		t.Errorf("predict on the CPU: %+v %v, want TPOT %v s", p, err, want)
	}
	if g, _ := LookupDevice("H100"); g.Kind != "gpu" {
		t.Errorf("GPU kind = %q", g.Kind)
	}
}
