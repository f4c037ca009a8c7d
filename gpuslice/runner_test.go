package gpuslice

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sbatch"
)

// TestSlurmUnreachable points every gpuslice call into Slurm at a closed
// controller port: each fails with errkind.ErrUnavailable, saying what it
// was doing and quoting Slurm.
func TestSlurmUnreachable(t *testing.T) {
	testgate.Slurm(t)
	r := sbatch.Runner{Env: []string{testgate.SlurmUnreachableConf(t)}, Attempts: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := mustModel(t, testModel)
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"ClusterNodes", func() error { _, err := ClusterNodes(ctx, r, nil); return err }, "list nodes: "},
		{"ProbeNode", func() error { _, err := ProbeNode(ctx, r, "node1", "/bin/true"); return err }, "probe node1: srun: "},
		{"Admin.Plan", func() error { _, err := (&Admin{Run: r}).Plan(ctx, m); return err }, "read partitions: "},
		{"OSSignaller.Requeue", func() error { return OSSignaller{Run: r}.Requeue(ctx, "1") }, "scontrol: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var se *sbatch.Error
			if !errors.Is(err, errkind.ErrUnavailable) || !errors.As(err, &se) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("err = %v, want an unavailable *sbatch.Error starting %q", err, tt.want)
			}
		})
	}
}
