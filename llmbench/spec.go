package llmbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/tomlstrict"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/perfmodel"
)

// Spec is an LLM serving benchmark (docs/bench.md): the benchmark
// workflow's steps as one file. Keys mirror the workflow's step payloads.
type Spec struct {
	Name        string   `toml:"name" json:"name"`
	Tags        []string `toml:"tags" json:"tags,omitempty"`
	Description string   `toml:"description" json:"description,omitempty"`
	// ConcurrentRequests is one level or a list swept: one task each.
	ConcurrentRequests IntList `toml:"concurrent_requests" json:"concurrent_requests"`
	EvalWith           string  `toml:"eval_with" json:"eval_with"` // "configuration" or "dataset"
	// NumPrompts is the requests sent per level (0 = 3 × the level).
	NumPrompts    int            `toml:"num_prompts" json:"num_prompts,omitempty"`
	Configuration *Configuration `toml:"configuration" json:"configuration,omitempty"`
	Dataset       *DatasetSpec   `toml:"dataset" json:"dataset,omitempty"`
	// Cluster is "local" (this machine), the Slurm cluster's name, or a
	// registered cluster's id or name (gpuorch bench clusters).
	Cluster string   `toml:"cluster" json:"cluster"`
	Nodes   []string `toml:"nodes" json:"nodes,omitempty"`
	// NodeInfo holds the node objects of a workflow's step 4 (Bud's
	// node-metrics response), by hostname as the payload names it: their
	// status, devices and available counts size the run and feed simulate.
	NodeInfo []gpuslice.Node        `toml:"-" json:"node_info,omitempty"`
	Model    Model                  `toml:"model" json:"model"`
	Hardware Hardware               `toml:"hardware" json:"hardware,omitempty"`
	SLO      SLO                    `toml:"slo" json:"slo,omitempty"`
	Run      RunSpec                `toml:"run" json:"run,omitempty"`
	Slurm    orchestrator.SlurmSpec `toml:"slurm" json:"slurm,omitempty"`

	File string          `toml:"-" json:"-"`
	doc  *tomlstrict.Doc // nil for a spec read from JSON
}

// IntList is an integer or a list of integers.
type IntList []int

// UnmarshalTOML accepts 8 or [1, 8, 32].
func (l *IntList) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		*l = IntList{int(x)}
		return nil
	case []any:
		out := make(IntList, 0, len(x))
		for i, e := range x {
			n, ok := e.(int64)
			if !ok {
				return fmt.Errorf("element %d: want an integer, got %T", i, e)
			}
			out = append(out, int(n))
		}
		*l = out
		return nil
	}
	return fmt.Errorf("want an integer or a list of integers, got %T", v)
}

// UnmarshalJSON accepts 8 or [1, 8, 32].
func (l *IntList) UnmarshalJSON(b []byte) error {
	var one int
	if err := json.Unmarshal(b, &one); err == nil {
		*l = IntList{one}
		return nil
	}
	var many []int
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("want an integer or a list of integers")
	}
	*l = many
	return nil
}

// Configuration is eval_with = "configuration": fixed lengths.
type Configuration struct {
	MaxInputTokens  int `toml:"max_input_tokens" json:"max_input_tokens"`
	MaxOutputTokens int `toml:"max_output_tokens" json:"max_output_tokens"`
}

// DatasetSpec is eval_with = "dataset": prompt files (ShareGPT JSON or
// JSONL), paths relative to the spec file.
type DatasetSpec struct {
	Files []string `toml:"files" json:"files"`
}

// Model is what is benchmarked: a local server (Command, or Image run
// with apptainer) started inside each task, or a cloud endpoint (URL) with
// a credential referenced by name. Arch, or the explicit numbers, feed
// simulate.
type Model struct {
	Name       string   `toml:"name" json:"name"`                       // the model name requests carry
	Command    []string `toml:"command" json:"command,omitempty"`       // local server argv; "{port}" is replaced; argv[0] "gpuorch" = this binary
	Image      string   `toml:"image" json:"image,omitempty"`           // local SIF image: apptainer run --nv IMAGE ARGS…
	Args       []string `toml:"args" json:"args,omitempty"`             // arguments after the image
	URL        string   `toml:"url" json:"url,omitempty"`               // cloud: OpenAI-compatible base URL
	Protocol   string   `toml:"protocol" json:"protocol,omitempty"`     // "openai" (default) or "openai-chat"
	Credential string   `toml:"credential" json:"credential,omitempty"` // cloud: credential name (gpuorch credentials)
	Arch       string   `toml:"arch" json:"arch,omitempty"`             // known architecture, e.g. "llama-2-7b"
	// Explicit architecture (override Arch's values when set).
	Params          float64 `toml:"params" json:"params,omitempty"`
	Layers          int     `toml:"layers" json:"layers,omitempty"`
	Hidden          int     `toml:"hidden" json:"hidden,omitempty"`
	KVBytesPerToken float64 `toml:"kv_bytes_per_token" json:"kv_bytes_per_token,omitempty"`
	BytesPerParam   float64 `toml:"bytes_per_param" json:"bytes_per_param,omitempty"`
}

