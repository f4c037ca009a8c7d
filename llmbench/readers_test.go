package llmbench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/limitio/limitiotest"
)

func TestReadersRefuseHostileFiles(t *testing.T) {
	for _, c := range limitiotest.Cases(t, limitio.Config, "bench.toml") {
		t.Run("spec/"+c.Name, func(t *testing.T) {
			_, err := LoadSpec(c.Path)
			limitiotest.Check(t, c, err)
		})
		t.Run("model file/"+c.Name, func(t *testing.T) {
			home := t.TempDir()
			c := limitiotest.At(t, c, filepath.Join(home, "models", "m.json"))
			_, err := workflowModel(home, map[string]any{"model_id": "m"})
			limitiotest.Check(t, c, err)
		})
		t.Run("bench models add/"+c.Name, func(t *testing.T) {
			_, err := (Registry{Home: t.TempDir()}).Add(t.Context(), Models, AddOptions{ID: "m", Args: []string{c.Path}})
			limitiotest.Check(t, c, err)
		})
		t.Run("credentials/"+c.Name, func(t *testing.T) {
			p := c.Path
			if c.Name == "/dev/zero" {
				// /dev/zero is readable by all: refused for its mode first;
				// a private link to it is refused for its kind.
				c = limitiotest.At(t, c, filepath.Join(t.TempDir(), "credentials.json"))
				p = c.Path
			} else if err := os.Chmod(p, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := (&Credentials{Path: p}).List()
			if c.Name == "/dev/zero" {
				if err == nil {
					t.Fatal("/dev/zero accepted as a credentials file")
				}
				return
			}
			limitiotest.Check(t, c, err)
		})
	}
	for _, c := range limitiotest.Cases(t, limitio.Dataset, "prompts.jsonl") {
		t.Run("dataset/"+c.Name, func(t *testing.T) {
			_, err := ResolveDataset(t.TempDir(), c.Path)
			limitiotest.Check(t, c, err)
		})
		t.Run("bench datasets add/"+c.Name, func(t *testing.T) {
			_, err := (Registry{Home: t.TempDir()}).Add(t.Context(), Datasets, AddOptions{ID: "d", Args: []string{c.Path}})
			limitiotest.Check(t, c, err)
		})
	}
	for _, c := range limitiotest.Cases(t, limitio.Record, "x.json") {
		t.Run("bench.json/"+c.Name, func(t *testing.T) {
			dir := t.TempDir()
			c := limitiotest.At(t, c, layout.Experiment(dir).BenchTask())
			_, err := ReadTaskInfo(dir)
			limitiotest.Check(t, c, err)
		})
		t.Run("registry entry/"+c.Name, func(t *testing.T) {
			home := t.TempDir()
			c := limitiotest.At(t, c, layout.Home(home).RegistryEntry(string(Models), "m"))
			_, err := (Registry{Home: home}).Get(Models, "m")
			limitiotest.Check(t, c, err)
		})
		t.Run("workflow/"+c.Name, func(t *testing.T) {
			home := t.TempDir()
			c := limitiotest.At(t, c, filepath.Join(WorkflowDir(home), "w1.json"))
			_, err := LoadWorkflow(home, "w1")
			limitiotest.Check(t, c, err)
		})
	}
}
