package orchestrator

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/limitio/limitiotest"
)

// Every file the orchestrator reads is limited (internal/limitio): a spec
// or an experiment's records over the size or line limit, or /dev/zero,
// end at once with an error naming the file and the limit.
func TestReadersRefuseHostileFiles(t *testing.T) {
	for _, c := range limitiotest.Cases(t, limitio.Config, "spec.toml") {
		t.Run("spec/"+c.Name, func(t *testing.T) {
			_, err := LoadSpec(c.Path, nil)
			limitiotest.Check(t, c, err)
			_, _, err = LoadTraining(c.Path, nil)
			limitiotest.Check(t, c, err)
		})
	}
	for _, file := range []string{"plan.json", "state.json"} {
		for _, c := range limitiotest.Cases(t, limitio.Record, file) {
			t.Run(file+"/"+c.Name, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "exp")
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				for _, f := range []string{"plan.json", "state.json"} {
					p := filepath.Join(dir, f)
					if f == file {
						c = limitiotest.At(t, c, p)
					} else if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				_, err := Open(t.TempDir(), dir)
				limitiotest.Check(t, c, err)
				if file == "state.json" {
					_, err := readState(dir)
					limitiotest.Check(t, c, err)
				}
			})
		}
	}
}
