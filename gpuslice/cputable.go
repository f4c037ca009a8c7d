package gpuslice

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// CPUPeaks is what the CPU table says about one CPU model, per socket: the
// figures the node inventory reports for a CPU device and roofline
// prediction (perfmodel) reads.
type CPUPeaks struct {
	Model   string  // the matching row's tokens, e.g. "XEON 8480"
	Vendor  string  // "Intel"
	Cores   int     // physical cores per socket
	Threads int     // logical CPUs per socket
	BaseGHz float64 // base clock
	// FLOPsPerCycle is 16-bit (BF16/FP16) FLOPs per core and cycle with
	// the widest unit the CPU has: 1024 with AMX (a TDPBF16PS of 16×16×32
	// multiply-adds every 16 cycles), 64 with two AVX-512 FMA units at the
	// FP32 rate (no 16-bit arithmetic).
	FLOPsPerCycle float64
	// PeakFP16 is Cores × BaseGHz × FLOPsPerCycle, TFLOPS per socket: the
	// base clock, the one a socket sustains under AMX load on every core.
	PeakFP16 float64
	// BandwidthGBps is the socket's memory bandwidth: channels × MT/s × 8
	// bytes, GB/s (1e9 bytes), every channel populated at the rated speed.
	BandwidthGBps float64
	Unit          string // the unit FLOPsPerCycle counts: "AMX-BF16", "AVX-512 (FP32 rate)"
	Memory        string // "DDR5-4800 × 8"
	Source        string // where the row's figures come from
}

// Sockets is how many sockets of this model hold logical CPUs (a node
// payload's num_virtual_cores), at least 1.
func (p CPUPeaks) Sockets(logicalCPUs int) int {
	if p.Threads <= 0 || logicalCPUs <= 0 {
		return 1
	}
	return max(1, int(math.Round(float64(logicalCPUs)/float64(p.Threads))))
}

// cpuRow is one CPU model; it matches a name holding every token, as the
// GPU table's rows do ("Intel(R) Xeon(R) Platinum 8480+" has XEON and 8480).
type cpuRow struct {
	tokens              []string
	vendor              string
	cores, threads      int
	baseGHz             float64
	flopsPerCycle       float64
	channels, mts       int // memory channels and transfer rate (MT/s)
	memoryKind, feature string
	source              string
}

// amx and avx512 are the 16-bit FLOPs per core and cycle of the two kinds
// of unit the rows have; the source for both is Intel's 64 and IA-32
// Architectures Optimization Reference Manual (AMX: TDPBF16PS throughput;
// AVX-512: two 512-bit FMA ports on Xeon Platinum).
const (
	amxFLOPs    = 1024
	avx512FLOPs = 64
)

// cpuTable is the CPU spec table, one row per model. Sources, per row:
// Intel ARK (cores, threads, base clock, memory type, channels and speed),
// at the URL given.
var cpuTable = []cpuRow{
	{tokens: []string{"XEON", "8480"}, vendor: "Intel", cores: 56, threads: 112, baseGHz: 2.0, flopsPerCycle: amxFLOPs,
		channels: 8, mts: 4800, memoryKind: "DDR5", feature: "AMX-BF16",
		source: "https://www.intel.com/content/www/us/en/products/sku/231746/intel-xeon-platinum-8480-processor-105m-cache-2-00-ghz/specifications.html"},
	{tokens: []string{"XEON", "8490H"}, vendor: "Intel", cores: 60, threads: 120, baseGHz: 1.9, flopsPerCycle: amxFLOPs,
		channels: 8, mts: 4800, memoryKind: "DDR5", feature: "AMX-BF16",
		source: "https://www.intel.com/content/www/us/en/products/sku/231747/intel-xeon-platinum-8490h-processor-112-5m-cache-1-90-ghz/specifications.html"},
	{tokens: []string{"XEON", "8592"}, vendor: "Intel", cores: 64, threads: 128, baseGHz: 1.9, flopsPerCycle: amxFLOPs,
		channels: 8, mts: 5600, memoryKind: "DDR5", feature: "AMX-BF16",
		source: "https://www.intel.com/content/www/us/en/products/sku/237250/intel-xeon-platinum-8592-processor-320m-cache-1-90-ghz/specifications.html"},
	{tokens: []string{"XEON", "6980P"}, vendor: "Intel", cores: 128, threads: 256, baseGHz: 2.0, flopsPerCycle: amxFLOPs,
		channels: 12, mts: 6400, memoryKind: "DDR5", feature: "AMX-BF16/FP16",
		source: "https://www.intel.com/content/www/us/en/products/sku/240777/intel-xeon-6980p-processor-504m-cache-2-00-ghz/specifications.html"},
	{tokens: []string{"XEON", "8380"}, vendor: "Intel", cores: 40, threads: 80, baseGHz: 2.3, flopsPerCycle: avx512FLOPs,
		channels: 8, mts: 3200, memoryKind: "DDR4", feature: "AVX-512 (FP32 rate)",
		source: "https://www.intel.com/content/www/us/en/products/sku/212287/intel-xeon-platinum-8380-processor-60m-cache-2-30-ghz/specifications.html"},
}

func init() {
	sort.SliceStable(cpuTable, func(i, j int) bool { return len(cpuTable[i].tokens) > len(cpuTable[j].tokens) })
}

func (r cpuRow) peaks() CPUPeaks {
	return CPUPeaks{
		Model: strings.Join(r.tokens, " "), Vendor: r.vendor, Cores: r.cores, Threads: r.threads, BaseGHz: r.baseGHz,
		FLOPsPerCycle: r.flopsPerCycle,
		PeakFP16:      float64(r.cores) * r.baseGHz * r.flopsPerCycle / 1000,
		BandwidthGBps: float64(r.channels*r.mts) * 8 / 1000,
		Unit:          r.feature,
		Memory:        fmt.Sprintf("%s-%d × %d", r.memoryKind, r.mts, r.channels),
		Source:        r.source,
	}
}

// MatchCPU looks a CPU name up in the CPU table: the model name as
// /proc/cpuinfo and Bud's node payloads give it ("Intel(R) Xeon(R)
// Platinum 8480+"), or a short one ("Xeon 8480+"), in any case. No row
// matching is an error naming the ways to give the peak.
func MatchCPU(name string) (CPUPeaks, error) {
	have := map[string]bool{}
	for _, t := range nameTokens(name) {
		have[t] = true
	}
	for _, r := range cpuTable {
		if hasAll(have, r.tokens) {
			return r.peaks(), nil
		}
	}
	return CPUPeaks{}, fmt.Errorf("CPU model %q: not in the CPU table (%s); give its peak (the node payload's device_config.peak_fp16_TFLOPS, or hardware.peak_fp16_tflops and memory_bandwidth_gbps)", name, strings.Join(CPUModels(), ", "))
}

// CPUModels lists the table's models, for messages and docs.
func CPUModels() []string {
	out := make([]string, 0, len(cpuTable))
	for _, r := range cpuTable {
		out = append(out, strings.Join(r.tokens, " "))
	}
	sort.Strings(out)
	return out
}
