package llmbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/gpuslice"
)

func testEnv() Env {
	return Env{
		Inventory: func(_ context.Context, cluster string) ([]gpuslice.Node, error) {
			if cluster != "c1" {
				return nil, errors.New("unknown cluster")
			}
			return []gpuslice.Node{{Hostname: "fl4u42", Status: "Ready"}, {Hostname: "fl4u43", Status: "Ready"}}, nil
		},
		Credential: func(name string) (string, error) {
			if name != "cred-1" {
				return "", fmt.Errorf("unknown credential %q", name)
			}
			return "x", nil
		},
	}
}

// The seed's payloads, with gpuorch's values for ids.
var seedSteps = []string{
	`{"name": "test-111", "tags": [], "description": "test-111", "concurrent_requests": 50, "eval_with": "dataset", "workflow_total_steps": 9, "step_number": 1, "trigger_workflow": false}`,
	`{"name": "test-111", "tags": [], "description": "test-111", "concurrent_requests": 50, "eval_with": "dataset", "workflow_id": "ID", "step_number": 2, "trigger_workflow": false, "datset_ids": ["DATASET"]}`,
	`{"name": "test-111", "tags": [], "description": "test-111", "concurrent_requests": 50, "eval_with": "dataset", "workflow_id": "ID", "step_number": 3, "trigger_workflow": false, "cluster_id": "c1"}`,
	`{"name": "test-111", "tags": [], "description": "test-111", "concurrent_requests": 50, "eval_with": "dataset", "workflow_id": "ID", "step_number": 4, "trigger_workflow": false,
	  "nodes": [{"hostname": "fl4u42", "status": "Ready", "devices": [{"name": "Intel(R) Xeon(R) Platinum 8480+", "type": "cpu", "device_info": {"num_virtual_cores": 224}, "device_config": {"peak_fp16_TFLOPS": 329.00454400000007}, "available_count": 8}]}]}`,
	`{"name": "test-111", "tags": [], "description": "test-111", "concurrent_requests": 50, "eval_with": "dataset", "workflow_id": "ID", "step_number": 5, "model_id": "cloud-model"}`,
	`{"name": "test-111", "tags": [], "description": "test-111", "concurrent_requests": 50, "eval_with": "dataset", "workflow_id": "ID", "step_number": 6, "credential_id": "cred-1"}`,
	`{"name": "test-111", "tags": [], "description": "test-111", "concurrent_requests": 50, "eval_with": "dataset", "workflow_id": "ID", "step_number": 7, "user_confirmation": true}`,
	`{"name": "test-111", "tags": [], "description": "test-111", "concurrent_requests": 50, "eval_with": "dataset", "workflow_id": "ID", "step_number": 8, "run_as_simulation": true, "trigger_workflow": true}`,
}

