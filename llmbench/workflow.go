package llmbench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/sbatch"
)

// The benchmark workflow as step payloads (the seed's 8 steps):
//
//	1 basic info       name, tags, description, concurrent_requests, eval_with (+ workflow_total_steps on the first call)
//	2 evaluation       max_input_tokens + max_output_tokens, or datasets (dataset_ids; the seed's typo datset_ids too)
//	3 cluster          cluster_id (a registered cluster's id, "local", or the Slurm cluster's name)
//	4 nodes            nodes (hostnames, or node objects: Bud's node-metrics response, honoured)
//	5 model            model_id (registered, or an inline "model" object); hardware: selected_device_type, tp_size, num_prompts
//	6 credential       credential_id (cloud models)
//	7 confirmation     user_confirmation: true (hardware fields allowed here too)
//	8 execution        run_as_simulation, trigger_workflow: true
//
// Every payload may repeat the step-1 fields (the seed's examples do).

// WorkflowSteps is the number of steps.
const WorkflowSteps = 8

// StepError is a bad step payload: the step and the field.
type StepError struct {
	Step  int
	Field string
	Msg   string
}

func (e *StepError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("step %d: %s", e.Step, e.Msg)
	}
	return fmt.Sprintf("step %d: %s: %s", e.Step, e.Field, e.Msg)
}

