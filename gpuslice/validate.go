package gpuslice

import (
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/tomlstrict"
	"github.com/gpuorch/gpuorch/sbatch"
)

// validate checks a resolved model as a whole, once its defaults are set:
// numbers that would plan wrong shares, the one file apply writes, nodes
// and profiles against each other. It is the one place for such checks
// (resolve checks each key alone); each refuses with a keyError or a
// tomlstrict.Error, at the line of the key at fault, and runs in file order
// so that the first problem in the file is the one reported.
func (m *Model) validate(d *tomlstrict.Doc) error {
	for _, check := range []func(*tomlstrict.Doc) error{
		m.checkGPUModels,
		m.checkIncludeFile,
		m.checkPoolNodes,
		m.checkProfileTFLOPS,
		m.checkProfileLimits,
	} {
		if err := check(d); err != nil {
			return err
		}
	}
	return nil
}

// tableKeys lists the keys of the table at path of d, in file order.
func tableKeys(d *tomlstrict.Doc, path ...string) []string {
	var tbl map[string]any = d.Tree
	for _, k := range path {
		tbl, _ = tbl[k].(map[string]any)
	}
	return d.Keys(path, tbl)
}

// checkGPUModels: a peak written in [gpu_models] must be a positive,
// finite number of TFLOPS (NaN would plan shards from the table's peak
// without a word, +Inf plan every slice as 0 shards).
func (m *Model) checkGPUModels(d *tomlstrict.Doc) error {
	models, _ := d.Tree["gpu_models"].(map[string]any)
	for _, name := range tableKeys(d, "gpu_models") {
		tbl, _ := models[name].(map[string]any)
		if _, ok := tbl["peak_fp16_tflops"]; !ok {
			continue
		}
		if v := m.GPUModels[name].PeakFP16; !(v > 0) || math.IsInf(v, 0) {
			path := []string{"gpu_models", name, "peak_fp16_tflops"}
			return atKey(path, "%s %g: want a positive number of TFLOPS", tomlstrict.Dotted(path), v)
		}
	}
	return nil
}

// slurmConfDir is Slurm's configuration directory: where $SLURM_CONF puts
// slurm.conf, else /etc/slurm.
func slurmConfDir() string {
	if c := os.Getenv("SLURM_CONF"); c != "" {
		if abs, err := filepath.Abs(c); err == nil {
			return filepath.Dir(abs)
		}
	}
	return filepath.Dir(DefaultIncludeFile)
}

// slurmOwnFiles are configuration files Slurm (22.05) reads on its own: an
// include file must never be one of them.
var slurmOwnFiles = map[string]bool{
	"slurm.conf": true, "slurmdbd.conf": true, "gres.conf": true, "cgroup.conf": true,
	"cgroup_allowed_devices_file.conf": true, "topology.conf": true, "plugstack.conf": true,
	"acct_gather.conf": true, "burst_buffer.conf": true, "job_container.conf": true,
	"knl_cray.conf": true, "knl_generic.conf": true, "mpi.conf": true, "oci.conf": true,
	"helpers.conf": true, "ext_sensors.conf": true, "scrun.conf": true,
}

// checkIncludeFile: apply, as root, rewrites slurm.include_file; it must be
// a .conf file of gpuorch's own directly in Slurm's configuration
// directory, never a file elsewhere (/etc/passwd) or one of Slurm's.
func (m *Model) checkIncludeFile(*tomlstrict.Doc) error {
	f, dir := m.Slurm.IncludeFile, slurmConfDir()
	path := []string{"slurm", "include_file"}
	if !filepath.IsAbs(f) || filepath.Clean(f) != f || filepath.Dir(f) != dir || !strings.HasSuffix(f, ".conf") || strings.HasPrefix(filepath.Base(f), ".") {
		return atKey(path, "slurm.include_file %s: must be a file directly in Slurm's configuration directory %s (beside slurm.conf; SLURM_CONF says where that is), which apply rewrites as root, named *.conf",
			clip.Quote(f), clip.String(dir))
	}
	if base := filepath.Base(f); slurmOwnFiles[base] {
		return atKey(path, "slurm.include_file %s: is Slurm's own %s: name a file of gpuorch's own, such as %s",
			clip.Quote(f), base, clip.String(filepath.Join(dir, filepath.Base(DefaultIncludeFile))))
	}
	return nil
}

// checkPoolNodes: every pool's host list expands (as Slurm would) and no
// node is in two pools: its GPUs would be counted, and partitioned, twice.
func (m *Model) checkPoolNodes(d *tomlstrict.Doc) error {
	owner := map[string]string{}
	for _, name := range tableKeys(d, "pools") {
		p := m.Pools[name]
		if p == nil {
			continue
		}
		path := []string{"pools", name, "nodes"}
		hosts, err := sbatch.ExpandHostlist(p.Nodes)
		if err != nil {
			return atKey(path, "pools.%s.nodes %s: %v", name, clip.Quote(p.Nodes), err)
		}
		for _, h := range hosts {
			if other, ok := owner[h]; ok && other != name {
				return atKey(path, "pools.%s.nodes %s: %s is in pools.%s too (line %d): a node belongs to one pool",
					name, clip.Quote(p.Nodes), clip.String(h), other, d.Line([]string{"pools", other, "nodes"}))
			}
			owner[h] = name
		}
	}
	return nil
}

// checkProfileLimits: a profile's request must not exceed its limit, per
// resource, where both are given (Resolve fills in the other).
func (m *Model) checkProfileLimits(d *tomlstrict.Doc) error {
	for _, name := range tableKeys(d, "profiles") {
		pr := m.Profiles[name]
		if pr == nil {
			continue
		}
		req, lim := pr.Requests, pr.Limits
		switch {
		case req.TFLOPS > 0 && lim.TFLOPS > 0 && req.TFLOPS > lim.TFLOPS:
			return atKey([]string{"profiles", name, "requests", "tflops"}, "profiles.%s.requests.tflops %g is above profiles.%s.limits.tflops %g: a request cannot exceed its limit",
				name, req.TFLOPS, name, lim.TFLOPS)
		case req.VRAM > 0 && lim.VRAM > 0 && req.VRAM > lim.VRAM:
			return atKey([]string{"profiles", name, "requests", "vram"}, "profiles.%s.requests.vram %s is above profiles.%s.limits.vram %s: a request cannot exceed its limit",
				name, req.VRAM, name, lim.VRAM)
		}
	}
	return nil
}
