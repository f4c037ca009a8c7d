package results

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/limitio/limitiotest"
)

func TestReadersRefuseHostileFiles(t *testing.T) {
	for _, c := range limitiotest.Cases(t, limitio.Config, "config.toml") {
		t.Run("config/"+c.Name, func(t *testing.T) {
			env := map[string]string{"GPUORCH_CONFIG": c.Path}
			_, err := LoadInfluxConfig(func(k string) string { return env[k] })
			limitiotest.Check(t, c, err)
		})
	}
	for _, c := range limitiotest.Cases(t, limitio.Small, "token") {
		t.Run("token file/"+c.Name, func(t *testing.T) {
			if c.Path != "/dev/zero" {
				if err := os.Chmod(c.Path, 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				// /dev/zero is readable by all: refused for its mode
				// before its kind; a private link to it must still be.
				c = limitiotest.At(t, c, filepath.Join(t.TempDir(), "token"))
			}
			_, err := ReadTokenFile(c.Path)
			if c.Name == "/dev/zero" {
				if err == nil {
					t.Fatal("/dev/zero accepted as a token file")
				}
				return
			}
			limitiotest.Check(t, c, err)
		})
	}
	for _, c := range limitiotest.Cases(t, limitio.Metrics, "metrics.lp") {
		t.Run("metrics/"+c.Name, func(t *testing.T) {
			err := ReadLineFile(c.Path, "", func(Point) {}, func(*LineError) {})
			limitiotest.Check(t, c, err)
			dir := t.TempDir()
			c := limitiotest.At(t, c, filepath.Join(dir, "tasks", "0", "metrics.lp"))
			_, err = (&LocalStore{Dirs: []string{dir}}).Query(t.Context(), Query{})
			limitiotest.Check(t, c, err)
			_, err = PushFile(t.Context(), InfluxConfig{URL: "http://127.0.0.1:1"}, c.Path)
			limitiotest.Check(t, c, err)
		})
		t.Run("spool/"+c.Name, func(t *testing.T) {
			dir := t.TempDir()
			c := limitiotest.At(t, c, filepath.Join(dir, "seg-0000000000000001.lp"))
			_, err := OpenSpool(dir)
			limitiotest.Check(t, c, err)
		})
	}
}