// Cloud reports whether the model is a remote endpoint.
func (m *Model) Cloud() bool { return m.URL != "" }

// check is the spec's [model] checks (also a registered model's): the key
// at fault and why.
func (m *Model) check() (string, error) {
	if m.Name == "" {
		return "model.name", fmt.Errorf("required (the model name requests carry)")
	}
	kinds := 0
	for _, set := range []bool{len(m.Command) > 0, m.Image != "", m.URL != ""} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return "model", fmt.Errorf("give exactly one of command (local server), image (local SIF) or url (cloud endpoint)")
	}
	if len(m.Args) > 0 && m.Image == "" {
		return "model.args", fmt.Errorf("only with model.image")
	}
	if m.Cloud() {
		u, err := url.Parse(m.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "model.url", fmt.Errorf("%q: want http(s)://host[:port][/path]", m.URL)
		}
		if u.User != nil {
			return "model.url", fmt.Errorf("must not carry a user or password; use model.credential")
		}
	} else if m.Credential != "" {
		return "model.credential", fmt.Errorf("only for a cloud model (model.url)")
	}
	switch m.Protocol {
	case "", "openai", "openai-chat":
	default:
		return "model.protocol", fmt.Errorf("%q: want \"openai\" or \"openai-chat\"", m.Protocol)
	}
	if m.Arch != "" {
		if _, err := perfmodel.LookupArch(m.Arch); err != nil {
			return "model.arch", fmt.Errorf("%v", err)
		}
	}
	return "", nil
}

// Hardware is the device side of simulate, and the GPUs a local
// server gets: tp devices per task.
type Hardware struct {
	Device string `toml:"device" json:"device,omitempty"` // GPU or CPU model, e.g. "H100", "A100 80GB", "Xeon 8480+"
	// DeviceType picks the node device a run uses and simulate models:
	// "gpu" or "cpu" (Bud's selected_device_type; "cuda" is gpu); default
	// the nodes' first GPU, else their CPU.
	DeviceType          string  `toml:"device_type" json:"device_type,omitempty"`
	PeakFP16TFLOPS      float64 `toml:"peak_fp16_tflops" json:"peak_fp16_tflops,omitempty"`
	MemoryBandwidthGBps float64 `toml:"memory_bandwidth_gbps" json:"memory_bandwidth_gbps,omitempty"`
	MemoryGB            float64 `toml:"memory_gb" json:"memory_gb,omitempty"`
	TP                  int     `toml:"tp" json:"tp,omitempty"`
	ComputeEfficiency   float64 `toml:"compute_efficiency" json:"compute_efficiency,omitempty"`
	BandwidthEfficiency float64 `toml:"bandwidth_efficiency" json:"bandwidth_efficiency,omitempty"`
	MemoryUtilization   float64 `toml:"memory_utilization" json:"memory_utilization,omitempty"`
	MaxBatch            int     `toml:"max_batch" json:"max_batch,omitempty"`
	PrefillOverlap      bool    `toml:"prefill_overlap" json:"prefill_overlap,omitempty"`
}

// SLO are the goodput SLOs (optional).
type SLO struct {
	TTFT loadgen.Duration `toml:"ttft" json:"ttft,omitempty"`
	TPOT loadgen.Duration `toml:"tpot" json:"tpot,omitempty"`
	E2EL loadgen.Duration `toml:"e2el" json:"e2el,omitempty"`
}

// RunSpec is [run].
type RunSpec struct {
	Timeout      loadgen.Duration `toml:"timeout" json:"timeout,omitempty"`             // per request (default 60s)
	ReadyTimeout loadgen.Duration `toml:"ready_timeout" json:"ready_timeout,omitempty"` // local server start (default 10m)
	Seed         int64            `toml:"seed" json:"seed,omitempty"`
	PerRequest   bool             `toml:"per_request" json:"per_request,omitempty"` // write tasks/<i>/requests.jsonl
	TaskTimeout  loadgen.Duration `toml:"task_timeout" json:"task_timeout,omitempty"`
}

