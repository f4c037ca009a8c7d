package sif_test

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gpuorch/gpuorch/internal/errkind"

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

// An image path must be a regular file: /dev/zero, a directory or a named
// pipe is bad input, refused before it is opened (opening a pipe would
// wait for a writer).
func TestImagePathMustBeARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "img.sif")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/dev/zero", dir, fifo} {
		_, err := sif.Inspect(t.Context(), p, sif.InspectOptions{})
		if !errors.Is(err, errkind.ErrInvalid) || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("inspect %s: %v", p, err)
		}
		if _, err := sif.Validate(t.Context(), p, sif.ValidateOptions{}); !errors.Is(err, errkind.ErrInvalid) {
			t.Errorf("validate %s: %v", p, err)
		}
		if _, err := sif.Verify(t.Context(), p, nil); !errors.Is(err, errkind.ErrInvalid) {
			t.Errorf("verify %s: %v", p, err)
		}
	}
}
