package llmbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/sbatch"
)

// RegistryKind names one of the registries the benchmark workflow's ids
// refer to: the seed's payloads name clusters, models and datasets by id
// (cluster_id, model_id, datset_ids).
type RegistryKind string

// The registries.
const (
	Clusters RegistryKind = "clusters"
	Models   RegistryKind = "models"
	Datasets RegistryKind = "datasets"
)

// RegistryKinds lists the registries.
var RegistryKinds = []RegistryKind{Clusters, Models, Datasets}

func (k RegistryKind) singular() string { return strings.TrimSuffix(string(k), "s") }

// Entry is one registered cluster, model or dataset, saved as
// $GPUORCH_HOME/registry/<kind>/<id>.json.
type Entry struct {
	Kind  RegistryKind `json:"kind"`
	ID    string       `json:"id"`
	Name  string       `json:"name,omitempty"`
	Added time.Time    `json:"added,omitzero"`

	// Cluster (clusters) is what gpuorch runs on: "local" (this machine,
	// the local executor) or the Slurm cluster's ClusterName.
	Cluster string `json:"cluster,omitempty"`
	// Nodes (clusters) maps a node name the payloads use to the name the
	// inventory has for it ("fl4u42" → "localhost").
	Nodes map[string]string `json:"nodes,omitempty"`
	// Model (models) is the model, as the spec's [model] table.
	Model *Model `json:"model,omitempty"`
	// Path (datasets) is the prompt file, absolute; Prompts its count when
	// it was registered.
	Path    string `json:"path,omitempty"`
	Prompts int    `json:"prompts,omitempty"`
}

// NodeName is the inventory's name for a node the payloads name: the
// cluster's mapping, or the name itself.
func (e *Entry) NodeName(name string) string {
	if h, ok := e.Nodes[name]; ok {
		return h
	}
	return name
}

// Label names the entry for people: its name, else its id.
func (e *Entry) Label() string {
	if e.Name != "" {
		return e.Name
	}
	return e.ID
}

// Registry holds the benchmark registries under Home ($GPUORCH_HOME).
type Registry struct {
	Home string
	// Inventory checks a cluster being added (nil: not checked).
	Inventory func(ctx context.Context, cluster string) ([]gpuslice.Node, error)
}

// AddOptions describe an entry to add.
type AddOptions struct {
	ID   string   // "" = a new UUID
	Name string   // for people
	Args []string // clusters: CLUSTER; models: MODEL.json; datasets: FILE
	// Nodes (clusters): "NAME=NODE", a node name the payloads use for an
	// inventory node.
	Nodes []string
}

// ErrUnknownID marks a lookup of an id no registry entry has.
var ErrUnknownID = errors.New("unknown id")

func (r Registry) dir(kind RegistryKind) string { return layout.Home(r.Home).Registry(string(kind)) }

func checkKind(kind RegistryKind) error {
	for _, k := range RegistryKinds {
		if k == kind {
			return nil
		}
	}
	return errkind.Invalidf("unknown registry %q (clusters, models or datasets)", kind)
}

// Add checks and saves a new entry. The id may be given (the seed's UUIDs)
// or is a new UUID; an id already registered is refused. A cluster must
// answer (its inventory lists every mapped node), a model must pass the
// spec's [model] checks, a dataset must parse as a prompt file. Errors are
// of kind errkind.ErrInvalid, or errkind.ErrUnavailable when Slurm could not
// be asked.
func (r Registry) Add(ctx context.Context, kind RegistryKind, o AddOptions) (*Entry, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	e := &Entry{Kind: kind, ID: o.ID, Name: o.Name, Added: time.Now().UTC()}
	if e.ID == "" {
		e.ID = newWorkflowID()
	}
	if !workflowIDRE.MatchString(e.ID) {
		return nil, errkind.Invalidf("%s id %q: want 1 to 64 letters, digits, '.', '_' or '-' (a UUID fits)", kind.singular(), o.ID)
	}
	if _, err := os.Stat(layout.Home(r.Home).RegistryEntry(string(kind), e.ID)); err == nil {
		return nil, errkind.Invalidf("%s %s is already registered (gpuorch bench %s remove %s first)", kind.singular(), e.ID, kind, e.ID)
	}
	if len(o.Nodes) > 0 && kind != Clusters {
		return nil, errkind.Invalidf("--node is for clusters")
	}
	if len(o.Args) != 1 {
		return nil, errkind.Invalidf("bench %s add: want one argument (%s)", kind, map[RegistryKind]string{
			Clusters: `"local" or the Slurm cluster's name`, Models: "MODEL.json: the model as the spec's [model] keys", Datasets: "FILE: a ShareGPT JSON or JSONL prompt file"}[kind])
	}
	arg := o.Args[0]
	var err error
	switch kind {
	case Clusters:
		err = r.addCluster(ctx, e, arg, o.Nodes)
	case Models:
		err = addModel(e, arg)
	case Datasets:
		err = addDataset(e, arg)
	}
	if err != nil {
		if errors.Is(err, errkind.ErrUnavailable) {
			return nil, err
		}
		return nil, errkind.Invalid(err)
	}
	if err := os.MkdirAll(r.dir(kind), 0o755); err != nil {
		return nil, err
	}
	return e, atomicfile.WriteJSON(layout.Home(r.Home).RegistryEntry(string(kind), e.ID), e, 0o644)
}