// LoadSpec reads a benchmark spec (TOML, or JSON when the file ends in
// .json or starts with '{').
func LoadSpec(path string) (*Spec, error) {
	src, err := limitio.ReadFile(path, limitio.Config.As("benchmark spec"))
	if err != nil {
		return nil, fmt.Errorf("read benchmark spec: %w", err)
	}
	return ParseSpec(path, src)
}

// ParseSpec decodes strictly: an unknown key or a wrong type is a
// *SpecError naming file, line and key. It then checks what needs no
// outside knowledge (Check).
func ParseSpec(file string, src []byte) (*Spec, error) {
	s := &Spec{File: file}
	trim := bytes.TrimSpace(src)
	if strings.HasSuffix(file, ".json") || bytes.HasPrefix(trim, []byte("{")) {
		dec := json.NewDecoder(bytes.NewReader(src))
		dec.DisallowUnknownFields()
		if err := dec.Decode(s); err != nil {
			line := lineAt(src, int(dec.InputOffset()))
			msg := strings.TrimPrefix(err.Error(), "json: ")
			key := ""
			if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
				key = strings.Trim(f, `"`)
				msg = fmt.Sprintf("unknown key %q%s", key, tomlstrict.Suggest(key, tomlstrict.KnownKeys(reflect.TypeFor[Spec](), nil)))
			}
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				key = te.Field
				line = lineAt(src, int(te.Offset))
				msg = fmt.Sprintf("%s: want %s, got JSON %s", te.Field, te.Type, te.Value)
			}
			return nil, &orchestrator.SpecError{File: file, Line: line, Key: key, Msg: msg}
		}
		if dec.More() {
			return nil, &orchestrator.SpecError{File: file, Line: lineAt(src, int(dec.InputOffset())), Msg: "trailing data after the JSON object"}
		}
	} else {
		doc, err := tomlstrict.Parse(file, src)
		if err != nil {
			var se *orchestrator.SpecError
			if errors.As(err, &se) && se.Key != "" {
				se.Msg = se.Key + ": " + se.Msg
			}
			return nil, err
		}
		if err := doc.Decode(nil, doc.Tree, s); err != nil {
			return nil, err
		}
		s.doc = doc
	}
	if err := s.Check(); err != nil {
		return nil, err
	}
	return s, nil
}

func lineAt(src []byte, off int) int {
	if off > len(src) {
		off = len(src)
	}
	return bytes.Count(src[:off], []byte("\n")) + 1
}

// errf is a SpecError at key (dotted).
func (s *Spec) errf(key, format string, args ...any) error {
	return &orchestrator.SpecError{File: s.File, Line: s.doc.Line(strings.Split(key, ".")), Key: key, Msg: key + ": " + fmt.Sprintf(format, args...)}
}

// Check validates what the spec says on its own (names, required keys,
// ranges). Validate checks it against the world.
func (s *Spec) Check() error {
	switch {
	case s.Name == "":
		return s.errf("name", "required")
	case !orchestrator.NameRE.MatchString(s.Name) || len(s.Name) > 50:
		return s.errf("name", "%s: want at most 50 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", clip.Quote(s.Name))
	case len(s.ConcurrentRequests) == 0:
		return s.errf("concurrent_requests", "required (an integer, or a list to sweep)")
	}
	seen := map[int]bool{}
	for _, c := range s.ConcurrentRequests {
		if c < 1 {
			return s.errf("concurrent_requests", "%d: must be at least 1", c)
		}
		if seen[c] {
			return s.errf("concurrent_requests", "%d is listed twice", c)
		}
		seen[c] = true
	}
	if s.NumPrompts < 0 {
		return s.errf("num_prompts", "must not be negative")
	}
	switch s.EvalWith {
	case "configuration":
		c := s.Configuration
		if c == nil {
			return s.errf("configuration", "eval_with = \"configuration\" needs [configuration] max_input_tokens and max_output_tokens")
		}
		if c.MaxInputTokens < 1 {
			return s.errf("configuration.max_input_tokens", "required, at least 1")
		}
		if c.MaxOutputTokens < 1 {
			return s.errf("configuration.max_output_tokens", "required, at least 1")
		}
	case "dataset":
		if s.Dataset == nil || len(s.Dataset.Files) == 0 {
			return s.errf("dataset.files", "eval_with = \"dataset\" needs at least one dataset file")
		}
	case "":
		return s.errf("eval_with", "required: \"configuration\" or \"dataset\"")
	default:
		return s.errf("eval_with", "%q: want \"configuration\" or \"dataset\"", s.EvalWith)
	}
	if s.Cluster == "" {
		return s.errf("cluster", "required: \"local\" or the Slurm cluster's name")
	}
	if key, err := s.Model.check(); err != nil {
		return s.errf(key, "%v", err)
	}
	if s.Hardware.TP < 0 || s.Hardware.MaxBatch < 0 {
		return s.errf("hardware", "tp and max_batch must not be negative")
	}
	switch s.Hardware.DeviceType {
	case "", "gpu", "cpu":
	default:
		return s.errf("hardware.device_type", "%q: want \"gpu\" or \"cpu\"", s.Hardware.DeviceType)
	}
	return nil
}

