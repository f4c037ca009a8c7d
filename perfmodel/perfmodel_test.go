package perfmodel

import (
	"math"
	"strings"
	"testing"
	"time"
)

func near(t *testing.T, what string, got, want time.Duration, tol float64) {
	t.Helper()
	if math.Abs(float64(got-want)) > tol*float64(want) {
		t.Errorf("%s = %v, want %v ± %.0f%%", what, got, want, tol*100)
	}
}

// An "ideal device" defined by a prefill speed and a decode speed: with
// params P (2 bytes each), peak = 2P FLOPs / prefill_per_token and bandwidth
// = 2P bytes / tpot give exactly those speeds.
func simDevice(prefill, tpot time.Duration) (Arch, Device) {
	const P = 1e9
	return Arch{Params: P}, Device{Name: "sim", PeakTFLOPS: 2 * P / prefill.Seconds() / 1e12, BandwidthGBps: 2 * P / tpot.Seconds() / 1e9, MemoryGB: 1000}
}

func TestPredictIdealDevice(t *testing.T) {
	a, d := simDevice(time.Millisecond, 10*time.Millisecond)
	for _, tc := range []struct {
		conc, maxBatch int
		ttft, e2el     time.Duration
	}{
		{1, 8, 100 * time.Millisecond, 100*time.Millisecond + 49*10*time.Millisecond},
		{8, 8, 100 * time.Millisecond, 590 * time.Millisecond},
		// 16 clients on 8 slots: each waits one service time (590 ms).
		{16, 8, 690 * time.Millisecond, 1180 * time.Millisecond},
	} {
		p, err := Predict(Config{Arch: a, Device: d, InputTokens: 100, OutputTokens: 50, Concurrency: tc.conc,
			MaxBatch: tc.maxBatch, ComputeEfficiency: 1, BandwidthEfficiency: 1, PrefillOverlap: true})
		if err != nil {
			t.Fatal(err)
		}
		near(t, "TTFT", p.TTFT, tc.ttft, 0.01)
		near(t, "TPOT", p.TPOT, 10*time.Millisecond, 0.01)
		near(t, "E2EL", p.E2EL, tc.e2el, 0.01)
		wantTput := float64(min(tc.conc, tc.maxBatch)) * 50 / 0.59
		if math.Abs(p.OutputTokensPerS-wantTput) > 0.01*wantTput {
			t.Errorf("c=%d: output tokens/s = %.1f, want %.1f", tc.conc, p.OutputTokensPerS, wantTput)
		}
		if p.PrefillBound != "compute" || p.DecodeBound != "memory" {
			t.Errorf("bounds = %s/%s, want compute/memory", p.PrefillBound, p.DecodeBound)
		}
	}
}

func TestPredictKnownModels(t *testing.T) {
	a, err := LookupArch("meta-llama/Llama-2-7b-hf")
	if err != nil {
		t.Fatal(err)
	}
	d, err := LookupDevice("NVIDIA A100-SXM4-80GB")
	if err != nil {
		t.Fatal(err)
	}
	if d.PeakTFLOPS != 312 || d.BandwidthGBps != 2039 || math.Abs(d.MemoryGB-85.9) > 0.1 {
		t.Fatalf("A100 80GB = %+v", d)
	}
	one, err := Predict(Config{Arch: a, Device: d, InputTokens: 512, OutputTokens: 128, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Decode at batch 1 reads 13.5 GB of weights (+ a little KV) at
	// 0.8 × 2039 GB/s: about 8.4 ms per token.
	near(t, "TPOT", one.TPOT, 8400*time.Microsecond, 0.03)
	// Prefill: 2 × 6.74e9 × 512 FLOPs (+ attention) at 0.6 × 312 TFLOPS ≈ 38 ms.
	near(t, "TTFT", one.TTFT, 38*time.Millisecond, 0.1)
	two, err := Predict(Config{Arch: a, Device: d, TP: 2, InputTokens: 512, OutputTokens: 128, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "TPOT at tp=2", two.TPOT, one.TPOT/2, 0.02)

	// Larger batches raise TPOT (more KV read and prefill stalls) but raise
	// throughput; beyond the KV capacity requests queue.
	big, err := Predict(Config{Arch: a, Device: d, InputTokens: 2000, OutputTokens: 2000, Concurrency: 400})
	if err != nil {
		t.Fatal(err)
	}
	if big.KVCapacity <= 0 || big.Batch != big.KVCapacity || big.QueueS <= 0 {
		t.Errorf("c=400 with 4k-token sequences: batch %d, capacity %d, queue %.2fs: want KV-limited with queueing", big.Batch, big.KVCapacity, big.QueueS)
	}
	if big.OutputTokensPerS <= one.OutputTokensPerS || big.TPOT <= one.TPOT {
		t.Errorf("batching: tput %.0f vs %.0f, TPOT %v vs %v", big.OutputTokensPerS, one.OutputTokensPerS, big.TPOT, one.TPOT)
	}
}

func TestPredictErrors(t *testing.T) {
	a, _ := LookupArch("llama-2-70b")
	d, _ := LookupDevice("L4")
	if _, err := Predict(Config{Arch: a, Device: d, InputTokens: 10, OutputTokens: 10, Concurrency: 1}); err == nil || !strings.Contains(err.Error(), "do not fit") {
		t.Errorf("70b on one L4: %v, want does not fit", err)
	}
	if _, err := LookupArch("gpt-9"); err == nil || !strings.Contains(err.Error(), "llama-2-7b") {
		t.Errorf("unknown arch: %v", err)
	}
	if _, err := LookupDevice("Voodoo 5"); err == nil {
		t.Error("unknown device accepted")
	}
	for _, name := range []string{"H100", "H200", "NVIDIA H100 PCIe", "MI300X", "L40S"} {
		if d, err := LookupDevice(name); err != nil || d.BandwidthGBps == 0 || d.PeakTFLOPS == 0 {
			t.Errorf("%s: %+v %v", name, d, err)
		}
	}
}
