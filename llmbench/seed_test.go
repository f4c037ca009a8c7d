package llmbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/gpuslice"
)

// The seed's ids (examples/seed-002, the payloads as the seed writes them).
const (
	seedCluster    = "1fbb9c3c-4198-4e7e-8a1e-02b86041ea82"
	seedModel      = "30cc08ec-465c-4041-898e-a08e3889cee9"
	seedCredential = "22d4bb50-d574-4cb1-8b09-0b00138b2bcc"
	seedDataset    = "effddf9b-5f07-47e9-8483-24f546bb7667"
)

func seedPayload(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", "seed-002", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// localInventory is a one-machine cluster "local" answering to localhost,
// with a CPU device of 512 GB as the inventory reports it.
func localInventory(_ context.Context, cluster string) ([]gpuslice.Node, error) {
	if cluster != "local" {
		return nil, fmt.Errorf("unknown cluster (this Slurm cluster is %q; or use \"local\")", "ci")
	}
	cpu := gpuslice.NodeDevice{Name: "Intel(R) Xeon(R) Processor", Type: "cpu", AvailableCount: 1,
		DeviceInfo: map[string]any{"num_virtual_cores": 2, "memory_total_bytes": uint64(512e9)}}
	return []gpuslice.Node{{Hostname: "localhost", Status: "Ready", Devices: []gpuslice.NodeDevice{cpu}}}, nil
}

// seedHome registers the seed's ids: cluster → local with fl4u42 mapped to
// localhost, model → a cloud model, dataset → the examples' ShareGPT file.
func seedHome(t *testing.T) (string, Env) {
	t.Helper()
	home := t.TempDir()
	reg := Registry{Home: home, Inventory: localInventory}
	ctx := context.Background()
	if _, err := reg.Add(ctx, Clusters, AddOptions{ID: seedCluster, Args: []string{"local"}, Nodes: []string{"fl4u42=localhost"}}); err != nil {
		t.Fatal(err)
	}
	mf := filepath.Join(t.TempDir(), "model.json")
	os.WriteFile(mf, []byte(`{"name": "gpt-x", "url": "https://api.example.com/v1", "arch": "llama-2-7b"}`), 0o644)
	if _, err := reg.Add(ctx, Models, AddOptions{ID: seedModel, Args: []string{mf}}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Add(ctx, Datasets, AddOptions{ID: seedDataset, Args: []string{"../examples/datasets/sharegpt-mini.json"}}); err != nil {
		t.Fatal(err)
	}
	env := Env{Inventory: localInventory, Cluster: reg.ResolveCluster, Credential: func(name string) (string, error) {
		if name != seedCredential {
			return "", fmt.Errorf("unknown credential %q", name)
		}
		return "sk-x", nil
	}}
	return home, env
}

// The seed's eight payloads, verbatim (configuration method), once their
// ids are registered: step 2 carries a workflow_id gpuorch never issued and
// step 3 another; both continue the workflow step 1 started, which then
// answers to them. Step 8 triggers the run with everything resolved.
func TestSeedPayloadsVerbatim(t *testing.T) {
	home, env := seedHome(t)
	var res *StepResult
	for _, name := range []string{"step1-configuration", "step2-configuration", "step3", "step4", "step5", "step6", "step7", "step8"} {
		var err error
		if res, err = ApplyStep(context.Background(), home, seedPayload(t, name), env); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	w := res.Workflow
	if w.CurrentStep != 8 || strings.Join(w.Aliases, " ") != "dcfddf9b-5f07-47e9-8483-24f546bb7667 9e4aa5c6-d2df-42ab-8972-a954bd7f6485" {
		t.Fatalf("workflow: step %d, aliases %v", w.CurrentStep, w.Aliases)
	}
	for _, id := range w.Aliases {
		if got, err := LoadWorkflow(home, id); err != nil || got.ID != w.ID {
			t.Errorf("LoadWorkflow(%s) = %v, %v", id, got, err)
		}
	}
	s := res.Trigger
	if s == nil || res.Simulate {
		t.Fatalf("step 8 (run_as_simulation false, trigger_workflow true) did not trigger a run: %+v", res)
	}
	if s.Cluster != seedCluster || s.Nodes[0] != "fl4u42" || s.Model.URL != "https://api.example.com/v1" || s.Model.Credential != seedCredential ||
		s.Configuration.MaxInputTokens != 50 || s.Configuration.MaxOutputTokens != 100 || s.ConcurrentRequests[0] != 50 {
		t.Fatalf("spec: %+v", s)
	}
	p, err := Resolve(context.Background(), s, env, ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Resolved
	if r.Executor != "local" || r.Cluster.ID != seedCluster || r.NodeNames[0] != "localhost" || r.Device != "cpu" {
		t.Errorf("resolved: executor %s, cluster %+v, nodes %v, device %s", r.Executor, r.Cluster, r.NodeNames, r.Device)
	}
	if n := r.Nodes[0]; n.Devices[0].Name != "Intel(R) Xeon(R) Platinum 8480+" || n.Devices[0].AvailableCount != 8 {
		t.Errorf("the node payload was not honoured: %+v", n)
	}
	if d := p.Describe(); !strings.Contains(d, "nodes: fl4u42 (localhost); device cpu Intel(R) Xeon(R) Platinum 8480+ (available_count 8)") ||
		!strings.Contains(d, "cluster "+seedCluster+", registered: local") {
		t.Errorf("describe:\n%s", d)
	}
	// The run finished (bench step records it). The dataset method's first
	// two payloads, sent next, start a new workflow and carry the same
	// step-2 id: it now continues the new one; the seed's dataset id
	// resolves.
	w.Status = "completed"
	if err := w.Save(home); err != nil {
		t.Fatal(err)
	}
	res, err = ApplyStep(context.Background(), home, seedPayload(t, "step1-dataset"), env)
	if err != nil {
		t.Fatal(err)
	}
	second := res.Workflow.ID
	res, err = ApplyStep(context.Background(), home, seedPayload(t, "step2-dataset"), env)
	if err != nil || res.Workflow.ID != second {
		t.Fatalf("step2-dataset continued %v, want %s: %v", res, second, err)
	}
	if ds := res.Workflow.Data()["datasets"].([]any); len(ds) != 1 || ds[0] != seedDataset {
		t.Errorf("datasets = %v", ds)
	}
	if path, err := ResolveDataset(home, seedDataset); err != nil || !strings.HasSuffix(path, "examples/datasets/sharegpt-mini.json") {
		t.Errorf("ResolveDataset = %q, %v", path, err)
	}
}

// Without the registrations the same payloads are refused, each naming
// the id and how to register it; a refused payload changes nothing.
func TestSeedPayloadsUnregistered(t *testing.T) {
	home := t.TempDir()
	env := Env{Inventory: localInventory, Cluster: Registry{Home: home}.ResolveCluster}
	res, err := ApplyStep(context.Background(), home, seedPayload(t, "step1-configuration"), env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyStep(context.Background(), home, seedPayload(t, "step2-configuration"), env); err != nil {
		t.Fatal(err)
	}
	_, err = ApplyStep(context.Background(), home, seedPayload(t, "step3"), env)
	if err == nil || !strings.Contains(err.Error(), "step 3: cluster_id: \""+seedCluster+"\"") ||
		!strings.Contains(err.Error(), "gpuorch bench clusters add --id "+seedCluster+" local") {
		t.Errorf("unregistered cluster: %v", err)
	}
	w, _ := LoadWorkflow(home, res.Workflow.ID)
	if strings.Join(w.Aliases, " ") != "dcfddf9b-5f07-47e9-8483-24f546bb7667" || w.CurrentStep != 2 {
		t.Errorf("a refused step changed the workflow: %+v", w)
	}
	// Registered, but fl4u42 not mapped: the node is unknown, with the hint.
	reg := Registry{Home: home, Inventory: localInventory}
	if _, err := reg.Add(context.Background(), Clusters, AddOptions{ID: seedCluster, Args: []string{"local"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyStep(context.Background(), home, seedPayload(t, "step3"), env); err != nil {
		t.Fatal(err)
	}
	_, err = ApplyStep(context.Background(), home, seedPayload(t, "step4"), env)
	if err == nil || !strings.Contains(err.Error(), `step 4: nodes[0]: unknown node "fl4u42" in cluster "`+seedCluster+`" (have: localhost)`) ||
		!strings.Contains(err.Error(), "--node fl4u42=NODE") {
		t.Errorf("unmapped node: %v", err)
	}
	_, err = ApplyStep(context.Background(), home, seedPayload(t, "step5"), env)
	if err == nil || !strings.Contains(err.Error(), "nodes (step 4) must be chosen before the model") {
		t.Errorf("model before nodes: %v", err)
	}
}

// Which workflow an id gpuorch did not issue continues.
func TestWorkflowContinuation(t *testing.T) {
	home := t.TempDir()
	ctx := context.Background()
	start := func(name string) string {
		res, err := ApplyStep(ctx, home, []byte(`{"step_number": 1, "workflow_total_steps": 8, "name": "`+name+`", "concurrent_requests": 1, "eval_with": "configuration"}`), Env{})
		if err != nil {
			t.Fatal(err)
		}
		return res.Workflow.ID
	}
	a := start("alpha")
	step2 := func(id, name string) string {
		return fmt.Sprintf(`{"step_number": 2, "workflow_id": %q, "name": %q, "max_input_tokens": 5, "max_output_tokens": 5}`, id, name)
	}
	// By name: the one in-progress workflow named alpha.
	res, err := ApplyStep(ctx, home, []byte(step2("client-id-1", "alpha")), Env{})
	if err != nil || res.Workflow.ID != a {
		t.Fatalf("by name: %v %v", res, err)
	}
	// Two in progress with that name: ambiguous, --workflow decides.
	b := start("alpha")
	if _, err := ApplyStep(ctx, home, []byte(step2("client-id-2", "alpha")), Env{}); err == nil || !strings.Contains(err.Error(), "2 workflows in progress are named \"alpha\"") {
		t.Errorf("ambiguous: %v", err)
	}
	if res, err := ApplyStepTo(ctx, home, []byte(step2("client-id-2", "alpha")), b, Env{}); err != nil || res.Workflow.ID != b {
		t.Errorf("--workflow: %v %v", res, err)
	}
	// A known alias continues its workflow; naming another with --workflow
	// is a conflict.
	if res, err := ApplyStep(ctx, home, []byte(step2("client-id-1", "alpha")), Env{}); err != nil || res.Workflow.ID != a {
		t.Errorf("alias: %v %v", res, err)
	}
	if _, err := ApplyStepTo(ctx, home, []byte(step2("client-id-1", "alpha")), b, Env{}); err == nil || !strings.Contains(err.Error(), "is workflow "+a+", not "+b) {
		t.Errorf("conflict: %v", err)
	}
	// No name, or a name nothing in progress has: unknown.
	for _, p := range []string{`{"step_number": 2, "workflow_id": "zzz", "max_input_tokens": 5, "max_output_tokens": 5}`, step2("zzz", "gamma")} {
		if _, err := ApplyStep(ctx, home, []byte(p), Env{}); err == nil || !strings.Contains(err.Error(), `unknown workflow "zzz"`) {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// The seed's node payload (step 4) is honoured: status Ready, the device
// and its available_count size the run; payloads that contradict the run
// are refused with the node and the count named.
func TestSeedNodePayloadHonoured(t *testing.T) {
	home, env := seedHome(t)
	var node map[string]any
	var p4 map[string]any
	json.Unmarshal(seedPayload(t, "step4"), &p4)
	node = p4["nodes"].([]any)[0].(map[string]any)
	spec := func(edit func(n map[string]any, s *Spec)) *Spec {
		n := map[string]any{}
		b, _ := json.Marshal(node)
		json.Unmarshal(b, &n)
		s := &Spec{File: "workflow", Name: "test-111", ConcurrentRequests: IntList{50}, EvalWith: "configuration",
			Configuration: &Configuration{MaxInputTokens: 50, MaxOutputTokens: 100}, Cluster: seedCluster, Nodes: []string{"fl4u42"},
			Model: Model{Name: "sim", Command: []string{"gpuorch", "sim-server"}, Arch: "llama-2-7b"}}
		edit(n, s)
		nd, err := decodeNode(n)
		if err != nil {
			t.Logf("decode: %v", err)
		}
		s.NodeInfo = []gpuslice.Node{nd}
		return s
	}
	resolve := func(s *Spec) (*Planned, error) {
		return Resolve(context.Background(), s, env, ResolveOptions{SimulateOnly: true})
	}
	// As the seed sends it: a CPU run, no GPUs; tp 2 of the 8 units (NUMA
	// nodes) gets 2/8 of the 224 virtual cores.
	p, err := resolve(spec(func(map[string]any, *Spec) {}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Plan.Slurm.GPUs != "" || p.Resolved.Device != "cpu" || p.Plan.Slurm.CPUsPerTask != 28 {
		t.Errorf("sizing: gpus %q, device %s, cpus/task %d", p.Plan.Slurm.GPUs, p.Resolved.Device, p.Plan.Slurm.CPUsPerTask)
	}
	p, err = resolve(spec(func(_ map[string]any, s *Spec) { s.Hardware.TP = 2 }))
	if err != nil || p.Plan.Slurm.CPUsPerTask != 56 {
		t.Errorf("tp 2: %v, cpus/task %d", err, p.Plan.Slurm.CPUsPerTask)
	}
	for _, tc := range []struct {
		name string
		edit func(n map[string]any, s *Spec)
		want string
	}{
		{"not ready", func(n map[string]any, _ *Spec) { n["status"] = "NotReady" }, `node "fl4u42" is NotReady, not Ready`},
		{"tp beyond available_count", func(_ map[string]any, s *Spec) { s.Hardware.TP = 9 }, "hardware.tp: 9 devices per task, but nodes[0] (fl4u42) has available_count 8 of Intel(R) Xeon(R) Platinum 8480+"},
		{"none available", func(n map[string]any, _ *Spec) {
			n["devices"].([]any)[0].(map[string]any)["available_count"] = 0
		}, "no Intel(R) Xeon(R) Platinum 8480+ available (available_count 0)"},
		{"no such device type", func(_ map[string]any, s *Spec) { s.Hardware.DeviceType = "gpu" }, "nodes[0] (fl4u42) has no gpu device (devices: cpu Intel(R) Xeon(R) Platinum 8480+)"},
		{"unknown device type", func(n map[string]any, _ *Spec) { n["devices"].([]any)[0].(map[string]any)["type"] = "tpu" }, `type "tpu": want "cuda" (or "gpu") or "cpu"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resolve(spec(tc.edit))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// At step 4 itself, a node that is not Ready is refused.
	notReady := strings.Replace(string(seedPayload(t, "step4")), `"status": "Ready"`, `"status": "NotReady"`, 1)
	if _, err := ApplyStep(context.Background(), home, []byte(notReady), env); err == nil || !strings.Contains(err.Error(), "step 4: nodes: element 0: node \"fl4u42\" is NotReady, not Ready") {
		t.Errorf("step 4 NotReady: %v", err)
	}
}

// Simulate on the seed's CPU node: the payload's peak (329 TFLOPS) feeds
// the prediction; the bandwidth comes from the CPU table for the two
// sockets 224 virtual cores are; the memory from the inventory of the
// machine the node maps to. Without the payload's peak the table's is used.
func TestSeedCPUSimulate(t *testing.T) {
	_, env := seedHome(t)
	var p4 map[string]any
	json.Unmarshal(seedPayload(t, "step4"), &p4)
	nd, err := decodeNode(p4["nodes"].([]any)[0])
	if err != nil {
		t.Fatal(err)
	}
	s := &Spec{File: "workflow", Name: "test-111", ConcurrentRequests: IntList{1, 50}, EvalWith: "configuration",
		Configuration: &Configuration{MaxInputTokens: 50, MaxOutputTokens: 100}, Cluster: seedCluster, Nodes: []string{"fl4u42"},
		NodeInfo: []gpuslice.Node{nd}, Model: Model{Name: "gpt-x", URL: "https://api.example.com/v1", Arch: "llama-2-7b"}}
	p, err := Resolve(context.Background(), s, env, ResolveOptions{SimulateOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Device(p.Resolved.Nodes)
	if err != nil {
		t.Fatal(err)
	}
	if d.Kind != "cpu" || d.PeakTFLOPS != 329.00454400000007 || math.Abs(d.BandwidthGBps-614.4) > 1e-9 || d.MemoryGB != 512 || d.Name != "Intel(R) Xeon(R) Platinum 8480+" {
		t.Fatalf("device = %+v", d)
	}
	preds, err := p.Predict()
	if err != nil || len(preds) != 2 {
		t.Fatalf("predict: %v %v", preds, err)
	}
	// Decode at batch 1 reads the 13.48 GB of weights (and the KV cache)
	// at 614.4 GB/s × 0.8 per step: memory-bound, ≈ 27.5 ms a token.
	if tpot := preds[0].TPOT.Seconds(); preds[0].DecodeBound != "memory" || math.Abs(tpot-(13.48e9+524288*100)/(614.4e9*0.8)) > 1e-4 {
		t.Errorf("tpot at 1 = %v (%s-bound)", preds[0].TPOT, preds[0].DecodeBound)
	}
	// Without the payload's peak: the table's, two sockets at the base clock.
	nd.Devices[0].DeviceConfig.PeakFP16TFLOPS = nil
	s.NodeInfo = []gpuslice.Node{nd}
	p, _ = Resolve(context.Background(), s, env, ResolveOptions{SimulateOnly: true})
	if d, err := s.Device(p.Resolved.Nodes); err != nil || math.Abs(d.PeakTFLOPS-229.376) > 1e-9 {
		t.Errorf("table peak: %+v %v", d, err)
	}
	// A CPU model named in [hardware]: one socket, memory to be given.
	s2 := *s
	s2.NodeInfo, s2.Hardware = nil, Hardware{Device: "Xeon 8480+"}
	if _, err := s2.Device(nil); err == nil || !strings.Contains(err.Error(), `hardware.memory_gb: simulate needs the memory of CPU device "Xeon 8480+"`) {
		t.Errorf("CPU without memory: %v", err)
	}
	s2.Hardware.MemoryGB = 256
	if d, err := s2.Device(nil); err != nil || math.Abs(d.PeakTFLOPS-114.688) > 1e-9 || math.Abs(d.BandwidthGBps-307.2) > 1e-9 {
		t.Errorf("hardware.device Xeon 8480+: %+v %v", d, err)
	}
	// A CPU the table does not have, without a peak: the error says how.
	nd.Devices[0].Name = "AMD EPYC 9654 96-Core Processor"
	s.NodeInfo = []gpuslice.Node{nd}
	p, _ = Resolve(context.Background(), s, env, ResolveOptions{SimulateOnly: true})
	if _, err := p.Predict(); err == nil || !strings.Contains(err.Error(), "not in the CPU table") || !strings.Contains(err.Error(), "peak_fp16_TFLOPS") {
		t.Errorf("unknown CPU: %v", err)
	}
	// A GPU node payload (type cuda) uses the GPU table, tp GPUs.
	h100 := gpuslice.Node{Hostname: "fl4u42", Status: "Ready", Devices: []gpuslice.NodeDevice{{Name: "NVIDIA H100 80GB HBM3", Type: "cuda", AvailableCount: 8}}}
	s.NodeInfo, s.Hardware.TP = []gpuslice.Node{h100}, 2
	s.Model = Model{Name: "m", Command: []string{"gpuorch", "sim-server"}, Arch: "llama-2-7b"}
	p, err = Resolve(context.Background(), s, env, ResolveOptions{SimulateOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.Device(p.Resolved.Nodes); err != nil || d.Kind != "gpu" || d.PeakTFLOPS != 989 || p.Plan.Slurm.GPUs != "2" {
		t.Errorf("GPU payload: %+v %v, gpus %q", d, err, p.Plan.Slurm.GPUs)
	}
	if errors.Is(err, ErrUnknownID) {
		t.Fatal(err)
	}
}
