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

// GPUPeaks is what the GPU table says about a device name: the figures
// slicing (LookupGPU) and roofline prediction (perfmodel) read.
type GPUPeaks struct {
	Model         string  // the matching row's tokens, e.g. "H100 PCIE"; "" when none matched
	Vendor        string  // "NVIDIA" or "AMD"; "" when none matched
	PeakFP16      float64 // dense FP16 tensor-core TFLOPS, no sparsity
	Memory        Bytes   // from an "80GB"-style token in the name, else the row's; 0 = unknown
	BandwidthGBps float64 // memory bandwidth, GB/s (1e9 bytes); 0 = unknown
}

// gpuRow is one GPU model. It matches a device name when every token is
// among the name's tokens (upper-cased, split on anything not a letter or
// digit). More tokens mean a more specific row, tried first, so "H100 PCIe"
// wins over "H100".
type gpuRow struct {
	tokens []string
	peak   float64 // dense FP16 tensor TFLOPS
	mem    Bytes   // default when the name carries no "80GB"-style token; 0 = unknown
	gbps   float64 // memory bandwidth, GB/s
	vendor string  // "" = NVIDIA
	// memFixed: mem stands even when the name carries an "NNGB" token.
	memFixed bool
	// variants refine gbps for names that also carry a variant's tokens,
	// first match wins (an A100's bandwidth depends on its memory and form).
	variants []gpuVariant
}

type gpuVariant struct {
	tokens []string
	gbps   float64
}

// gpuTable is the one GPU spec table. Sources: dense FP16 tensor TFLOPS (no
// sparsity) from NVIDIA data sheets as collected in TensorFusion's
// gpu-public-gpu-info.yaml (see docs/gpu-slicing.md), A30 from NVIDIA's A30
// data sheet; memory bandwidth from NVIDIA's and AMD's data sheets; MI300X
// from AMD's.
var gpuTable = []gpuRow{
	{tokens: []string{"H100", "PCIE"}, peak: 835, mem: 80 * GiB, gbps: 2000},
	{tokens: []string{"H100", "NVL"}, peak: 989, mem: 94 * GiB, gbps: 3900},
	{tokens: []string{"H100"}, peak: 989, mem: 80 * GiB, gbps: 3350}, // SXM5; NVML calls it "NVIDIA H100 80GB HBM3"
	{tokens: []string{"H800", "PCIE"}, peak: 835, mem: 80 * GiB, gbps: 2000},
	// The bandwidth is the H800 row's: the bandwidth table had no H800 NVL
	// row, so the name fell through to it (not checked against a data sheet).
	{tokens: []string{"H800", "NVL"}, peak: 835, mem: 94 * GiB, gbps: 3350},
	{tokens: []string{"H800"}, peak: 989, mem: 80 * GiB, gbps: 3350},
	{tokens: []string{"H200"}, peak: 989, mem: 141 * GiB, gbps: 4800},
	{tokens: []string{"H20"}, peak: 148, mem: 96 * GiB, gbps: 4000},
	{tokens: []string{"B200"}, peak: 2250, mem: 180 * GiB, gbps: 8000},
	// 40 and 80 GB: the memory is read from the name.
	{tokens: []string{"A100"}, peak: 312, gbps: 2039, variants: []gpuVariant{
		{[]string{"40GB"}, 1555},
		{[]string{"PCIE"}, 1935}, // the 80GB PCIe card
	}},
	{tokens: []string{"A800"}, peak: 312, gbps: 2039},
	{tokens: []string{"A30"}, peak: 165, mem: 24 * GiB, gbps: 933},
	{tokens: []string{"A40"}, peak: 149.7, mem: 48 * GiB, gbps: 696},
	{tokens: []string{"A10G"}, peak: 125, mem: 24 * GiB, gbps: 600},
	{tokens: []string{"A10"}, peak: 125, mem: 24 * GiB, gbps: 600},
	{tokens: []string{"L40S"}, peak: 365, mem: 48 * GiB, gbps: 864},
	{tokens: []string{"L40"}, peak: 181, mem: 48 * GiB, gbps: 864},
	{tokens: []string{"L4"}, peak: 121, mem: 24 * GiB, gbps: 300},
	{tokens: []string{"T4"}, peak: 65, mem: 16 * GiB, gbps: 320},
	{tokens: []string{"V100S"}, peak: 130, mem: 32 * GiB, gbps: 1134},
	{tokens: []string{"V100"}, peak: 125, gbps: 900}, // 16 and 32 GB
	{tokens: []string{"RTX", "4090"}, peak: 165.16, mem: 24 * GiB, gbps: 1008},
	{tokens: []string{"RTX", "5090"}, peak: 419.2, mem: 32 * GiB, gbps: 1792},
	// AMD's "192 GB" read as 1e9-byte units, whatever the name says, as
	// perfmodel always has (the other rows count GiB). Not an NVML device:
	// LookupGPU, and so slicing, ignores it.
	{tokens: []string{"MI300X"}, peak: 1307, mem: 192e9, gbps: 5300, vendor: "AMD", memFixed: true},
}

