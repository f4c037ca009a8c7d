//go:build spank

// Command spank is gpuorch's SPANK plugin, built with
//
//	go build -tags spank -buildmode=c-shared -o gpuorch_spank.so ./gpuslice/spank
//
// against libslurm-dev of the cluster's Slurm major.minor. It adds
// --gpu-slice=PROFILE and --gpu-qos=LEVEL to sbatch and srun; see
// docs/gpu-slicing.md. The build tag keeps it out of `go build ./...`
// (it needs slurm/spank.h).
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"sort"
	"strings"

	"github.com/gpuorch/gpuorch/gpuslice"
)

// gpuorchSliceEnv resolves profile (and qos, if not empty) in the pools
// file and returns the slice's environment as NAME=VALUE lines, plus
// GPUORCH_SLURM_OPTIONS with the sbatch options the slice needs. The
// result (or *err) is malloc'd for the C side to free.
//
//export gpuorchSliceEnv
func gpuorchSliceEnv(pools, profile, qos *C.char, errOut **C.char) *C.char {
	env, err := sliceEnv(C.GoString(pools), C.GoString(profile), C.GoString(qos))
	if err != nil {
		*errOut = C.CString(err.Error())
		return nil
	}
	return C.CString(env)
}

func sliceEnv(pools, profile, qos string) (string, error) {
	m, err := gpuslice.LoadModel(pools)
	if err != nil {
		return "", err
	}
	s, err := m.PlanOverride(gpuslice.Override{Profile: profile, QoS: qos})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	names := s.EnvNames()
	sort.Strings(names)
	for _, k := range names {
		b.WriteString(k + "=" + s.Env[k] + "\n")
	}
	var opts []string
	for _, kv := range s.SbatchOptions() {
		if kv[1] == "" {
			opts = append(opts, "--"+kv[0])
		} else {
			opts = append(opts, "--"+kv[0]+"="+kv[1])
		}
	}
	b.WriteString("GPUORCH_SLURM_OPTIONS=" + strings.Join(opts, " ") + "\n")
	return b.String(), nil
}

func main() {}
