package gpuslice

import (
	"context"
	"fmt"
	"io"
)

// ProbeNodes runs `BINARY nodes probe` (ProbeNode) on every Ready node and
// puts what NVML sees there in place of Slurm's view of its devices: the
// devices, driver, CUDA version and note change, Slurm's state stays. A node
// that cannot be probed keeps Slurm's devices, with the error as its note.
// Each probe is announced on progress, if not nil.
func ProbeNodes(ctx context.Context, r Runner, nodes []Node, binary string, srunArgs []string, progress io.Writer) {
	for i := range nodes {
		n := &nodes[i]
		if n.Status != "Ready" {
			continue
		}
		if progress != nil {
			fmt.Fprintf(progress, "probing %s (%d/%d)…\n", n.Hostname, i+1, len(nodes))
		}
		p, err := ProbeNode(ctx, r, n.Hostname, binary, srunArgs...)
		if err != nil {
			n.Note = err.Error()
			continue
		}
		n.Devices, n.Driver, n.CUDA, n.Note = p.Devices, p.Driver, p.CUDA, p.Note
	}
}