func init() {
	sort.SliceStable(gpuTable, func(i, j int) bool { return len(gpuTable[i].tokens) > len(gpuTable[j].tokens) })
}

var splitNonAlnum = regexp.MustCompile(`[^A-Z0-9]+`)
var memToken = regexp.MustCompile(`^([0-9]+)GB$`)

func nameTokens(name string) []string {
	return splitNonAlnum.Split(strings.ToUpper(name), -1)
}

func hasAll(have map[string]bool, tokens []string) bool {
	for _, t := range tokens {
		if !have[t] {
			return false
		}
	}
	return true
}

// MatchGPU looks a device name up in the GPU table: an NVML name ("NVIDIA
// A100-SXM4-80GB", "NVIDIA H100 PCIe", a MIG device) or a short one
// ("H100"), in any case. The memory comes from the last "NNGB" token of the
// name when it has one (unless the row says otherwise), even when no row
// matches; no row matching is an error.
func MatchGPU(name string) (GPUPeaks, error) {
	var p GPUPeaks
	toks := nameTokens(name)
	have := map[string]bool{}
	for _, t := range toks {
		have[t] = true
	}
	matched, memFixed := false, false
	for _, r := range gpuTable {
		if !hasAll(have, r.tokens) {
			continue
		}
		matched, memFixed = true, r.memFixed
		p = GPUPeaks{Model: strings.Join(r.tokens, " "), Vendor: r.vendor, PeakFP16: r.peak, Memory: r.mem, BandwidthGBps: r.gbps}
		if p.Vendor == "" {
			p.Vendor = "NVIDIA"
		}
		for _, v := range r.variants {
			if hasAll(have, v.tokens) {
				p.BandwidthGBps = v.gbps
				break
			}
		}
		break
	}
	if m := nameMemory(toks); m > 0 && !memFixed {
		p.Memory = m
	}
	if !matched {
		return p, unknownPeak(name)
	}
	return p, nil
}

// nameMemory is the memory an "80GB"-style token says (the last one: a MIG
// device's "1g.10gb" follows the GPU's "80GB"); 0 when there is none.
func nameMemory(toks []string) Bytes {
	var mem Bytes
	for _, t := range toks {
		if m := memToken.FindStringSubmatch(t); m != nil {
			n, _ := strconv.Atoi(m[1])
			mem = Bytes(n) * GiB
		}
	}
	return mem
}

func unknownPeak(name string) error {
	return fmt.Errorf("GPU model %q: peak FP16 TFLOPS unknown; add [gpu_models.%q] peak_fp16_tflops = N to the pools file", name, name)
}

// LookupGPU finds a GPU model by NVML name ("NVIDIA A100-SXM4-80GB",
// "NVIDIA H100 PCIe") or short name ("H100") in the GPU table (MatchGPU).
// Only NVIDIA rows count: slices are MPS shares enforced through NVML.
// overrides (keyed by exact name) win over the table; an override may give
// only one of peak or memory and take the other from the table.
func LookupGPU(name string, overrides map[string]GPUSpec) (GPUSpec, error) {
	p, _ := MatchGPU(name) // no match: the override must give the peak
	if p.Vendor != "NVIDIA" {
		p = GPUPeaks{Memory: nameMemory(nameTokens(name))}
	}
	spec := GPUSpec{Name: name, PeakFP16: p.PeakFP16, Memory: p.Memory, MatchedBy: p.Model}
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
		return spec, unknownPeak(name)
	}
	return spec, nil
}
