package gpuslice

import (
	"strings"
	"testing"
)

// TestLookupGPUNames pins what LookupGPU answers for every row of the GPU
// table and the NVML spellings its matcher accepts (NVML names, lower case,
// MIG devices, memory tokens), and for names it rejects, so that a change to
// the table or the matcher shows here.
func TestLookupGPUNames(t *testing.T) {
	for _, c := range []struct {
		name      string
		peak      float64
		mem       Bytes
		matchedBy string
		err       string
	}{
		{"H100", 989, 80 * GiB, "H100", ""},
		{"h100", 989, 80 * GiB, "H100", ""},
		{"NVIDIA H100 80GB HBM3", 989, 80 * GiB, "H100", ""},
		{"nvidia h100 80gb hbm3", 989, 80 * GiB, "H100", ""},
		{"NVIDIA H100 PCIe", 835, 80 * GiB, "H100 PCIE", ""},
		{"NVIDIA H100 NVL", 989, 94 * GiB, "H100 NVL", ""},
		{"NVIDIA H100 SXM5 94GB", 989, 94 * GiB, "H100", ""},
		{"NVIDIA H100 80GB HBM3 MIG 1g.10gb", 989, 10 * GiB, "H100", ""},
		{"NVIDIA H100 80GB HBM3 MIG 3g.40gb", 989, 40 * GiB, "H100", ""},
		{"H100 PCIe NVL", 835, 80 * GiB, "H100 PCIE", ""},
		{"H800", 989, 80 * GiB, "H800", ""},
		{"NVIDIA H800", 989, 80 * GiB, "H800", ""},
		{"NVIDIA H800 PCIe", 835, 80 * GiB, "H800 PCIE", ""},
		{"NVIDIA H800 NVL", 835, 94 * GiB, "H800 NVL", ""},
		{"H200", 989, 141 * GiB, "H200", ""},
		{"NVIDIA H200", 989, 141 * GiB, "H200", ""},
		{"NVIDIA H200 141GB HBM3e", 989, 141 * GiB, "H200", ""},
		{"NVIDIA H200 NVL", 989, 141 * GiB, "H200", ""},
		{"NVIDIA H200 MIG 1g.18gb", 989, 18 * GiB, "H200", ""},
		{"H20", 148, 96 * GiB, "H20", ""},
		{"NVIDIA H20", 148, 96 * GiB, "H20", ""},
		{"B200", 2250, 180 * GiB, "B200", ""},
		{"NVIDIA B200", 2250, 180 * GiB, "B200", ""},
		{"A100", 312, 0, "A100", ""},
		{"a100", 312, 0, "A100", ""},
		{"NVIDIA A100-SXM4-80GB", 312, 80 * GiB, "A100", ""},
		{"NVIDIA A100-SXM4-40GB", 312, 40 * GiB, "A100", ""},
		{"Mock NVIDIA A100-SXM4-40GB", 312, 40 * GiB, "A100", ""},
		{"a100-sxm4-40gb", 312, 40 * GiB, "A100", ""},
		{"NVIDIA A100-PCIE-40GB", 312, 40 * GiB, "A100", ""},
		{"NVIDIA A100 80GB PCIe", 312, 80 * GiB, "A100", ""},
		{"A100 80GB", 312, 80 * GiB, "A100", ""},
		{"A100 40GB", 312, 40 * GiB, "A100", ""},
		{"A100 PCIe", 312, 0, "A100", ""},
		{"A100 PCIe 40GB", 312, 40 * GiB, "A100", ""},
		{"NVIDIA A100-SXM4-40GB MIG 1g.5gb", 312, 5 * GiB, "A100", ""},
		{"NVIDIA A100-SXM4-80GB MIG 2g.20gb", 312, 20 * GiB, "A100", ""},
		{"A800", 312, 0, "A800", ""},
		{"NVIDIA A800-SXM4-80GB", 312, 80 * GiB, "A800", ""},
		{"NVIDIA A800 80GB PCIe", 312, 80 * GiB, "A800", ""},
		{"NVIDIA A800-SXM4-40GB", 312, 40 * GiB, "A800", ""},
		{"A30", 165, 24 * GiB, "A30", ""},
		{"NVIDIA A30", 165, 24 * GiB, "A30", ""},
		{"NVIDIA A30 MIG 1g.6gb", 165, 6 * GiB, "A30", ""},
		{"A40", 149.7, 48 * GiB, "A40", ""},
		{"NVIDIA A40", 149.7, 48 * GiB, "A40", ""},
		{"A10G", 125, 24 * GiB, "A10G", ""},
		{"NVIDIA A10G", 125, 24 * GiB, "A10G", ""},
		{"A10", 125, 24 * GiB, "A10", ""},
		{"NVIDIA A10", 125, 24 * GiB, "A10", ""},
		{"L40S", 365, 48 * GiB, "L40S", ""},
		{"NVIDIA L40S", 365, 48 * GiB, "L40S", ""},
		{"L40", 181, 48 * GiB, "L40", ""},
		{"NVIDIA L40", 181, 48 * GiB, "L40", ""},
		{"L4", 121, 24 * GiB, "L4", ""},
		{"NVIDIA L4", 121, 24 * GiB, "L4", ""},
		{"l4", 121, 24 * GiB, "L4", ""},
		{"T4", 65, 16 * GiB, "T4", ""},
		{"Tesla T4", 65, 16 * GiB, "T4", ""},
		{"V100S", 130, 32 * GiB, "V100S", ""},
		{"Tesla V100S-PCIE-32GB", 130, 32 * GiB, "V100S", ""},
		{"V100", 125, 0, "V100", ""},
		{"Tesla V100-SXM2-16GB", 125, 16 * GiB, "V100", ""},
		{"Tesla V100-SXM2-32GB", 125, 32 * GiB, "V100", ""},
		{"Tesla V100-PCIE-16GB", 125, 16 * GiB, "V100", ""},
		{"RTX 4090", 165.16, 24 * GiB, "RTX 4090", ""},
		{"NVIDIA GeForce RTX 4090", 165.16, 24 * GiB, "RTX 4090", ""},
		{"RTX 5090", 419.2, 32 * GiB, "RTX 5090", ""},
		{"NVIDIA GeForce RTX 5090", 419.2, 32 * GiB, "RTX 5090", ""},
		{"MI300X", 0, 0, "", "GPU model \"MI300X\": peak FP16 TFLOPS unknown; add [gpu_models.\"MI300X\"] peak_fp16_tflops = N to the pools file"},
		{"mi300x", 0, 0, "", "GPU model \"mi300x\": peak FP16 TFLOPS unknown; add [gpu_models.\"mi300x\"] peak_fp16_tflops = N to the pools file"},
		{"AMD Instinct MI300X", 0, 0, "", "GPU model \"AMD Instinct MI300X\": peak FP16 TFLOPS unknown; add [gpu_models.\"AMD Instinct MI300X\"] peak_fp16_tflops = N to the pools file"},
		{"4090", 0, 0, "", "GPU model \"4090\": peak FP16 TFLOPS unknown; add [gpu_models.\"4090\"] peak_fp16_tflops = N to the pools file"},
		{"RTX", 0, 0, "", "GPU model \"RTX\": peak FP16 TFLOPS unknown; add [gpu_models.\"RTX\"] peak_fp16_tflops = N to the pools file"},
		{"NVIDIA", 0, 0, "", "GPU model \"NVIDIA\": peak FP16 TFLOPS unknown; add [gpu_models.\"NVIDIA\"] peak_fp16_tflops = N to the pools file"},
		{"Matrox G200", 0, 0, "", "GPU model \"Matrox G200\": peak FP16 TFLOPS unknown; add [gpu_models.\"Matrox G200\"] peak_fp16_tflops = N to the pools file"},
		{"Voodoo 5", 0, 0, "", "GPU model \"Voodoo 5\": peak FP16 TFLOPS unknown; add [gpu_models.\"Voodoo 5\"] peak_fp16_tflops = N to the pools file"},
		{"NVIDIA GH200 480GB", 0, 480 * GiB, "", "GPU model \"NVIDIA GH200 480GB\": peak FP16 TFLOPS unknown; add [gpu_models.\"NVIDIA GH200 480GB\"] peak_fp16_tflops = N to the pools file"},
		{"NVIDIA GB200", 0, 0, "", "GPU model \"NVIDIA GB200\": peak FP16 TFLOPS unknown; add [gpu_models.\"NVIDIA GB200\"] peak_fp16_tflops = N to the pools file"},
		{"NVIDIA RTX 6000 Ada Generation", 0, 0, "", "GPU model \"NVIDIA RTX 6000 Ada Generation\": peak FP16 TFLOPS unknown; add [gpu_models.\"NVIDIA RTX 6000 Ada Generation\"] peak_fp16_tflops = N to the pools file"},
		{"NVIDIA RTX A6000", 0, 0, "", "GPU model \"NVIDIA RTX A6000\": peak FP16 TFLOPS unknown; add [gpu_models.\"NVIDIA RTX A6000\"] peak_fp16_tflops = N to the pools file"},
		{"AMD Instinct MI250X", 0, 0, "", "GPU model \"AMD Instinct MI250X\": peak FP16 TFLOPS unknown; add [gpu_models.\"AMD Instinct MI250X\"] peak_fp16_tflops = N to the pools file"},
		{"H100H200", 0, 0, "", "GPU model \"H100H200\": peak FP16 TFLOPS unknown; add [gpu_models.\"H100H200\"] peak_fp16_tflops = N to the pools file"},
		{"Tesla K80 12GB", 0, 12 * GiB, "", "GPU model \"Tesla K80 12GB\": peak FP16 TFLOPS unknown; add [gpu_models.\"Tesla K80 12GB\"] peak_fp16_tflops = N to the pools file"},
		{"", 0, 0, "", "GPU model \"\": peak FP16 TFLOPS unknown; add [gpu_models.\"\"] peak_fp16_tflops = N to the pools file"},
	} {
		g, err := LookupGPU(c.name, nil)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if g.Name != c.name || g.PeakFP16 != c.peak || g.Memory != c.mem || g.MatchedBy != c.matchedBy || msg != c.err {
			t.Errorf("LookupGPU(%q) = %g TFLOPS, %s, matched by %q, error %q; want %g, %s, %q, %q",
				c.name, g.PeakFP16, g.Memory, g.MatchedBy, msg, c.peak, c.mem, c.matchedBy, c.err)
		}
	}
}

