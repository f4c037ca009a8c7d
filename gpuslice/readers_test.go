package gpuslice

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/limitio/limitiotest"
)

func TestReadersRefuseHostileFiles(t *testing.T) {
	for _, c := range limitiotest.Cases(t, limitio.Config, "pools.toml") {
		t.Run("pools/"+c.Name, func(t *testing.T) {
			_, err := LoadModel(c.Path)
			limitiotest.Check(t, c, err)
		})
	}
	// A job writes its limits file; the node daemon, as root, reads it: a
	// file over the limits, or a link to /dev/zero, is a bad limits file.
	for _, c := range limitiotest.Cases(t, limitio.Small, "limits") {
		t.Run("limits dir/"+c.Name, func(t *testing.T) {
			dir := t.TempDir()
			limitiotest.At(t, c, filepath.Join(dir, "1234"))
			d := &DirLimits{Dir: dir}
			if _, ok := d.Limit("1234"); ok {
				t.Fatal("a hostile limits file was accepted")
			}
		})
	}
	// The include file the model names (admin reads it before rewriting it).
	for _, c := range limitiotest.Cases(t, limitio.Config, "gpuorch-pools.conf") {
		t.Run("include file/"+c.Name, func(t *testing.T) {
			m := &Model{}
			m.Slurm.IncludeFile = c.Path
			_, err := (&Admin{Run: emptyRunner{}}).ReadState(t.Context(), m)
			limitiotest.Check(t, c, err)
		})
	}
}

// emptyRunner answers every Slurm command with nothing.
type emptyRunner struct{}

func (emptyRunner) Run(context.Context, string, ...string) ([]byte, error) { return nil, nil }
