package gpuslice

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// GPUSpec is what slicing needs to know about a GPU model: its peak dense
// FP16 tensor-core TFLOPS (the unit of a "tflops" request, as in
// TensorFusion) and its memory.
type GPUSpec struct {
	Name      string  `json:"name" toml:"-"`
	PeakFP16  float64 `json:"peak_fp16_TFLOPS" toml:"peak_fp16_tflops"`
	Memory    Bytes   `json:"memory" toml:"memory"`
	MatchedBy string  `json:"matched_by,omitempty" toml:"-"` // table entry or "override"
}

// gpuRow matches an NVML device name when every token is among the name's
// tokens (upper-cased, split on anything not a letter or digit). More tokens
// mean a more specific row, tried first, so "H100 PCIe" wins over "H100".
type gpuRow struct {
	tokens []string
	peak   float64
	memGiB float64 // default when the name carries no "80GB"-style token; 0 = unknown
}

// Dense FP16 tensor TFLOPS (no sparsity). Sources: NVIDIA data sheets as
// collected in TensorFusion's gpu-public-gpu-info.yaml (see
// docs/gpu-slicing.md); A30 from NVIDIA's A30 data sheet.
var gpuTable = []gpuRow{
	{[]string{"H100", "PCIE"}, 835, 80},
	{[]string{"H100", "NVL"}, 989, 94},
	{[]string{"H100"}, 989, 80}, // SXM5; NVML calls it "NVIDIA H100 80GB HBM3"
	{[]string{"H800", "PCIE"}, 835, 80},
	{[]string{"H800", "NVL"}, 835, 94},
	{[]string{"H800"}, 989, 80},
	{[]string{"H200"}, 989, 141},
	{[]string{"H20"}, 148, 96},
	{[]string{"B200"}, 2250, 180},
	{[]string{"A100"}, 312, 0}, // 40 and 80 GB: read from the name
	{[]string{"A800"}, 312, 0},
	{[]string{"A30"}, 165, 24},
	{[]string{"A40"}, 149.7, 48},
	{[]string{"A10G"}, 125, 24},
	{[]string{"A10"}, 125, 24},
	{[]string{"L40S"}, 365, 48},
	{[]string{"L40"}, 181, 48},
	{[]string{"L4"}, 121, 24},
	{[]string{"T4"}, 65, 16},
	{[]string{"V100S"}, 130, 32},
	{[]string{"V100"}, 125, 0}, // 16 and 32 GB
	{[]string{"RTX", "4090"}, 165.16, 24},
	{[]string{"RTX", "5090"}, 419.2, 32},
}

func init() {
	sort.SliceStable(gpuTable, func(i, j int) bool { return len(gpuTable[i].tokens) > len(gpuTable[j].tokens) })
}

var splitNonAlnum = regexp.MustCompile(`[^A-Z0-9]+`)
var memToken = regexp.MustCompile(`^([0-9]+)GB$`)

func nameTokens(name string) []string {
	return splitNonAlnum.Split(strings.ToUpper(name), -1)
}

// LookupGPU finds a GPU model by NVML name ("NVIDIA A100-SXM4-80GB",
// "NVIDIA H100 PCIe") or short name ("H100"). overrides (keyed by exact name)
// win over the built-in table; an override may give only one of peak or
// memory and take the other from the table.
func LookupGPU(name string, overrides map[string]GPUSpec) (GPUSpec, error) {
	spec := GPUSpec{Name: name}
	toks := nameTokens(name)
	have := map[string]bool{}
	for _, t := range toks {
		have[t] = true
	}
	for _, r := range gpuTable {
		ok := true
		for _, t := range r.tokens {
			if !have[t] {
				ok = false
				break
			}
		}
		if ok {
			spec.PeakFP16 = r.peak
			spec.Memory = Bytes(r.memGiB * float64(GiB))
			spec.MatchedBy = strings.Join(r.tokens, " ")
			break
		}
	}
	for _, t := range toks {
		if m := memToken.FindStringSubmatch(t); m != nil {
			n, _ := strconv.Atoi(m[1])
			spec.Memory = Bytes(n) * GiB
		}
	}
	if o, ok := overrides[name]; ok {
		if o.PeakFP16 > 0 {
			spec.PeakFP16 = o.PeakFP16
		}
		if o.Memory > 0 {
			spec.Memory = o.Memory
		}
		spec.MatchedBy = "override"
	}
	if spec.PeakFP16 <= 0 {
		return spec, fmt.Errorf("GPU model %q: peak FP16 TFLOPS unknown; add [gpu_models.%q] peak_fp16_tflops = N to the pools file", name, name)
	}
	return spec, nil
}