func workflowHome(t *testing.T) (home, dataset string) {
	home = t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "models", "cloud-model.json"),
		[]byte(`{"name": "gpt-x", "url": "https://api.example.com", "arch": "llama-2-7b"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return home, "../examples/datasets/sharegpt-mini.json"
}

func apply(t *testing.T, home, payload, id, dataset string) (*StepResult, error) {
	t.Helper()
	payload = strings.ReplaceAll(payload, `"ID"`, `"`+id+`"`)
	payload = strings.ReplaceAll(payload, `"DATASET"`, `"`+dataset+`"`)
	return ApplyStep(context.Background(), home, []byte(payload), testEnv())
}

func TestWorkflowSeedPayloads(t *testing.T) {
	home, ds := workflowHome(t)
	var id string
	for i, p := range seedSteps {
		res, err := apply(t, home, p, id, ds)
		if err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
		id = res.Workflow.ID
		// Persisted after every step; a fresh load resumes it.
		w, err := LoadWorkflow(home, id)
		if err != nil || w.CurrentStep != i+1 {
			t.Fatalf("after step %d: %+v %v", i+1, w, err)
		}
		if i < len(seedSteps)-1 && res.Trigger != nil {
			t.Fatalf("step %d triggered", i+1)
		}
		if i == len(seedSteps)-1 {
			s := res.Trigger
			if s == nil || !res.Simulate {
				t.Fatal("step 8 did not trigger a simulation")
			}
			if s.Name != "test-111" || s.ConcurrentRequests[0] != 50 || s.Cluster != "c1" || s.Nodes[0] != "fl4u42" ||
				s.Model.Credential != "cred-1" || s.Model.URL != "https://api.example.com" || len(s.Dataset.Files) != 1 {
				t.Errorf("spec from the workflow: %+v", s)
			}
		}
	}
	d, _ := LoadWorkflow(home, id)
	if _, ok := d.Data()["datasets"]; !ok {
		t.Error("datset_ids was not taken as datasets")
	}
}

func TestWorkflowErrors(t *testing.T) {
	home, ds := workflowHome(t)
	res, err := apply(t, home, `{"step_number": 1, "workflow_total_steps": 8, "name": "wf", "concurrent_requests": [1, 4], "eval_with": "configuration"}`, "", ds)
	if err != nil {
		t.Fatal(err)
	}
	id := res.Workflow.ID
	for _, tc := range []struct{ name, payload, want string }{
		{"no step", `{"workflow_id": "ID"}`, "step 0: step_number: required"},
		{"step out of range", `{"workflow_id": "ID", "step_number": 9}`, "step 0: step_number: 9: want an integer from 1 to 8"},
		{"unknown field", `{"workflow_id": "ID", "step_number": 3, "cluster": "c1"}`, `step 3: cluster: unknown field`},
		{"field of another step", `{"workflow_id": "ID", "step_number": 3, "nodes": ["fl4u42"]}`, `step 3: nodes: belongs to step 4`},
		{"missing field", `{"workflow_id": "ID", "step_number": 2, "max_input_tokens": 10}`, "step 2: max_output_tokens: required"},
		{"wrong type", `{"workflow_id": "ID", "step_number": 2, "max_input_tokens": "10", "max_output_tokens": 5}`, `step 2: max_input_tokens: want a positive integer, got "10"`},
		{"datasets in configuration mode", `{"workflow_id": "ID", "step_number": 2, "datset_ids": ["x"]}`, `step 2: datasets: eval_with is "configuration"`},
		{"bad name", `{"workflow_id": "ID", "step_number": 1, "name": "Test 111"}`, `step 1: name: "Test 111"`},
		{"unknown cluster", `{"workflow_id": "ID", "step_number": 3, "cluster_id": "c9"}`, `step 3: cluster_id: "c9": unknown cluster`},
		{"nodes before cluster", `{"workflow_id": "ID", "step_number": 4, "nodes": ["fl4u42"]}`, "step 4: nodes: choose the cluster"},
		{"model before cluster", `{"workflow_id": "ID", "step_number": 5, "model_id": "cloud-model"}`, "step 5: model_id: the cluster (step 3) and nodes (step 4) must be chosen before the model"},
		{"unknown workflow", `{"workflow_id": "nope", "step_number": 2}`, `step 2: workflow_id: unknown workflow "nope"`},
		{"new workflow without total", `{"step_number": 1, "name": "x", "concurrent_requests": 1, "eval_with": "dataset"}`, "step 1: workflow_id: required"},
		{"no confirmation", `{"workflow_id": "ID", "step_number": 7, "user_confirmation": false}`, "step 7: user_confirmation: must be true"},
		{"trigger too early", `{"workflow_id": "ID", "step_number": 8, "run_as_simulation": false, "trigger_workflow": true}`, "step 8: cluster_id: required before trigger_workflow (send step 3)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(filepath.Join(WorkflowDir(home), id+".json"))
			_, err := apply(t, home, tc.payload, id, ds)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			after, _ := os.ReadFile(filepath.Join(WorkflowDir(home), id+".json"))
			if string(before) != string(after) {
				t.Error("a refused step changed the saved workflow")
			}
		})
	}
	// Steps in order, then unknown node and unknown model name the step.
	for _, p := range []string{
		`{"workflow_id": "ID", "step_number": 2, "max_input_tokens": 10, "max_output_tokens": 5}`,
		`{"workflow_id": "ID", "step_number": 3, "cluster_id": "c1"}`,
	} {
		if _, err := apply(t, home, p, id, ds); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := apply(t, home, `{"workflow_id": "ID", "step_number": 4, "nodes": ["fl4u42", "gpu99"]}`, id, ds); err == nil || !strings.Contains(err.Error(), `step 4: nodes[1]: unknown node "gpu99"`) {
		t.Errorf("unknown node: %v", err)
	}
	if _, err := apply(t, home, `{"workflow_id": "ID", "step_number": 4, "nodes": ["fl4u42"]}`, id, ds); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(t, home, `{"workflow_id": "ID", "step_number": 5, "model_id": "llama-9"}`, id, ds); err == nil || !strings.Contains(err.Error(), `step 5: model_id: unknown model "llama-9"`) {
		t.Errorf("unknown model: %v", err)
	}
	if _, err := apply(t, home, `{"workflow_id": "ID", "step_number": 6, "credential_id": "cred-2"}`, id, ds); err == nil || !strings.Contains(err.Error(), `step 6: credential_id: unknown credential`) {
		t.Errorf("unknown credential: %v", err)
	}
	// A dataset workflow with an unknown dataset.
	res, err = apply(t, home, `{"step_number": 1, "workflow_total_steps": 8, "name": "wf2", "concurrent_requests": 1, "eval_with": "dataset"}`, "", ds)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apply(t, home, `{"workflow_id": "ID", "step_number": 2, "dataset_ids": ["no-such-set"]}`, res.Workflow.ID, ds); err == nil || !strings.Contains(err.Error(), `step 2: datasets[0]: unknown dataset "no-such-set"`) {
		t.Errorf("unknown dataset: %v", err)
	}
}

func TestLoadDataset(t *testing.T) {
	for _, tc := range []struct {
		file    string
		prompts int
	}{{"../examples/datasets/sharegpt-mini.json", 12}, {"../examples/datasets/sharegpt-mini.jsonl", 7}} {
		ps, err := LoadDataset(tc.file)
		if err != nil || len(ps) != tc.prompts {
			t.Fatalf("%s: %d prompts, %v; want %d", tc.file, len(ps), err, tc.prompts)
		}
		st := Stats(ps)
		if st.MeanInput < 3 || st.MeanOutput < 3 || st.MaxInput < st.MeanInput {
			t.Errorf("%s: stats %+v", tc.file, st)
		}
	}
	dir := t.TempDir()
	for name, text := range map[string]string{
		"empty.json":  `[]`,
		"bad.jsonl":   "{\"prompt\": \"a\"}\nnot json\n",
		"noans.json":  `[{"conversations": [{"from": "human", "value": "hi"}]}]`,
		"scalar.json": `["x"]`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		if _, err := LoadDataset(p); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func FuzzApplyStep(f *testing.F) {
	for _, s := range seedSteps {
		f.Add(s)
	}
	home := f.TempDir()
	f.Fuzz(func(t *testing.T, payload string) {
		_, _ = ApplyStep(context.Background(), home, []byte(payload), Env{})
	})
}
