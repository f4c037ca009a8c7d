package llmbench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

func TestRegistry(t *testing.T) {
	home := t.TempDir()
	reg := Registry{Home: home, Inventory: localInventory}
	ctx := context.Background()
	e, err := reg.Add(ctx, Clusters, AddOptions{Name: "lab", Args: []string{"local"}, Nodes: []string{"fl4u42=localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if !uuidRE.MatchString(e.ID) || e.Cluster != "local" || e.NodeName("fl4u42") != "localhost" || e.NodeName("other") != "other" {
		t.Errorf("entry = %+v", e)
	}
	if _, err := os.Stat(filepath.Join(home, "registry", "clusters", e.ID+".json")); err != nil {
		t.Errorf("not saved where layout says: %v", err)
	}
	for _, name := range []string{e.ID, "lab"} {
		if got, err := reg.ResolveCluster(name); err != nil || got.ID != e.ID {
			t.Errorf("ResolveCluster(%s) = %+v, %v", name, got, err)
		}
	}
	if got, err := reg.ResolveCluster("ci"); err != nil || got.ID != "" || got.Cluster != "ci" {
		t.Errorf("an unregistered name: %+v, %v", got, err)
	}
	mf := filepath.Join(t.TempDir(), "m.json")
	for _, tc := range []struct {
		name string
		kind RegistryKind
		o    AddOptions
		file string // model file content
		want string
	}{
		{"same id twice", Clusters, AddOptions{ID: e.ID, Args: []string{"local"}}, "", "is already registered"},
		{"bad id", Clusters, AddOptions{ID: "../x", Args: []string{"local"}}, "", `cluster id "../x": want 1 to 64 letters`},
		{"unknown cluster", Clusters, AddOptions{Args: []string{"nosuch"}}, "", `cluster "nosuch": unknown cluster`},
		{"unknown node", Clusters, AddOptions{Args: []string{"local"}, Nodes: []string{"a=gpu9"}}, "", `no node "gpu9" in cluster "local" (have: localhost)`},
		{"node without =", Clusters, AddOptions{Args: []string{"local"}, Nodes: []string{"fl4u42"}}, "", "want NAME=NODE"},
		{"node for a model", Models, AddOptions{Args: []string{mf}, Nodes: []string{"a=b"}}, `{"name": "m", "url": "http://h"}`, "--node is for clusters"},
		{"two arguments", Datasets, AddOptions{Args: []string{"a", "b"}}, "", "want one argument (FILE"},
		{"model with two kinds", Models, AddOptions{Args: []string{mf}}, `{"name": "m", "url": "http://h", "command": ["x"]}`, "model: give exactly one of command"},
		{"model unknown key", Models, AddOptions{Args: []string{mf}}, `{"name": "m", "urll": "http://h"}`, `unknown field "urll"`},
		{"bad dataset", Datasets, AddOptions{Args: []string{mf}}, `[]`, "no prompt with an answer"},
		{"unknown registry", "gpus", AddOptions{Args: []string{"x"}}, "", `unknown registry "gpus"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(mf, []byte(tc.file), 0o644)
			_, err := reg.Add(ctx, tc.kind, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errkind.ErrInvalid) {
				t.Fatalf("err = %v, want %q (invalid)", err, tc.want)
			}
		})
	}
	os.WriteFile(mf, []byte(`{"url": "http://h:8000/v1", "arch": "llama-2-7b"}`), 0o644)
	m, err := reg.Add(ctx, Models, AddOptions{ID: seedModel, Args: []string{mf}})
	if err != nil || m.Model.Name != seedModel || m.Name != seedModel {
		t.Fatalf("model: %+v %v", m, err)
	}
	d, err := reg.Add(ctx, Datasets, AddOptions{ID: seedDataset, Args: []string{"../examples/datasets/sharegpt-mini.jsonl"}})
	if err != nil || d.Prompts != 7 || !filepath.IsAbs(d.Path) {
		t.Fatalf("dataset: %+v %v", d, err)
	}
	for kind, n := range map[RegistryKind]int{Clusters: 1, Models: 1, Datasets: 1} {
		if l, err := reg.List(kind); err != nil || len(l) != n {
			t.Errorf("list %s: %v %v", kind, l, err)
		}
	}
	if err := reg.Remove(Models, seedModel); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Get(Models, seedModel); !errors.Is(err, ErrUnknownID) || !strings.Contains(err.Error(), "gpuorch bench models add --id "+seedModel) {
		t.Errorf("after remove: %v", err)
	}
	if err := reg.Remove(Models, seedModel); err == nil {
		t.Error("removing twice succeeded")
	}
	// The legacy places still resolve: $GPUORCH_HOME/models/<id>.json.
	os.MkdirAll(filepath.Join(home, "models"), 0o755)
	os.WriteFile(filepath.Join(home, "models", "old.json"), []byte(`{"name": "old", "url": "http://h"}`), 0o644)
	if m, err := workflowModel(home, map[string]any{"model_id": "old"}); err != nil || m.Name != "old" {
		t.Errorf("legacy model file: %+v %v", m, err)
	}
}
