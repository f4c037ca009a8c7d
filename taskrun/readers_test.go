package taskrun

import (
	"testing"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/limitio/limitiotest"
)

func TestReadersRefuseHostileFiles(t *testing.T) {
	for _, c := range limitiotest.Cases(t, limitio.Record, "manifest.json") {
		t.Run("manifest/"+c.Name, func(t *testing.T) {
			_, err := ReadManifest(c.Path)
			limitiotest.Check(t, c, err)
		})
	}
	for _, c := range limitiotest.Cases(t, limitio.Metrics, "requests.jsonl") {
		t.Run("requests/"+c.Name, func(t *testing.T) {
			_, err := ReadRequestRows(t.Context(), c.Path)
			limitiotest.Check(t, c, err)
		})
		t.Run("snapshots/"+c.Name, func(t *testing.T) {
			dir := layout.Task(t.TempDir())
			limitiotest.At(t, c, dir.Snapshots())
			if _, ok := LastSnapshot(dir); ok {
				t.Fatal("a snapshot from a hostile file")
			}
		})
	}
}