func (r Registry) addCluster(ctx context.Context, e *Entry, cluster string, nodes []string) error {
	e.Cluster = cluster
	var have []string
	if r.Inventory != nil {
		nodes, err := r.Inventory(ctx, cluster)
		if err != nil {
			return fmt.Errorf("cluster %q: %w", cluster, err)
		}
		for _, n := range nodes {
			have = append(have, n.Hostname)
		}
	}
	for _, n := range nodes {
		name, host, ok := strings.Cut(n, "=")
		if !ok || name == "" || host == "" {
			return fmt.Errorf("--node %q: want NAME=NODE (a node name the payloads use = the inventory's name for it)", n)
		}
		if r.Inventory != nil && !contains(have, host) {
			return fmt.Errorf("--node %s: no node %q in cluster %q (have: %s)", n, host, cluster, strings.Join(have, ", "))
		}
		if e.Nodes == nil {
			e.Nodes = map[string]string{}
		}
		e.Nodes[name] = host
	}
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func addModel(e *Entry, file string) error {
	b, err := limitio.ReadFile(file, limitio.Config.As("model file"))
	if err != nil {
		return err
	}
	m, err := decodeModel(b, e.ID)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	e.Model = m
	if e.Name == "" {
		e.Name = m.Name
	}
	return nil
}

// decodeModel reads a model object strictly and checks it as the spec's
// [model] table is checked; its name defaults to id.
func decodeModel(b []byte, id string) (*Model, error) {
	var m Model
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("model %q: %v", id, strings.TrimPrefix(err.Error(), "json: "))
	}
	if m.Name == "" {
		m.Name = id
	}
	if key, err := m.check(); err != nil {
		return nil, fmt.Errorf("model %q: %s: %w", id, key, err)
	}
	return &m, nil
}

func addDataset(e *Entry, file string) error {
	ps, err := LoadDataset(file)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	e.Path, e.Prompts = abs, len(ps)
	if e.Name == "" {
		e.Name = filepath.Base(file)
	}
	return nil
}

// Get reads an entry; an id not registered is an error wrapping
// ErrUnknownID that says how to register it.
func (r Registry) Get(kind RegistryKind, id string) (*Entry, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	unknown := fmt.Errorf("%w: no %s %s registered (%s …)", ErrUnknownID, kind.singular(), clip.Quote(id), sbatch.CommandLine("gpuorch", "bench", string(kind), "add", "--id", id))
	if !workflowIDRE.MatchString(id) {
		return nil, unknown
	}
	var e Entry
	if err := readJSON(layout.Home(r.Home).RegistryEntry(string(kind), id), &e); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, unknown
		}
		return nil, err
	}
	return &e, nil
}

// List returns a registry's entries, by name then id.
func (r Registry) List(kind RegistryKind) ([]Entry, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(r.dir(kind))
	if errors.Is(err, fs.ErrNotExist) {
		return []Entry{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []Entry{}
	for _, de := range ents {
		id, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok || de.IsDir() {
			continue
		}
		e, err := r.Get(kind, id)
		if err != nil {
			return nil, err
		}
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Label() != out[j].Label() {
			return out[i].Label() < out[j].Label()
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Remove deletes an entry.
func (r Registry) Remove(kind RegistryKind, id string) error {
	if _, err := r.Get(kind, id); err != nil {
		return errkind.Invalid(err)
	}
	return os.Remove(layout.Home(r.Home).RegistryEntry(string(kind), id))
}

// ResolveCluster is the cluster a spec or payload names: a registered
// cluster by id, else one registered under that name, else the name itself
// ("local" or a Slurm cluster's name, unregistered).
func (r Registry) ResolveCluster(idOrName string) (*Entry, error) {
	e, err := r.Get(Clusters, idOrName)
	if err == nil {
		return e, nil
	}
	if !errors.Is(err, ErrUnknownID) {
		return nil, err
	}
	all, err := r.List(Clusters)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if all[i].Name == idOrName {
			return &all[i], nil
		}
	}
	return &Entry{Kind: Clusters, Cluster: idOrName}, nil
}