// DeviceType turns Bud's selected_device_type into gpuorch's: "cuda" and
// "gpu" are "gpu", "cpu" is "cpu"; others are not supported.
func DeviceType(selected string) (string, error) {
	switch strings.ToLower(selected) {
	case "cuda", "gpu":
		return "gpu", nil
	case "cpu":
		return "cpu", nil
	}
	return "", fmt.Errorf("%q: want \"cuda\" (or \"gpu\") or \"cpu\"", selected)
}

// Levels are the concurrency levels, one task each, in spec order.
func (s *Spec) Levels() []int { return append([]int(nil), s.ConcurrentRequests...) }

// Prompts is the number of requests sent at a level.
func (s *Spec) Prompts(level int) int {
	if s.NumPrompts > 0 {
		return s.NumPrompts
	}
	return 3 * level
}

// Env is what Validate asks the world. Nil functions skip that check.
type Env struct {
	// Inventory lists the nodes of a cluster ("local": this machine).
	Inventory func(ctx context.Context, cluster string) ([]gpuslice.Node, error)
	// Cluster resolves a cluster id or name (the registry's
	// ResolveCluster); nil takes the name as it is.
	Cluster func(idOrName string) (*Entry, error)
	// Credential resolves a credential name to its secret.
	Credential func(name string) (string, error)
	// SimulateOnly skips what only running needs: the server program or
	// image and the credential.
	SimulateOnly bool
}

// cluster resolves a cluster id or name.
func (e Env) cluster(idOrName string) (*Entry, error) {
	if e.Cluster == nil {
		return &Entry{Kind: Clusters, Cluster: idOrName}, nil
	}
	return e.Cluster(idOrName)
}

// Resolved is a spec checked against the world: the dataset read, token
// lengths fixed, the server command made concrete.
type Resolved struct {
	Spec         *Spec
	InputTokens  int
	OutputTokens int
	Dataset      *DatasetStats `json:",omitempty"`
	// Cluster is what the spec's cluster resolved to (a registered one, or
	// the name itself).
	Cluster *Entry
	// Nodes are the chosen nodes: the node payload's when the workflow
	// gave one (its devices honoured), else the inventory's; NodeNames
	// their names in the inventory (Slurm's --nodelist).
	Nodes     []gpuslice.Node
	NodeNames []string
	// Device is the device type a run uses ("gpu", "cpu", "" unknown).
	Device string
	// fromPayload[i]: Nodes[i] is a node payload with devices (honoured).
	fromPayload []bool
	ServerArgv  []string // local server; "gpuorch" as argv[0] means the gpuorch binary
	Executor    string
}

