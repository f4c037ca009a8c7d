package nvmlx

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/internal/errkind"
)

func TestNewEnforcer(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{gpuslice.EnvJobID: "42", gpuslice.EnvNodeName: "node7", gpuslice.EnvVRAMLimit: "1Gi"}
	getenv := func(k string) string { return env[k] }
	metrics := filepath.Join(dir, "m", "violations.lp")

	srv := dgxa100.New()
	wire(srv)
	e, err := NewEnforcer(srv, gpuslice.EnforcerOptions{Metrics: metrics, DryRun: true, Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	if e.GPUs() != 8 || e.Sink == nil || e.Config.Node != "node7" || !e.Config.DryRun {
		t.Errorf("enforcer: %d GPUs, sink %v, config %+v", e.GPUs(), e.Sink, e.Config)
	}
	if l, ok := e.Limits.Limit("42"); !ok || l.VRAM != gpuslice.GiB {
		t.Errorf("job 42's limit: %+v %v", l, ok)
	}
	if _, ok := e.Procs.(*gpuslice.ProcFS); !ok {
		t.Errorf("process table %T, want /proc", e.Procs)
	}
	if _, ok := e.Sig.(gpuslice.OSSignaller); !ok {
		t.Errorf("signaller %T, want the OS's", e.Sig)
	}
	if evs, err := e.Poll(context.Background()); err != nil || len(evs) != 0 {
		t.Errorf("poll of idle GPUs: %v %v", evs, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(metrics); err != nil {
		t.Errorf("metrics file: %v", err)
	}

	// Bad options are bad input, found before NVML is touched; a node
	// without NVML is an unavailable service.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []struct {
		name  string
		lib   func() Lib
		o     gpuslice.EnforcerOptions
		kind  error
		want  string
		calls []string
	}{
		{"no job", func() Lib { return &countingLib{} }, gpuslice.EnforcerOptions{Getenv: func(string) string { return "" }},
			errkind.ErrInvalid, "no job", nil},
		{"no NVML", func() Lib { return &countingLib{} }, gpuslice.EnforcerOptions{LimitsDir: dir},
			errkind.ErrUnavailable, "no NVIDIA GPU on this node, nothing to enforce: NVML unavailable", []string{"Init"}},
		{"bad metrics file", func() Lib { s := dgxa100.New(); wire(s); return s }, gpuslice.EnforcerOptions{LimitsDir: dir, Metrics: filepath.Join(file, "m.lp")},
			errkind.ErrInvalid, "open metrics file", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			lib := c.lib()
			_, err := NewEnforcer(lib, c.o)
			if err == nil || !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %v saying %q", err, c.kind, c.want)
			}
			if cl, ok := lib.(*countingLib); ok && strings.Join(cl.calls, ",") != strings.Join(c.calls, ",") {
				t.Errorf("NVML calls %v, want %v", cl.calls, c.calls)
			}
		})
	}
}