// TestMatchGPU checks what only MatchGPU tells: the bandwidth, the vendor,
// and rows whose memory ignores the name.
func TestMatchGPU(t *testing.T) {
	for _, c := range []struct {
		name   string
		want   GPUPeaks
		errSub string
	}{
		{"NVIDIA H100 PCIe", GPUPeaks{Model: "H100 PCIE", Vendor: "NVIDIA", PeakFP16: 835, Memory: 80 * GiB, BandwidthGBps: 2000}, ""},
		{"NVIDIA H200", GPUPeaks{Model: "H200", Vendor: "NVIDIA", PeakFP16: 989, Memory: 141 * GiB, BandwidthGBps: 4800}, ""},
		{"NVIDIA A100-SXM4-40GB", GPUPeaks{Model: "A100", Vendor: "NVIDIA", PeakFP16: 312, Memory: 40 * GiB, BandwidthGBps: 1555}, ""},
		{"NVIDIA A100 80GB PCIe", GPUPeaks{Model: "A100", Vendor: "NVIDIA", PeakFP16: 312, Memory: 80 * GiB, BandwidthGBps: 1935}, ""},
		{"NVIDIA A100-SXM4-80GB", GPUPeaks{Model: "A100", Vendor: "NVIDIA", PeakFP16: 312, Memory: 80 * GiB, BandwidthGBps: 2039}, ""},
		{"AMD Instinct MI300X 192GB", GPUPeaks{Model: "MI300X", Vendor: "AMD", PeakFP16: 1307, Memory: 192e9, BandwidthGBps: 5300}, ""},
		{"Tesla K80 12GB", GPUPeaks{Memory: 12 * GiB}, "peak FP16 TFLOPS unknown"},
	} {
		got, err := MatchGPU(c.name)
		if got != c.want || (err == nil) != (c.errSub == "") || (err != nil && !strings.Contains(err.Error(), c.errSub)) {
			t.Errorf("MatchGPU(%q) = %+v, %v; want %+v, error containing %q", c.name, got, err, c.want, c.errSub)
		}
	}
}