// Validate checks the spec against the world before anything runs: the
// cluster and nodes exist in the inventory, dataset files are readable
// prompt files, a local server command or image exists, a cloud model's
// credential is known. Errors name the key.
func (s *Spec) Validate(ctx context.Context, env Env) (*Resolved, error) {
	r := &Resolved{Spec: s, Executor: "local"}
	cl, err := env.cluster(s.Cluster)
	if err != nil {
		return nil, s.errf("cluster", "%q: %v", s.Cluster, err)
	}
	r.Cluster = cl
	if cl.Cluster != "local" {
		r.Executor = "slurm"
	}
	payload := map[string]gpuslice.Node{}
	for _, n := range s.NodeInfo {
		payload[n.Hostname] = n
	}
	var byName map[string]gpuslice.Node
	var names []string
	if env.Inventory != nil {
		nodes, err := env.Inventory(ctx, cl.Cluster)
		if err != nil {
			return nil, s.errf("cluster", "%q: %v%s", s.Cluster, err, registerHint(cl, s.Cluster))
		}
		byName = map[string]gpuslice.Node{}
		for _, n := range nodes {
			byName[n.Hostname] = n
			names = append(names, n.Hostname)
		}
	}
	for i, want := range s.Nodes {
		key := fmt.Sprintf("nodes[%d]", i)
		real := cl.NodeName(want)
		inv, known := byName[real]
		if byName != nil {
			if !known {
				return nil, s.errf("nodes", "unknown node %q in cluster %q (have: %s)%s", want, s.Cluster, strings.Join(names, ", "), nodeHint(cl, want))
			}
			if inv.Status != "" && inv.Status != "Ready" {
				return nil, s.errf("nodes", "node %q is %s", want, inv.Status)
			}
		}
		n := inv
		p, fromPayload := payload[want]
		if fromPayload {
			if err := checkNodePayload(p); err != nil {
				return nil, s.errf("nodes", "%s (%s): %v", key, want, err)
			}
			n = withInventoryMemory(p, inv)
		}
		r.fromPayload = append(r.fromPayload, fromPayload && len(p.Devices) > 0)
		if n.Hostname == "" {
			n.Hostname = want
		}
		r.Nodes = append(r.Nodes, n)
		r.NodeNames = append(r.NodeNames, real)
	}
	if err := r.size(); err != nil {
		return nil, err
	}
	switch s.EvalWith {
	case "configuration":
		r.InputTokens, r.OutputTokens = s.Configuration.MaxInputTokens, s.Configuration.MaxOutputTokens
	case "dataset":
		var prompts []DatasetPrompt
		for i, f := range s.Dataset.Files {
			p := s.relPath(f)
			ps, err := LoadDataset(p)
			if err != nil {
				return nil, s.errf(fmt.Sprintf("dataset.files[%d]", i), "unknown or unreadable dataset: %v", err)
			}
			prompts = append(prompts, ps...)
		}
		st := Stats(prompts)
		r.Dataset = &st
		r.InputTokens, r.OutputTokens = st.MeanInput, st.MeanOutput
	}
	m := &s.Model
	switch {
	case env.SimulateOnly:
	case len(m.Command) > 0:
		if m.Command[0] != "gpuorch" {
			if _, err := exec.LookPath(m.Command[0]); err != nil {
				return nil, s.errf("model.command", "unknown server program %q: %v", m.Command[0], err)
			}
		}
		r.ServerArgv = append([]string(nil), m.Command...)
	case m.Image != "":
		img := s.relPath(m.Image)
		if st, err := os.Stat(img); err != nil || st.IsDir() {
			return nil, s.errf("model.image", "unknown image %q: not a file", m.Image)
		}
		abs, _ := filepath.Abs(img)
		r.ServerArgv = append([]string{"apptainer", "run", "--nv", abs}, m.Args...)
	case m.Cloud():
		if m.Credential != "" && env.Credential != nil {
			if _, err := env.Credential(m.Credential); err != nil {
				return nil, s.errf("model.credential", "%v", err)
			}
		}
	}
	return r, nil
}

func (s *Spec) relPath(p string) string {
	if filepath.IsAbs(p) || s.File == "" || s.File == "-" {
		return p
	}
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return filepath.Join(filepath.Dir(s.File), p)
}

// Arch is the model's architecture for simulate.
func (s *Spec) Arch() (perfmodel.Arch, error) {
	m := &s.Model
	var a perfmodel.Arch
	if m.Arch != "" {
		var err error
		if a, err = perfmodel.LookupArch(m.Arch); err != nil {
			return a, s.errf("model.arch", "%v", err)
		}
	} else if m.Params == 0 {
		if a, err := perfmodel.LookupArch(m.Name); err == nil {
			return a, nil
		}
		return a, s.errf("model", "simulate needs model.arch (one of %s) or model.params, layers, hidden, kv_bytes_per_token", strings.Join(perfmodel.KnownArchs(), ", "))
	}
	if m.Params > 0 {
		a.Params = m.Params
	}
	if m.Layers > 0 {
		a.Layers = m.Layers
	}
	if m.Hidden > 0 {
		a.Hidden = m.Hidden
	}
	if m.KVBytesPerToken > 0 {
		a.KVBytesPerToken = m.KVBytesPerToken
	}
	if m.BytesPerParam > 0 {
		a.BytesPerParam = m.BytesPerParam
	}
	return a, nil
}