// Workflow is a benchmark workflow's state, saved as
// $GPUORCH_HOME/workflows/<id>.json after every accepted step.
type Workflow struct {
	ID          string `json:"workflow_id"`
	Status      string `json:"status"` // in_progress, simulated, submitted, completed, failed
	CurrentStep int    `json:"current_step"`
	TotalSteps  int    `json:"total_steps"`
	Reason      string `json:"reason,omitempty"`
	// Steps holds each step's fields as last sent (a resent step
	// overwrites its own).
	Steps map[string]map[string]any `json:"workflow_steps"`
	// Aliases are other workflow ids steps carried for this workflow: a
	// client that made up its own (the seed's payloads carry ids from its
	// server) continues this one under them.
	Aliases    []string  `json:"aliases,omitempty"`
	Experiment string    `json:"experiment,omitempty"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
}

var commonStepFields = []string{"name", "tags", "description", "concurrent_requests", "eval_with",
	"workflow_id", "step_number", "trigger_workflow", "workflow_total_steps", "callback_topic"}

var hardwareStepFields = []string{"selected_device_type", "tp_size", "num_prompts", "hardware"}

var stepFields = map[int][]string{
	1: nil,
	2: {"max_input_tokens", "max_output_tokens", "datasets", "dataset_ids", "datset_ids"},
	3: {"cluster_id"},
	4: {"nodes"},
	5: append([]string{"model_id", "model"}, hardwareStepFields...),
	6: {"credential_id"},
	7: append([]string{"user_confirmation"}, hardwareStepFields...),
	8: {"run_as_simulation"},
}

// WorkflowDir is where workflows are saved.
func WorkflowDir(home string) string { return layout.Home(home).Workflows() }

var workflowIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// errUnknownWorkflow marks a workflow id no saved workflow has, as its own
// or as an alias.
var errUnknownWorkflow = errors.New("unknown workflow")

// LoadWorkflow reads a saved workflow by its id or one of its aliases.
func LoadWorkflow(home, id string) (*Workflow, error) {
	if !workflowIDRE.MatchString(id) {
		return nil, fmt.Errorf("bad workflow id %s", clip.Quote(id))
	}
	var w Workflow
	err := readJSON(filepath.Join(WorkflowDir(home), id+".json"), &w)
	if err == nil {
		return &w, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	all, lerr := listWorkflows(home)
	if lerr != nil {
		return nil, lerr
	}
	// A client that reuses its ids (the seed's payloads always carry the
	// same) may have given one to several workflows: the one still going
	// wins, else the latest.
	var found *Workflow
	for i := range all {
		if !contains(all[i].Aliases, id) {
			continue
		}
		if found == nil || all[i].active() && !found.active() || all[i].active() == found.active() && all[i].Updated.After(found.Updated) {
			found = &all[i]
		}
	}
	if found != nil {
		return found, nil
	}
	return nil, fmt.Errorf("%w %q (no %s, and no workflow answers to it)", errUnknownWorkflow, id, filepath.Join(WorkflowDir(home), id+".json"))
}

// active reports whether the workflow takes more steps.
func (w *Workflow) active() bool { return w.Status == "in_progress" || w.Status == "failed" }

// listWorkflows reads every saved workflow.
func listWorkflows(home string) ([]Workflow, error) {
	ents, err := os.ReadDir(WorkflowDir(home))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Workflow
	for _, de := range ents {
		if !strings.HasSuffix(de.Name(), ".json") || de.IsDir() {
			continue
		}
		var w Workflow
		if err := readJSON(filepath.Join(WorkflowDir(home), de.Name()), &w); err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// continueWorkflow finds the workflow a payload with workflow_id id
// continues: the workflow of that id or alias; else, for an id gpuorch has
// not issued (the seed's payloads carry ids from their own server), the
// workflow cont (bench step --workflow), else the one workflow in progress
// whose name is the payload's. The id then becomes an alias of it.
func continueWorkflow(home, id, cont string, p map[string]any) (*Workflow, error) {
	w, err := LoadWorkflow(home, id)
	switch {
	case err != nil && !errors.Is(err, errUnknownWorkflow):
		return nil, err
	case err == nil && (w.ID == id || w.active()):
		if cont != "" && w.ID != cont && !contains(w.Aliases, cont) {
			return nil, fmt.Errorf("workflow_id %q is workflow %s, not %s (--workflow)", id, w.ID, cont)
		}
		return w, nil
	case err == nil:
		// The alias of a finished workflow: a client starting again with
		// the same ids continues the new workflow, if one is found below.
		finished := w
		if w, err := adoptWorkflow(home, id, cont, p); err == nil {
			return w, nil
		}
		return finished, nil
	}
	return adoptWorkflow(home, id, cont, p)
}

// adoptWorkflow finds the workflow an unknown id continues (cont, else the
// one in progress of the payload's name) and makes the id its alias.
func adoptWorkflow(home, id, cont string, p map[string]any) (*Workflow, error) {
	var w *Workflow
	err := fmt.Errorf("%w %q", errUnknownWorkflow, id)
	if cont != "" {
		if w, err = LoadWorkflow(home, cont); err != nil {
			return nil, err
		}
	} else {
		name, _ := p["name"].(string)
		all, lerr := listWorkflows(home)
		if lerr != nil {
			return nil, lerr
		}
		var match []Workflow
		for _, c := range all {
			if c.Status == "in_progress" && name != "" && c.Data()["name"] == name {
				match = append(match, c)
			}
		}
		switch len(match) {
		case 0:
			if name == "" {
				return nil, fmt.Errorf("%v (start one with a step-1 payload, or continue one under this id with --workflow ID)", err)
			}
			return nil, fmt.Errorf("%v; no workflow in progress is named %q either (start one with a step-1 payload, or continue one under this id with --workflow ID)", err, name)
		case 1:
			w = &match[0]
		default:
			ids := make([]string, len(match))
			for i, m := range match {
				ids[i] = m.ID
			}
			return nil, fmt.Errorf("%v, and %d workflows in progress are named %q (%s): choose one with --workflow ID", err, len(match), name, strings.Join(ids, ", "))
		}
	}
	if w.ID != id && !contains(w.Aliases, id) {
		w.Aliases = append(w.Aliases, id)
	}
	return w, nil
}

// Fail records that the workflow failed, and why, and returns err.
func (w *Workflow) Fail(home string, err error) error {
	w.Status, w.Reason = "failed", err.Error()
	_ = w.Save(home)
	return err
}

// Follow records the state of the experiment the workflow started.
func (w *Workflow) Follow(home string, st orchestrator.State) error {
	w.Experiment, w.Status = st.ID, string(st.State)
	if st.Error != "" {
		w.Reason = st.Error
	}
	return w.Save(home)
}

// Missing lists the steps not sent yet.
func (w *Workflow) Missing() []string {
	var missing []string
	for n := 1; n <= WorkflowSteps; n++ {
		if _, ok := w.Steps[fmt.Sprint(n)]; !ok {
			missing = append(missing, fmt.Sprint(n))
		}
	}
	return missing
}

// Save writes the workflow atomically.
func (w *Workflow) Save(home string) error {
	if err := os.MkdirAll(WorkflowDir(home), 0o755); err != nil {
		return err
	}
	w.Updated = time.Now().UTC()
	return atomicfile.WriteJSON(filepath.Join(WorkflowDir(home), w.ID+".json"), w, 0o644)
}

// Data merges the steps in step order: what the workflow knows.
func (w *Workflow) Data() map[string]any {
	out := map[string]any{}
	keys := make([]int, 0, len(w.Steps))
	for k := range w.Steps {
		n, _ := strconv.Atoi(k)
		keys = append(keys, n)
	}
	sort.Ints(keys)
	for _, n := range keys {
		for k, v := range w.Steps[strconv.Itoa(n)] {
			out[k] = v
		}
	}
	return out
}

// newWorkflowID is a random UUID (version 4).
func newWorkflowID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// StepResult is what applying a payload decided.
type StepResult struct {
	Workflow *Workflow
	// Trigger is set when the payload triggered the workflow and every
	// required field is known: the spec to run, and whether to simulate.
	Trigger  *Spec
	Simulate bool
}

// ApplyStep checks a step payload, merges it into its workflow (a new one
// when it has no workflow_id) and saves it. Nothing is saved when the
// payload is refused. env checks nodes and credentials against the world.
//
// An error is of kind errkind.ErrUnavailable when a service could not be
// asked (Slurm for the inventory), else errkind.ErrInvalid.
func ApplyStep(ctx context.Context, home string, payload []byte, env Env) (*StepResult, error) {
	return ApplyStepTo(ctx, home, payload, "", env)
}

// ApplyStepTo is ApplyStep continuing workflow cont ("" = the payload's
// workflow_id only): a payload without workflow_id continues cont, and one
// whose workflow_id gpuorch has not issued continues cont under that id.
func ApplyStepTo(ctx context.Context, home string, payload []byte, cont string, env Env) (*StepResult, error) {
	res, err := applyStep(ctx, home, payload, cont, env)
	switch {
	case err == nil:
		return res, nil
	case errors.Is(err, errkind.ErrUnavailable):
		return nil, err
	}
	return nil, errkind.Invalid(err)
}

func applyStep(ctx context.Context, home string, payload []byte, cont string, env Env) (*StepResult, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var p map[string]any
	if err := dec.Decode(&p); err != nil || p == nil {
		return nil, fmt.Errorf("step payload: want a JSON object: %v", err)
	}
	stepV, ok := p["step_number"]
	if !ok {
		return nil, &StepError{Step: 0, Field: "step_number", Msg: "required (1 to 8)"}
	}
	step, ok := asInt(stepV)
	if !ok || step < 1 || step > WorkflowSteps {
		return nil, &StepError{Step: 0, Field: "step_number", Msg: fmt.Sprintf("%v: want an integer from 1 to %d", stepV, WorkflowSteps)}
	}
	serr := func(field, format string, args ...any) error {
		return &StepError{Step: step, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	allowed := map[string]bool{}
	for _, k := range append(append([]string(nil), commonStepFields...), stepFields[step]...) {
		allowed[k] = true
	}
	for _, k := range sortedKeys(p) {
		if !allowed[k] {
			for n, fs := range stepFields {
				for _, f := range fs {
					if f == k && n != step {
						return nil, serr(k, "belongs to step %d, not step %d", n, step)
					}
				}
			}
			return nil, serr(k, "unknown field (step %d takes %s)", step, strings.Join(append(append([]string(nil), stepFields[step]...), commonStepFields...), ", "))
		}
	}
	// Types and ranges of every field present.
	for _, k := range sortedKeys(p) {
		if err := checkStepField(k, p[k]); err != nil {
			return nil, serr(k, "%v", err)
		}
	}
	// Aliases: datset_ids (the seed's typo) and dataset_ids are datasets.
	for _, alias := range []string{"datset_ids", "dataset_ids"} {
		if v, ok := p[alias]; ok {
			if _, dup := p["datasets"]; dup {
				return nil, serr(alias, "give datasets or %s, not both", alias)
			}
			p["datasets"] = v
			delete(p, alias)
		}
	}

	if id, ok := p["workflow_id"]; (!ok || id == nil) && cont != "" {
		p["workflow_id"] = cont
	}
	var w *Workflow
	if id, ok := p["workflow_id"]; ok && id != nil {
		ids, _ := id.(string)
		var err error
		if w, err = continueWorkflow(home, ids, cont, p); err != nil {
			return nil, serr("workflow_id", "%v", err)
		}
		if w.Status != "in_progress" && w.Status != "failed" {
			return nil, serr("workflow_id", "workflow %s is already %s", w.ID, w.Status)
		}
	} else {
		tot, ok := p["workflow_total_steps"]
		if !ok {
			return nil, serr("workflow_id", "required (or workflow_total_steps, to start a new workflow)")
		}
		n, _ := asInt(tot)
		now := time.Now().UTC()
		w = &Workflow{ID: newWorkflowID(), Status: "in_progress", TotalSteps: n, Steps: map[string]map[string]any{}, Created: now}
	}
	delete(p, "workflow_id")
	delete(p, "step_number")
	trigger, _ := p["trigger_workflow"].(bool)
	delete(p, "trigger_workflow")
	delete(p, "callback_topic")
	if v, ok := p["workflow_total_steps"]; ok {
		w.TotalSteps, _ = asInt(v)
		delete(p, "workflow_total_steps")
	}

	// Merge tentatively; only an accepted step is saved.
	prev := w.Steps[strconv.Itoa(step)]
	w.Steps[strconv.Itoa(step)] = p
	restore := func() {
		if prev == nil {
			delete(w.Steps, strconv.Itoa(step))
		} else {
			w.Steps[strconv.Itoa(step)] = prev
		}
	}
	data := w.Data()
	if err := checkStep(ctx, home, step, p, data, env); err != nil {
		restore()
		return nil, err
	}
	w.CurrentStep = max(w.CurrentStep, step)
	w.Reason = ""
	res := &StepResult{Workflow: w}
	if trigger {
		if err := checkComplete(step, data); err != nil {
			restore()
			return nil, err
		}
		spec, err := WorkflowSpec(home, data)
		if err != nil {
			restore()
			return nil, serr("trigger_workflow", "%v", err)
		}
		res.Trigger = spec
		res.Simulate, _ = data["run_as_simulation"].(bool)
	}
	if err := w.Save(home); err != nil {
		return nil, err
	}
	return res, nil
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func asInt(v any) (int, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.Atoi(string(x))
		return n, err == nil
	case float64:
		return int(x), x == float64(int(x))
	case int:
		return x, true
	}
	return 0, false
}

func checkStepField(k string, v any) error {
	str := func() error {
		if _, ok := v.(string); !ok {
			return fmt.Errorf("want a string, got %s", jsonKind(v))
		}
		return nil
	}
	posInt := func() error {
		if n, ok := asInt(v); !ok || n < 1 {
			return fmt.Errorf("want a positive integer, got %s", jsonKind(v))
		}
		return nil
	}
	boolean := func() error {
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("want true or false, got %s", jsonKind(v))
		}
		return nil
	}
	strList := func() error {
		l, ok := v.([]any)
		if !ok {
			return fmt.Errorf("want a list of strings, got %s", jsonKind(v))
		}
		for i, e := range l {
			if _, ok := e.(string); !ok {
				return fmt.Errorf("element %d: want a string, got %s", i, jsonKind(e))
			}
		}
		return nil
	}
	switch k {
	case "name":
		s, ok := v.(string)
		if !ok {
			return str()
		}
		if !orchestrator.NameRE.MatchString(s) || len(s) > 50 {
			return fmt.Errorf("%s: want at most 50 lowercase letters, digits, '.', '_' or '-'", clip.Quote(s))
		}
	case "selected_device_type":
		if err := str(); err != nil {
			return err
		}
		_, err := DeviceType(v.(string))
		return err
	case "description", "eval_with", "cluster_id", "model_id", "credential_id", "workflow_id", "callback_topic":
		if k == "workflow_id" && v == nil {
			return nil
		}
		if err := str(); err != nil {
			return err
		}
		if k == "eval_with" && v != "configuration" && v != "dataset" {
			return fmt.Errorf("%s: want \"configuration\" or \"dataset\"", clip.Quote(fmt.Sprint(v)))
		}
	case "tags", "datasets", "dataset_ids", "datset_ids":
		return strList()
	case "concurrent_requests":
		if l, ok := v.([]any); ok && len(l) > 0 {
			for i, e := range l {
				if n, ok := asInt(e); !ok || n < 1 {
					return fmt.Errorf("element %d: want a positive integer, got %s", i, jsonKind(e))
				}
			}
			return nil
		}
		return posInt()
	case "max_input_tokens", "max_output_tokens", "tp_size", "num_prompts", "workflow_total_steps", "step_number":
		return posInt()
	case "trigger_workflow", "user_confirmation", "run_as_simulation":
		return boolean()
	case "nodes":
		l, ok := v.([]any)
		if !ok || len(l) == 0 {
			return fmt.Errorf("want a non-empty list of nodes (hostnames or node objects), got %s", jsonKind(v))
		}
		for i, e := range l {
			if nodeHostname(e) == "" {
				return fmt.Errorf("element %d: want a hostname or an object with \"hostname\"", i)
			}
			if _, err := decodeNode(e); err != nil {
				return fmt.Errorf("element %d: %v", i, err)
			}
		}
	case "model", "hardware":
		if _, ok := v.(map[string]any); !ok {
			return fmt.Errorf("want an object, got %s", jsonKind(v))
		}
	}
	return nil
}

func jsonKind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case bool:
		return strconv.FormatBool(x)
	case json.Number:
		return string(x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func nodeHostname(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		h, _ := x["hostname"].(string)
		return h
	}
	return ""
}

// checkStep applies a step's own rules, with data the merged workflow.
func checkStep(ctx context.Context, home string, step int, p, data map[string]any, env Env) error {
	serr := func(field, format string, args ...any) error {
		return &StepError{Step: step, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	need := func(fields ...string) error {
		for _, f := range fields {
			if _, ok := data[f]; !ok {
				return serr(f, "required")
			}
		}
		return nil
	}
	switch step {
	case 1:
		return need("name", "concurrent_requests", "eval_with")
	case 2:
		switch data["eval_with"] {
		case "configuration":
			if _, ok := p["datasets"]; ok {
				return serr("datasets", "eval_with is \"configuration\": give max_input_tokens and max_output_tokens")
			}
			return need("max_input_tokens", "max_output_tokens")
		case "dataset":
			if err := need("datasets"); err != nil {
				return err
			}
			for i, id := range data["datasets"].([]any) {
				if _, err := ResolveDataset(home, id.(string)); err != nil {
					return serr(fmt.Sprintf("datasets[%d]", i), "%v", err)
				}
			}
		default:
			return serr("eval_with", "required before step 2 (step 1)")
		}
	case 3:
		if err := need("cluster_id"); err != nil {
			return err
		}
		id := data["cluster_id"].(string)
		cl, err := env.cluster(id)
		if err != nil {
			return serr("cluster_id", "%q: %v", id, err)
		}
		if env.Inventory != nil {
			if _, err := env.Inventory(ctx, cl.Cluster); err != nil {
				return serr("cluster_id", "%q: %v%s", id, err, registerHint(cl, id))
			}
		}
	case 4:
		if err := need("nodes"); err != nil {
			return err
		}
		if _, ok := data["cluster_id"]; !ok {
			return serr("nodes", "choose the cluster (step 3, cluster_id) first")
		}
		id := data["cluster_id"].(string)
		cl, err := env.cluster(id)
		if err != nil {
			return serr("nodes", "cluster %q: %v", id, err)
		}
		if env.Inventory != nil {
			inv, err := env.Inventory(ctx, cl.Cluster)
			if err != nil {
				return serr("nodes", "cluster %q: %v", id, err)
			}
			have := map[string]gpuslice.Node{}
			var names []string
			for _, n := range inv {
				have[n.Hostname] = n
				names = append(names, n.Hostname)
			}
			for i, e := range data["nodes"].([]any) {
				h := nodeHostname(e)
				n, ok := have[cl.NodeName(h)]
				if !ok {
					return serr(fmt.Sprintf("nodes[%d]", i), "unknown node %q in cluster %q (have: %s)%s", h, id, strings.Join(names, ", "), nodeHint(cl, h))
				}
				if n.Status != "" && n.Status != "Ready" {
					return serr(fmt.Sprintf("nodes[%d]", i), "node %q is %s in the inventory", h, n.Status)
				}
			}
		}
	case 5:
		if err := need("model_id"); err != nil {
			return err
		}
		// The seed's order: the model's checks need the cluster and nodes.
		for _, f := range []string{"cluster_id", "nodes"} {
			if _, ok := data[f]; !ok {
				return serr("model_id", "the cluster (step 3) and nodes (step 4) must be chosen before the model: %s is missing", f)
			}
		}
		if _, err := workflowModel(home, data); err != nil {
			return serr("model_id", "%v", err)
		}
	case 6:
		if err := need("credential_id"); err != nil {
			return err
		}
		if _, ok := data["model_id"]; ok {
			if m, err := workflowModel(home, data); err == nil && !m.Cloud() {
				return serr("credential_id", "model %q is not a cloud model (no url): a credential is for cloud models", m.Name)
			}
		}
		if env.Credential != nil {
			if _, err := env.Credential(data["credential_id"].(string)); err != nil {
				return serr("credential_id", "%v", err)
			}
		}
	case 7:
		if c, _ := data["user_confirmation"].(bool); !c {
			return serr("user_confirmation", "must be true to confirm the benchmark")
		}
	case 8:
		return need("run_as_simulation")
	}
	return nil
}

// checkComplete is the trigger's rule: the full set must be known.
func checkComplete(step int, data map[string]any) error {
	req := []struct {
		field string
		step  int
	}{{"name", 1}, {"eval_with", 1}, {"concurrent_requests", 1}, {"cluster_id", 3}, {"nodes", 4}, {"model_id", 5}, {"user_confirmation", 7}, {"run_as_simulation", 8}}
	switch data["eval_with"] {
	case "configuration":
		req = append(req, struct {
			field string
			step  int
		}{"max_input_tokens", 2}, struct {
			field string
			step  int
		}{"max_output_tokens", 2})
	case "dataset":
		req = append(req, struct {
			field string
			step  int
		}{"datasets", 2})
	}
	for _, r := range req {
		if _, ok := data[r.field]; !ok {
			return &StepError{Step: step, Field: r.field, Msg: fmt.Sprintf("required before trigger_workflow (send step %d)", r.step)}
		}
	}
	if c, _ := data["user_confirmation"].(bool); !c {
		return &StepError{Step: step, Field: "user_confirmation", Msg: "must be true before trigger_workflow (step 7)"}
	}
	return nil
}

// ResolveDataset finds a dataset by id: a path, or
// $GPUORCH_HOME/datasets/<id>[.json|.jsonl].
func ResolveDataset(home, id string) (string, error) {
	if e, err := (Registry{Home: home}).Get(Datasets, id); err == nil {
		if _, err := LoadDataset(e.Path); err != nil {
			return "", fmt.Errorf("dataset %q (%s): %v", id, e.Path, err)
		}
		return e.Path, nil
	}
	cands := []string{id}
	if !strings.ContainsAny(id, `/\`) {
		d := filepath.Join(home, "datasets")
		cands = append(cands, filepath.Join(d, id), filepath.Join(d, id+".json"), filepath.Join(d, id+".jsonl"))
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			if _, err := LoadDataset(c); err != nil {
				return "", fmt.Errorf("dataset %s: %w", clip.Quote(id), err)
			}
			abs, _ := filepath.Abs(c)
			return abs, nil
		}
	}
	return "", fmt.Errorf("unknown dataset %s (not registered — %s —, not a file, and no %s[.json|.jsonl])", clip.Quote(id), sbatch.CommandLine("gpuorch", "bench", "datasets", "add", "--id", id, "FILE"), clip.String(filepath.Join(home, "datasets", id)))
}

// workflowModel is the model a workflow names: the inline "model" object,
// else the registered model_id (gpuorch bench models), else
// $GPUORCH_HOME/models/<model_id>.json.
func workflowModel(home string, data map[string]any) (*Model, error) {
	id, _ := data["model_id"].(string)
	var raw []byte
	if inline, ok := data["model"]; ok {
		raw, _ = json.Marshal(inline)
	} else {
		e, err := (Registry{Home: home}).Get(Models, id)
		if err == nil {
			m := *e.Model
			return &m, nil
		}
		if !errors.Is(err, ErrUnknownID) {
			return nil, err
		}
		if !workflowIDRE.MatchString(id) {
			return nil, fmt.Errorf("unknown model %s", clip.Quote(id))
		}
		p := filepath.Join(home, "models", id+".json")
		b, err := limitio.ReadFile(p, limitio.Config.As("model file"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("unknown model %s (register it: %s; or give an inline \"model\" object, or write %s)", clip.Quote(id), sbatch.CommandLine("gpuorch", "bench", "models", "add", "--id", id, "MODEL.json"), clip.String(p))
		}
		if err != nil {
			return nil, fmt.Errorf("model %q: %w", id, err)
		}
		raw = b
	}
	var m Model
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("model %q: %v", id, strings.TrimPrefix(err.Error(), "json: "))
	}
	if m.Name == "" {
		m.Name = id
	}
	return &m, nil
}

// WorkflowSpec turns a complete workflow into a benchmark spec.
func WorkflowSpec(home string, data map[string]any) (*Spec, error) {
	s := &Spec{File: "workflow"}
	s.Name, _ = data["name"].(string)
	s.Description, _ = data["description"].(string)
	for _, t := range anyList(data["tags"]) {
		s.Tags = append(s.Tags, t.(string))
	}
	if l, ok := data["concurrent_requests"].([]any); ok {
		for _, e := range l {
			n, _ := asInt(e)
			s.ConcurrentRequests = append(s.ConcurrentRequests, n)
		}
	} else {
		n, _ := asInt(data["concurrent_requests"])
		s.ConcurrentRequests = IntList{n}
	}
	s.EvalWith, _ = data["eval_with"].(string)
	if s.EvalWith == "configuration" {
		in, _ := asInt(data["max_input_tokens"])
		out, _ := asInt(data["max_output_tokens"])
		s.Configuration = &Configuration{MaxInputTokens: in, MaxOutputTokens: out}
	} else {
		s.Dataset = &DatasetSpec{}
		for _, id := range anyList(data["datasets"]) {
			p, err := ResolveDataset(home, id.(string))
			if err != nil {
				return nil, err
			}
			s.Dataset.Files = append(s.Dataset.Files, p)
		}
	}
	s.Cluster, _ = data["cluster_id"].(string)
	for _, n := range anyList(data["nodes"]) {
		s.Nodes = append(s.Nodes, nodeHostname(n))
		if _, obj := n.(map[string]any); obj {
			node, err := decodeNode(n)
			if err != nil {
				return nil, fmt.Errorf("nodes: %v", err)
			}
			s.NodeInfo = append(s.NodeInfo, node)
		}
	}
	m, err := workflowModel(home, data)
	if err != nil {
		return nil, err
	}
	s.Model = *m
	if c, ok := data["credential_id"].(string); ok {
		s.Model.Credential = c
	}
	if h, ok := data["hardware"]; ok {
		b, _ := json.Marshal(h)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s.Hardware); err != nil {
			return nil, fmt.Errorf("hardware: %v", strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	if d, ok := data["selected_device_type"].(string); ok {
		if s.Hardware.DeviceType, err = DeviceType(d); err != nil {
			return nil, fmt.Errorf("selected_device_type: %v", err)
		}
	}
	if tp, ok := asInt(data["tp_size"]); ok {
		s.Hardware.TP = tp
	}
	if n, ok := asInt(data["num_prompts"]); ok {
		s.NumPrompts = n
	}
	if err := s.Check(); err != nil {
		return nil, err
	}
	return s, nil
}

func anyList(v any) []any {
	l, _ := v.([]any)
	return l
}
