package simserver

import (
	"testing"

	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/limitio/limitiotest"
)

func TestLoadFileRefusesHostileFiles(t *testing.T) {
	for _, c := range limitiotest.Cases(t, limitio.Config, "sim.toml") {
		t.Run(c.Name, func(t *testing.T) {
			_, err := LoadFile(c.Path)
			limitiotest.Check(t, c, err)
		})
	}
}
