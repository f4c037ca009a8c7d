package gpuslice

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func TestResolvePrecedence(t *testing.T) {
	m := mustModel(t, testModel)
	for _, c := range []struct {
		name    string
		o       Override
		pool    string
		qos     string
		qosFrom string
		req     Resources
		lim     Resources
		repl    int
	}{
		{"profile only", Override{Profile: "p"}, "a100", "medium", "profile", Resources{5, 3 * GiB}, Resources{15, 3 * GiB}, 2},
		{"explicit beats profile", Override{Profile: "p", QoS: "critical", TFLOPSLimit: 20, Replicas: ptr(3)}, "a100", "critical", "explicit", Resources{5, 3 * GiB}, Resources{20, 3 * GiB}, 3},
		{"limits default to requests → guaranteed → high", Override{Profile: "g"}, "h100", "high", "guaranteed", Resources{100, 8 * GiB}, Resources{100, 8 * GiB}, 1},
		{"burstable → pool default", Override{Pool: "a100", TFLOPSRequest: 10, TFLOPSLimit: 20}, "a100", "low", "pool default", Resources{10, 0}, Resources{20, 0}, 1},
		{"burstable, no pool default → medium", Override{Pool: "h100", VRAMRequest: GiB, VRAMLimit: 2 * GiB}, "h100", "medium", "medium", Resources{0, GiB}, Resources{0, 2 * GiB}, 1},
		{"request defaults to limit", Override{Pool: "h100", TFLOPSLimit: 50}, "h100", "high", "guaranteed", Resources{50, 0}, Resources{50, 0}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, err := m.Resolve(c.o)
			if err != nil {
				t.Fatal(err)
			}
			if w.Pool != c.pool || w.QoS != c.qos || w.QoSFrom != c.qosFrom || w.Requests != c.req || w.Limits != c.lim || w.Replicas != c.repl {
				t.Fatalf("got %+v", w)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	m := mustModel(t, testModel)
	for _, c := range []struct {
		o    Override
		want string
	}{
		{Override{Profile: "nope"}, `profile "nope"`},
		{Override{TFLOPSRequest: 1}, "no pool given"},
		{Override{Pool: "a100"}, "neither was given"},
		{Override{Pool: "a100", TFLOPSRequest: 10, TFLOPSLimit: 5}, "above its limit"},
		{Override{Pool: "a100", VRAMRequest: 2 * GiB, VRAMLimit: GiB}, "above its limit"},
		{Override{Pool: "a100", TFLOPSRequest: 1, QoS: "gold"}, `qos "gold"`},
		{Override{Profile: "p", Replicas: ptr(9)}, "outside autoscaling range"},
		{Override{Profile: "p", MinReplicas: ptr(4), MaxReplicas: ptr(3)}, "min_replicas"},
		// Bad TFLOPS name the pool and the profile.
		{Override{Profile: "p", TFLOPSLimit: math.NaN()}, "tflops limit NaN: not a number (pool a100, profile p)"},
		{Override{Pool: "h100", TFLOPSRequest: -2, VRAMLimit: GiB}, "tflops request -2: must be positive (pool h100)"},
	} {
		if _, err := m.Resolve(c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Resolve(%+v) = %v, want %q", c.o, err, c.want)
		}
	}
}

func TestPlanShardsAndEnv(t *testing.T) {
	m := mustModel(t, testModel)
	for _, c := range []struct {
		name                  string
		o                     Override
		compute, vram, shards int
		pct                   int
		mpsMem                string
	}{
		// A100 40GB, 8 shards: 5/312*8 = 0.13 → 1; 3Gi/40Gi*8 = 0.6 → 1; limit 15/312 = 4.8 % → 5 %.
		{"profile p", Override{Profile: "p"}, 1, 1, 1, 5, "0=3072M"},
		// 100/312*8 = 2.56 → 3 compute shards; 20Gi/40Gi*8 = 4 vram shards → 4.
		{"vram dominates", Override{Pool: "a100", TFLOPSRequest: 100, VRAMRequest: 20 * GiB}, 3, 4, 4, 33, "0=20480M"},
		// H100 989 TFLOPS, 100 shards, 2× oversubscription: 100/(989*2)*100 = 5.06 → 6; 8Gi/80Gi*100 = 10.
		{"oversubscribed h100", Override{Profile: "g"}, 6, 10, 10, 11, "0=8192M"},
		// Whole GPU: 312 TFLOPS → 8 shards, 100 %.
		{"whole gpu", Override{Pool: "a100", TFLOPSRequest: 312}, 8, 0, 8, 100, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := m.PlanOverride(c.o)
			if err != nil {
				t.Fatal(err)
			}
			if s.ComputeShards != c.compute || s.VRAMShards != c.vram || s.Shards != c.shards || s.ThreadPercent != c.pct {
				t.Fatalf("shards %d/%d → %d, %d%%; want %d/%d → %d, %d%%", s.ComputeShards, s.VRAMShards, s.Shards, s.ThreadPercent, c.compute, c.vram, c.shards, c.pct)
			}
			if s.Env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] != c.mpsMem {
				t.Errorf("pinned mem %q want %q", s.Env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"], c.mpsMem)
			}
			if s.Gres != "shard:"+itoa(c.shards) {
				t.Errorf("gres %q", s.Gres)
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestPlanRejectsWhatDoesNotFit(t *testing.T) {
	m := mustModel(t, testModel)
	_, err := m.PlanOverride(Override{Pool: "a100", TFLOPSRequest: 100, TFLOPSLimit: 400})
	var fe *FitError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "tflops limit 400 TFLOPS > 312 TFLOPS") || !strings.Contains(err.Error(), "pool a100") {
		t.Fatalf("err = %v", err)
	}
	_, err = m.PlanOverride(Override{Pool: "a100", VRAMRequest: 48 * GiB})
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "vram limit 48 GiB > 40 GiB") {
		t.Fatalf("err = %v", err)
	}
	// A profile's slice names the profile too.
	_, err = m.PlanOverride(Override{Profile: "p", TFLOPSLimit: 313})
	if !errors.As(err, &fe) || !strings.HasSuffix(err.Error(), "tflops limit 313 TFLOPS > 312 TFLOPS (profile p)") {
		t.Fatalf("err = %v", err)
	}
	// Plan refuses a NaN limit even when handed a workload directly.
	w, err := m.Resolve(Override{Profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	w.Limits.TFLOPS = math.NaN()
	if _, err := m.Plan(w); err == nil || !strings.Contains(err.Error(), "not a number (pool a100, profile p)") {
		t.Fatalf("Plan(NaN) = %v", err)
	}
}
