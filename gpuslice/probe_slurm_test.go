package gpuslice

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/testgate"
)

// TestProbeNodesOnCluster probes the test cluster's nodes through srun with
// a stand-in for `gpuorch nodes probe --json` (a script answering for the
// node it runs on): Ready nodes take the probe's devices and driver, a node
// whose probe fails keeps Slurm's devices with the error as its note, and a
// node not Ready is left alone.
func TestProbeNodesOnCluster(t *testing.T) {
	testgate.Slurm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes, err := ClusterNodes(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for i, n := range nodes {
		byName[n.Hostname] = i
	}
	for _, h := range []string{"node1", "node2", "node3"} {
		if _, ok := byName[h]; !ok || nodes[byName[h]].Status != "Ready" {
			t.Fatalf("%s not Ready in the test cluster (test/slurm/up.sh brings all four up): %+v", h, nodes)
		}
	}
	nodes = []Node{nodes[byName["node1"]], nodes[byName["node2"]], nodes[byName["node3"]]}
	nodes[2].Status = "NotReady"
	slurmDevices := nodes[1].Devices
	bin := filepath.Join(t.TempDir(), "probe.sh")
	script := `#!/bin/sh
[ "$SLURMD_NODENAME" = node2 ] && { echo "no GPU here" >&2; exit 1; }
echo "{\"hostname\": \"$SLURMD_NODENAME\", \"status\": \"Ready\", \"driver_version\": \"550.1\", \"devices\": [{\"name\": \"NVIDIA A100-SXM4-80GB\", \"type\": \"gpu\", \"device_info\": {}, \"device_config\": {\"peak_fp16_TFLOPS\": null}, \"available_count\": 8}]}"
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	ProbeNodes(ctx, nil, nodes, bin, nil, &progress)
	if n := nodes[0]; n.Driver != "550.1" || len(n.Devices) != 1 || n.Devices[0].AvailableCount != 8 || n.Note != "" || n.Status != "Ready" {
		t.Errorf("probed node1: %+v", n)
	}
	if n := nodes[1]; !strings.HasPrefix(n.Note, "probe node2: ") || len(n.Devices) != len(slurmDevices) || n.Driver != "" {
		t.Errorf("node2 whose probe failed: %+v", n)
	}
	if n := nodes[2]; n.Driver != "" || n.Note != "" {
		t.Errorf("node3 (not Ready) was probed: %+v", n)
	}
	if want := "probing node1 (1/3)…\nprobing node2 (2/3)…\n"; progress.String() != want {
		t.Errorf("progress %q, want %q", progress.String(), want)
	}
}
