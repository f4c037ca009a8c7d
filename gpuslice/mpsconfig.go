package gpuslice

import (
	_ "embed"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/gpuorch/gpuorch/internal/tomlstrict"
	"github.com/gpuorch/gpuorch/sbatch"
)

// MPSConfig is the pools file's [mps] table: whether slices with a compute
// limit run under a per-job MPS control daemon, which the Slurm prolog and
// epilog hook (mps/hook.sh, installed by admin apply) start and stop.
type MPSConfig struct {
	// Enabled makes every slice with a tflops limit carry its MPS request
	// (the job comment token gpuorch-mps=…) and check the prolog's outcome.
	Enabled bool `toml:"enabled"`
	// Hook is where admin apply installs the hook; slurm.conf's Prolog and
	// Epilog must run it.
	Hook string `toml:"hook"`
	// Dir holds the per-job directories DIR/<jobid>/{pipe,log}.
	Dir string `toml:"dir"`
	// Control is the MPS control program on the nodes.
	Control string `toml:"control"`
	// Gpuorch is gpuorch's path on the nodes (the hook runs `gpuorch slice
	// mps prolog|epilog`); "" means the binary that runs admin apply.
	Gpuorch string `toml:"gpuorch"`
}

// Defaults of [mps].
const (
	DefaultMPSHook    = "/etc/slurm/gpuorch-mps-hook"
	DefaultMPSDir     = "/run/gpuorch-mps"
	DefaultMPSControl = "/usr/bin/nvidia-cuda-mps-control"
)

// hookPath allows what is safe to write into a shell script and a
// slurm.conf line unquoted: absolute paths of plain characters.
var hookPath = regexp.MustCompile(`^/[A-Za-z0-9/._+-]*$`)

// resolveMPS fills in [mps] defaults and checks its paths, at their lines.
func (m *Model) resolveMPS(d *tomlstrict.Doc) error {
	c := &m.MPS
	for _, f := range []struct {
		key string
		v   *string
		def string
	}{{"hook", &c.Hook, DefaultMPSHook}, {"dir", &c.Dir, DefaultMPSDir}, {"control", &c.Control, DefaultMPSControl}, {"gpuorch", &c.Gpuorch, ""}} {
		if *f.v == "" {
			*f.v = f.def
			continue
		}
		if !hookPath.MatchString(*f.v) || strings.Contains(*f.v, "/../") || strings.HasSuffix(*f.v, "/..") {
			return d.Errorf([]string{"mps", f.key}, "mps.%s %q: want an absolute path of letters, digits and / . _ + -", f.key, *f.v)
		}
	}
	if c.Dir == "/" {
		return d.Errorf([]string{"mps", "dir"}, "mps.dir %q: the epilog removes job directories under it; give it a directory of its own", c.Dir)
	}
	return nil
}

//go:embed mps/hook.sh
var hookTemplate string

// MPSHook is the hook script for the model's [mps] paths (gpuorch: the
// path to run when [mps] gpuorch is unset). It is mps/hook.sh with its three
// path assignments filled in.
func (m *Model) MPSHook(gpuorch string) string {
	if m.MPS.Gpuorch != "" {
		gpuorch = m.MPS.Gpuorch
	}
	s := hookTemplate
	for _, kv := range [][2]string{{"GPUORCH", gpuorch}, {"MPS_DIR", m.MPS.Dir}, {"MPS_CONTROL", m.MPS.Control}} {
		re := regexp.MustCompile(`(?m)^` + kv[0] + `=.*$`)
		s = re.ReplaceAllLiteralString(s, kv[0]+"="+sbatch.Quote(kv[1]))
	}
	return s
}

// MPSRequest is what a slice asks the MPS prolog for: the active thread
// percentage and the pinned device memory limit per GPU, set on the job's
// control daemon. It travels in the job's comment as the token
// gpuorch-mps=PCT or gpuorch-mps=PCT,MIBM, which the prolog reads from
// SLURM_JOB_COMMENT.
type MPSRequest struct {
	ThreadPercent int    `json:"active_thread_percentage"`
	PinnedMiB     uint64 `json:"pinned_mem_limit_mib,omitempty"` // 0: none
	// Dir is the [mps] dir: the job script reads the prolog's outcome
	// from Dir/<jobid>.
	Dir string `json:"dir"`
}

// MPSTokenPrefix starts the job-comment token of an MPS request.
const MPSTokenPrefix = "gpuorch-mps="

// Token is the job-comment token of r.
func (r MPSRequest) Token() string {
	t := MPSTokenPrefix + strconv.Itoa(r.ThreadPercent)
	if r.PinnedMiB > 0 {
		t += "," + strconv.FormatUint(r.PinnedMiB, 10) + "M"
	}
	return t
}

// ParseMPSComment finds the MPS request token in a job comment; ok is false
// when there is none.
func ParseMPSComment(comment string) (r MPSRequest, ok bool, err error) {
	for _, w := range strings.Fields(comment) {
		v, found := strings.CutPrefix(w, MPSTokenPrefix)
		if !found {
			continue
		}
		pct, mem, hasMem := strings.Cut(v, ",")
		n, err := strconv.Atoi(pct)
		if err != nil || n < 1 || n > 100 {
			return r, true, fmt.Errorf("job comment %q: thread percentage %q: want 1..100", w, pct)
		}
		r.ThreadPercent = n
		if hasMem {
			mib, err := strconv.ParseUint(strings.TrimSuffix(mem, "M"), 10, 64)
			if err != nil || !strings.HasSuffix(mem, "M") || mib == 0 {
				return r, true, fmt.Errorf("job comment %q: pinned memory %q: want MiB such as 3072M", w, mem)
			}
			r.PinnedMiB = mib
		}
		return r, true, nil
	}
	return r, false, nil
}
