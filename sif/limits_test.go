package sif_test

import (
	"testing"

	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/limitio/limitiotest"
	"github.com/gpuorch/gpuorch/sif"
)

// `gpuorch image verify --key /dev/zero` used to read the device until
// memory ran out.
func TestReadKeyRingRefusesHostileFiles(t *testing.T) {
	for _, c := range limitiotest.Cases(t, limitio.Config, "team.asc") {
		t.Run(c.Name, func(t *testing.T) {
			_, err := sif.ReadKeyRing(c.Path)
			limitiotest.Check(t, c, err)
		})
	}
}
