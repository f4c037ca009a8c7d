#!/bin/bash
# Integration test of the gpuorch SPANK plugin on the Slurm test cluster
# (bash test/slurm/up.sh): builds the plugin, loads it for this test only
# (a plugstack.conf.d entry removed on exit; new sbatch/srun/slurmstepd
# processes read plugstack.conf, slurmd does not need a restart), and checks
# that --gpu-slice/--gpu-qos appear in sbatch --help and put the slice's
# environment into batch jobs and srun steps.
#   bash gpuslice/spank/test.sh
# `go test ./gpuslice/spank/` runs it (TestSPANKPluginOnCluster), so
# `make test` and CI do. With GPUORCH_TEST_SLURM=1 (test/env.sh) a missing
# prerequisite fails the test instead of skipping it.
set -euo pipefail
cd "$(dirname "$0")/../.."
skip() {
  if [ "${GPUORCH_TEST_SLURM:-}" = 1 ]; then echo "FAIL: $* (GPUORCH_TEST_SLURM=1)"; exit 1; fi
  echo "SKIP: $*"; exit 0
}
scontrol ping 2>/dev/null | grep -q UP || skip "Slurm test cluster not running (sudo bash test/slurm/up.sh)"
[ -f /usr/include/slurm/spank.h ] || skip "slurm/spank.h missing (apt-get install libslurm-dev)"
[ -d /etc/slurm/plugstack.conf.d ] || skip "/etc/slurm/plugstack.conf.d missing (apt-get install slurm-wlm-basic-plugins)"
# One run at a time on this cluster: two loaded copies of the plugin
# register the same options, and sbatch then shows neither.
exec 9>/tmp/gpuorch-spank-test.lock
flock -w 300 9 || { echo "FAIL: another run of this test held /tmp/gpuorch-spank-test.lock for 5 minutes"; exit 1; }
work=$(mktemp -d /tmp/gpuorch-spank.XXXXXX)
conf=/etc/slurm/plugstack.conf.d/gpuorch-spank-test-$$.conf
trap 'rm -f "$conf"; rm -rf "$work"' EXIT
trap 'exit 143' TERM INT
export CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations"
go build -tags spank -buildmode=c-shared -o "$work/gpuorch_spank.so" ./gpuslice/spank
chmod 755 "$work"
echo "optional $work/gpuorch_spank.so pools=$PWD/examples/pools.toml" >"$conf"
fail() { echo "FAIL: $*"; exit 1; }

help=$(sbatch --help 2>&1) || true
grep -q -- '--gpu-slice=PROFILE' <<<"$help" || fail "--gpu-slice not in sbatch --help; its errors: $(grep -iv '^ \|^usage\|^$' <<<"$help" | head -20)"

out=$(srun -p debug --gpu-slice=small-infer printenv GPUORCH_SLICE_VRAM_LIMIT CUDA_MPS_PINNED_DEVICE_MEM_LIMIT 2>"$work/srun.err")
[ "$out" = $'3221225472\n0=3072M' ] || fail "srun env: $out"
grep -q 'this slice needs --partition=gs_a100 --qos=gs_medium --gres=shard:1 --requeue' "$work/srun.err" || fail "no hint: $(cat "$work/srun.err")"

id=$(sbatch --parsable -p debug --gpu-slice=guaranteed-llm --gpu-qos=critical -o "$work/%j.out" --wrap 'printenv GPUORCH_SLICE_QOS GPUORCH_SLICE_ON_OVERRUN CUDA_MPS_ACTIVE_THREAD_PERCENTAGE' 2>/dev/null)
for _ in $(seq 100); do [ -s "$work/$id.out" ] && break; sleep 0.2; done
[ "$(cat "$work/$id.out")" = $'critical\nterminate\n21' ] || fail "batch env: $(cat "$work/$id.out" 2>&1)"

out=$(srun -p debug printenv GPUORCH_SLICE_VRAM_LIMIT || true)
[ -z "$out" ] || fail "env set without --gpu-slice: $out"

srun -p debug --gpu-slice=nope true 2>"$work/bad.err" || true
grep -q 'profile "nope": not in' "$work/bad.err" || fail "bad profile not reported: $(cat "$work/bad.err")"
echo "PASS: gpuorch SPANK plugin (--gpu-slice, --gpu-qos) in sbatch and srun"
