package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadgenWorkloadsCatalogue(t *testing.T) {
	home := t.TempDir()
	out, _, code := runCLI(t, home, "loadgen", "workloads")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, u := range []string{"example", "spam [modelname]", "simple-parametric models clients concurrency requests",
		"slo-exp-1 model copies dist rate slo-start slo-end slo-factor slo-op period",
		"azure [num_workers] [use_all_models] [load_factor] [memory_load_factor] [interval] [trace] [randomise]",
		"bursty_experiment [num_models]"} {
		if !strings.Contains(out, "\n"+u+"\n") {
			t.Errorf("catalogue lacks %q", u)
		}
	}
	out, _, code = runCLI(t, home, "loadgen", "workloads", "--json")
	var cat struct {
		Workloads []struct {
			Name, Usage string
			Params      []struct{ Name, Default string }
		}
	}
	if err := json.Unmarshal([]byte(out), &cat); err != nil || code != 0 || len(cat.Workloads) != 14 {
		t.Fatalf("json: exit %d, %d workloads, %v", code, len(cat.Workloads), err)
	}
}

func TestLoadgenPlanCommand(t *testing.T) {
	home := t.TempDir()
	out, errOut, code := runCLI(t, home, "loadgen", "plan", "--json", "slo-exp-1", "resnet50_v2", "4", "fixed-rate", "100", "2", "32", "2", "mul", "7")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Total   int64
		EndedAt time.Duration `json:"ended_at"`
		Steps   []struct {
			SLOFactor float64 `json:"slo_factor"`
			Count     int64
		} `json:"slo_steps"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Total != 3500 || rep.EndedAt != 35*time.Second || len(rep.Steps) != 5 || rep.Steps[4].SLOFactor != 32 {
		t.Errorf("plan: %+v", rep)
	}
	// Wrong types and counts: exit 2 with the usage line, for plan and run.
	for _, args := range [][]string{
		{"loadgen", "plan", "slo-exp-1", "resnet50_v2", "four"},
		{"loadgen", "run", "--target", "http://127.0.0.1:9", "slo-exp-1", "resnet50_v2", "4"},
	} {
		_, errOut, code := runCLI(t, home, args...)
		if code != exitUsage || !strings.Contains(errOut, "usage: slo-exp-1 model copies dist rate") {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
	// Open-ended workloads need a duration.
	if _, errOut, code := runCLI(t, home, "loadgen", "plan", "comparison_experiment"); code != exitUsage || !strings.Contains(errOut, "give a duration") {
		t.Errorf("no duration: exit %d, %q", code, errOut)
	}
}

func TestAzureTraceCommand(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	out, errOut, code := runCLI(t, home, "loadgen", "azure-trace", "generate", "--dir", dir, "--functions", "50", "--days", "2")
	if code != 0 || strings.Count(out, "50 functions") != 2 {
		t.Fatalf("generate: exit %d, %q %q", code, out, errOut)
	}
	out, _, code = runCLI(t, home, "loadgen", "azure-trace", "stats", filepath.Join(dir, "invocations_per_function_md.anon.d02.csv"))
	if code != 0 || !strings.Contains(out, "50 functions") {
		t.Errorf("stats: exit %d, %q", code, out)
	}
	// The generated day replays: a plan of azure on trace 2 has arrivals.
	out, errOut, code = runCLI(t, home, "loadgen", "plan", "--duration", "2m", "--interval", "1m", "azure", "1", "0", "8", "1", "1", "2", "0", "trace_dir="+dir)
	if code != 0 || !strings.Contains(out, "workload azure: 50 sources, 50 models") {
		t.Errorf("plan azure: exit %d, %q %q", code, out, errOut)
	}
}