// Device is the simulated device: [hardware] device looked up in the GPU
// table, else the CPU table (one socket); or else the device the run uses
// on the first chosen node that has one (hardware.device_type, else its
// first GPU, else its CPU), from the tables and what the node says of it
// (a node payload's peak_fp16_TFLOPS wins over the table); explicit
// [hardware] numbers override both.
func (s *Spec) Device(nodes []gpuslice.Node) (perfmodel.Device, error) {
	h := &s.Hardware
	var d perfmodel.Device
	var lookupErr error
	identified := false
	switch {
	case h.Device != "":
		identified = true
		d, lookupErr = perfmodel.LookupDevice(h.Device)
		if lookupErr != nil && d.PeakTFLOPS == 0 {
			if c, err := perfmodel.LookupCPU(h.Device, 1); err == nil {
				d, lookupErr = c, nil
			}
		}
		d.Name = h.Device
	default:
		for _, n := range nodes {
			nd, ok := pickDevice(n, h.DeviceType)
			if !ok || deviceType(nd) == "gpu" && (nd.Name == "" || nd.Name == "gpu") && nd.DeviceConfig.PeakFP16TFLOPS == nil {
				continue // a GPU Slurm names no model of
			}
			identified = true
			d, lookupErr = simDevice(nd)
			break
		}
	}
	if d.Name == "" {
		d.Name = "custom"
	}
	if h.PeakFP16TFLOPS > 0 {
		d.PeakTFLOPS = h.PeakFP16TFLOPS
	}
	if h.MemoryBandwidthGBps > 0 {
		d.BandwidthGBps = h.MemoryBandwidthGBps
	}
	if h.MemoryGB > 0 {
		d.MemoryGB = h.MemoryGB
	}
	missing := d.PeakTFLOPS <= 0 || d.BandwidthGBps <= 0 || identified && d.MemoryGB <= 0
	switch {
	case missing && lookupErr != nil && strings.Contains(lookupErr.Error(), "CPU table"):
		return d, s.errf("hardware.device", "%v", lookupErr) // it says how to give the peak
	case missing && lookupErr != nil:
		return d, s.errf("hardware.device", "%v (or give [hardware] peak_fp16_tflops, memory_bandwidth_gbps and memory_gb)", lookupErr)
	case missing && d.Kind == "cpu" && d.MemoryGB <= 0:
		return d, s.errf("hardware.memory_gb", "simulate needs the memory of CPU device %q: the node payload (device_config.mem_per_GPU_in_GB) and the inventory do not say it", d.Name)
	case missing:
		return d, s.errf("hardware", "simulate needs hardware.device (a GPU model such as \"H100\", a CPU such as \"Xeon 8480+\") or peak_fp16_tflops, memory_bandwidth_gbps and memory_gb")
	}
	return d, nil
}

// Simulate predicts every level.
func (s *Spec) Simulate(r *Resolved) ([]perfmodel.Prediction, error) {
	a, err := s.Arch()
	if err != nil {
		return nil, err
	}
	d, err := s.Device(r.Nodes)
	if err != nil {
		return nil, err
	}
	h := s.Hardware
	var out []perfmodel.Prediction
	for _, c := range s.Levels() {
		p, err := perfmodel.Predict(perfmodel.Config{Arch: a, Device: d, TP: h.TP, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens,
			Concurrency: c, ComputeEfficiency: h.ComputeEfficiency, BandwidthEfficiency: h.BandwidthEfficiency,
			MemoryUtilization: h.MemoryUtilization, MaxBatch: h.MaxBatch, PrefillOverlap: h.PrefillOverlap})
		if err != nil {
			return nil, s.errf("hardware", "concurrency %d: %v", c, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// CredentialEnv is the environment variable a credential's secret travels
// in to the load generator (never a file, script or manifest).
func CredentialEnv(name string) string {
	var b strings.Builder
	b.WriteString("GPUORCH_CREDENTIAL_")
	for _, r := range strings.ToUpper(name) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// TaskInfo is what a benchmark task needs beyond its manifest, written to
// bench.json in the experiment directory.
type TaskInfo struct {
	ServerArgv   []string               `json:"server_argv,omitempty"`
	ReadyTimeout loadgen.Duration       `json:"ready_timeout,omitempty"`
	PerRequest   bool                   `json:"per_request,omitempty"`
	Levels       []int                  `json:"levels"`
	InputTokens  int                    `json:"input_tokens"`
	OutputTokens int                    `json:"output_tokens"`
	Dataset      *DatasetStats          `json:"dataset,omitempty"`
	Predictions  []perfmodel.Prediction `json:"predictions,omitempty"`
}

// ServerURL is the local server's base URL in a manifest before the task
// picks the port: the task rewrites it.
const ServerURL = "http://127.0.0.1:0"

// Plan turns the resolved spec into an experiment plan: one closed-loop
// task per concurrency level, num_prompts requests each, OpenAI protocol.
func (r *Resolved) Plan() (*orchestrator.Plan, *TaskInfo, error) {
	s := r.Spec
	p := &orchestrator.Plan{
		Experiment: orchestrator.ExperimentSpec{Name: s.Name, Tags: s.Tags, Description: s.Description},
		Run:        orchestrator.RunSpec{Seed: s.Run.Seed, Executor: r.Executor, Parallel: 1, TaskTimeout: s.Run.TaskTimeout},
		Slurm:      s.Slurm,
		SweepKeys:  []string{"workload.concurrency"},
		Workloads:  []string{"closed"},
	}
	if p.Run.Seed == 0 {
		p.Run.Seed = 42
	}
	if r.Executor == "slurm" && len(r.NodeNames) > 0 && p.Slurm.Nodelist == "" {
		p.Slurm.Nodelist = strings.Join(r.NodeNames, ",")
	}
	switch {
	case s.Model.Cloud():
	case r.Device == "cpu":
		// A CPU device: no GPUs; from a node payload, tp of its available
		// units (Bud's CPU units are NUMA nodes) of its CPUs.
		if d, ok := pickDevice(r.Nodes[0], "cpu"); ok && r.fromPayload[0] && p.Slurm.CPUsPerTask == 0 {
			p.Slurm.CPUsPerTask = cpusPerTask(d, s.Hardware.TP)
		}
	case p.Slurm.GPUs == "" && p.Slurm.Gres == "":
		p.Slurm.GPUs = fmt.Sprint(max(s.Hardware.TP, 1))
		if p.Slurm.GPUs == "1" && len(r.Nodes) > 0 && !hasGPU(r.Nodes) {
			p.Slurm.GPUs = ""
		}
	}
	timeout := s.Run.Timeout
	if timeout <= 0 {
		timeout = loadgen.Duration(60e9)
	}
	proto := s.Model.Protocol
	if proto == "" {
		proto = "openai"
	}
	url := ServerURL
	if s.Model.Cloud() {
		url = s.Model.URL
	}
	bt := &TaskInfo{ServerArgv: r.ServerArgv, ReadyTimeout: s.Run.ReadyTimeout, PerRequest: s.Run.PerRequest,
		Levels: s.Levels(), InputTokens: r.InputTokens, OutputTokens: r.OutputTokens, Dataset: r.Dataset}
	width := 3
	for i, c := range s.Levels() {
		name := fmt.Sprintf("t%0*d-concurrency=%d", width, i, c)
		cfg := loadgen.Config{
			Experiment: s.Name, Task: name, Seed: p.Run.Seed + int64(i),
			Target: loadgen.TargetConfig{URL: url, Protocol: proto, Models: []string{s.Model.Name}, Timeout: timeout,
				InputTokens: r.InputTokens, OutputTokens: r.OutputTokens},
			Workload: loadgen.WorkloadConfig{Name: "closed", Arrival: "closed", Concurrency: c, MaxRequests: int64(s.Prompts(c))},
			SLO:      loadgen.SLOConfig{TTFT: s.SLO.TTFT, TPOT: s.SLO.TPOT, E2EL: s.SLO.E2EL},
			Tags:     map[string]string{"workload": "closed", "concurrency": fmt.Sprint(c)},
			Drain:    timeout,
		}
		if s.Model.Credential != "" {
			cfg.Target.CredentialEnv = CredentialEnv(s.Model.Credential)
		}
		if files := r.promptFiles(); len(files) > 0 {
			// The dataset's own prompts and answer lengths, not the means.
			cfg.Target.PromptFiles, cfg.Target.InputTokens, cfg.Target.OutputTokens = files, 0, r.datasetOutputCap()
		}
		p.Tasks = append(p.Tasks, orchestrator.Task{Index: i, Name: name, Workload: "closed", Params: map[string]any{"workload.concurrency": c}, Config: cfg})
	}
	// Slurm time: every request at the per-request timeout, plus start-up.
	if p.Slurm.Time == "" {
		p.Run.Duration = loadgen.Duration(0)
	}
	return p, bt, nil
}

func hasGPU(nodes []gpuslice.Node) bool {
	for _, n := range nodes {
		for _, d := range n.Devices {
			if deviceType(d) == "gpu" {
				return true
			}
		}
	}
	return false
}

// Describe is what `bench plan` prints: everything that will happen.
func (r *Resolved) Describe(p *orchestrator.Plan, bt *TaskInfo) string {
	s := r.Spec
	var b strings.Builder
	cluster := s.Cluster
	if r.Cluster != nil && r.Cluster.ID != "" {
		cluster = fmt.Sprintf("%s, registered: %s", s.Cluster, r.Cluster.Cluster)
		if r.Cluster.Name != "" && r.Cluster.Name != s.Cluster {
			cluster = fmt.Sprintf("%s, registered as %s: %s", s.Cluster, r.Cluster.Name, r.Cluster.Cluster)
		}
	}
	fmt.Fprintf(&b, "benchmark %s: %d task(s), one per concurrency level, executor %s (cluster %s)\n", s.Name, len(p.Tasks), r.Executor, cluster)
	if s.Description != "" {
		fmt.Fprintf(&b, "  description: %s\n", s.Description)
	}
	if len(s.Tags) > 0 {
		fmt.Fprintf(&b, "  tags: %s\n", strings.Join(s.Tags, ", "))
	}
	if len(s.Nodes) > 0 {
		names := append([]string(nil), s.Nodes...)
		for i := range names {
			if i < len(r.NodeNames) && r.NodeNames[i] != names[i] {
				names[i] += " (" + r.NodeNames[i] + ")"
			}
		}
		fmt.Fprintf(&b, "  nodes: %s", strings.Join(names, ", "))
		if len(r.Nodes) > 0 {
			if d, ok := pickDevice(r.Nodes[0], s.Hardware.DeviceType); ok {
				fmt.Fprintf(&b, "; device %s %s (available_count %d)", deviceType(d), d.Name, d.AvailableCount)
			}
		}
		b.WriteString("\n")
	}
	m := &s.Model
	switch {
	case m.Cloud():
		fmt.Fprintf(&b, "  model %q: cloud endpoint %s", m.Name, m.URL)
		if m.Credential != "" {
			fmt.Fprintf(&b, ", credential %q (passed as $%s, never written)", m.Credential, CredentialEnv(m.Credential))
		}
		b.WriteString("; readiness checked (GET /v1/models) before submitting\n")
	default:
		fmt.Fprintf(&b, "  model %q: each task starts the server on a free port, waits until GET /v1/models answers, then loads it:\n    %s\n", m.Name, strings.Join(quoteArgs(bt.ServerArgv), " "))
	}
	if r.Dataset != nil {
		fmt.Fprintf(&b, "  prompts: %d from %s, sent in file order (request i sends prompt i mod %d) with max_tokens = its reference answer's length; input %d mean / %d max, output %d mean / %d max tokens (simulate uses the means)\n",
			r.Dataset.Prompts, strings.Join(s.Dataset.Files, ", "), r.Dataset.Prompts, r.Dataset.MeanInput, r.Dataset.MaxInput, r.Dataset.MeanOutput, r.Dataset.MaxOutput)
		if c := r.datasetOutputCap(); c > 0 {
			fmt.Fprintf(&b, "  output lengths capped at %d tokens ([configuration] max_output_tokens)\n", c)
		}
	} else {
		fmt.Fprintf(&b, "  prompts: %d input tokens, %d output tokens (ignore_eos)\n", r.InputTokens, r.OutputTokens)
	}
	if s.SLO.TTFT > 0 || s.SLO.TPOT > 0 || s.SLO.E2EL > 0 {
		fmt.Fprintf(&b, "  goodput SLOs: ttft %v, tpot %v, e2el %v (0 = none)\n", s.SLO.TTFT.D(), s.SLO.TPOT.D(), s.SLO.E2EL.D())
	}
	if r.Executor == "slurm" {
		fmt.Fprintf(&b, "  slurm: one array job, task i = level i; gpus %q, nodelist %q, partition %q\n", p.Slurm.GPUs, p.Slurm.Nodelist, p.Slurm.Partition)
	}
	b.WriteString("INDEX  TASK                      CONCURRENCY  REQUESTS\n")
	for _, t := range p.Tasks {
		fmt.Fprintf(&b, "%-6d %-25s %-12d %d\n", t.Index, t.Name, t.Config.Workload.Concurrency, t.Config.Workload.MaxRequests)
	}
	return b.String()
}

func quoteArgs(a []string) []string {
	out := make([]string, len(a))
	for i, s := range a {
		if s == "" || strings.ContainsAny(s, " \t\n'\"\\$`;&|<>(){}*?!#~") {
			out[i] = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		} else {
			out[i] = s
		}
	}
	return out
}
