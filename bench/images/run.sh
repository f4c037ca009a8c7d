#!/usr/bin/env bash
# Benchmark: `gpuorch image inspect` (headers only) on a 2 GiB SIF against
# Debian's `siftool list`, and `gpuorch image verify` hashing throughput
# against `sha256sum` on the same file. Builds the image in /tmp (needs
# mksquashfs; siftool from the Debian package `siftool` is optional) and
# deletes it afterwards. Results: docs/benchmarks.md, section "Images".
#
# Usage: bench/images/run.sh [SIZE_MIB] [RUNS]   (default 2048 MiB, 20 runs)
set -euo pipefail
cd "$(dirname "$0")/../.."
size_mib=${1:-2048}
runs=${2:-20}
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"
command -v mksquashfs >/dev/null || { echo "need mksquashfs: apt-get install squashfs-tools" >&2; exit 1; }

work=$(mktemp -d /tmp/gpuorch-bench-images.XXXXXX)
trap 'rm -rf "$work"' EXIT
go build -o "$work/gpuorch" ./cmd/gpuorch
go build -o "$work/mkimage" ./bench/images/mkimage
go build -o "$work/exectime" ./bench/images/exectime
img="$work/metaseq_f7ffa5f_2306.sif"

t0=$(date +%s.%N)
"$work/mkimage" -o "$img" -size $((size_mib << 20)) -key "$work/key.asc"
bytes=$(stat -c %s "$img")
echo "built $img: $bytes bytes in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"

# "median wall ms / median CPU (user+sys) ms" over RUNS runs of a command
# after a warm-up run, measured by exectime (no shell fork per sample).
# CPU time is given too: on a busy machine wall time is mostly waiting for
# a core (compare the /bin/true baseline).
median_ms() { "$work/exectime" -n "$runs" "$@"; }

echo
echo "== inspect ($runs runs each; median wall ms / median CPU ms, process start included)"
printf '%-42s %s\n' "/bin/true (machine load baseline)" "$(median_ms /bin/true)"
printf '%-42s %s\n' "gpuorch --version (process start only)" "$(median_ms "$work/gpuorch" --version)"
printf '%-42s %s\n' "gpuorch image inspect --headers-only" "$(median_ms "$work/gpuorch" image inspect --headers-only "$img")"
printf '%-42s %s\n' "gpuorch image inspect (with metadata)" "$(median_ms "$work/gpuorch" image inspect "$img")"
printf '%-42s %s\n' "gpuorch image validate --version" "$(median_ms "$work/gpuorch" image validate --version f7ffa5f_2306 "$img")"
if command -v siftool >/dev/null; then
  printf '%-42s %s\n' "siftool list ($(dpkg-query -W -f='${Version}' siftool 2>/dev/null || echo ?))" "$(median_ms siftool list "$img")"
else
  echo "siftool not installed (apt-get install siftool): no peer figure"
fi
echo
echo "== in process (go test -bench, same image)"
GPUORCH_BENCH_SIF="$img" GPUORCH_BENCH_KEY="$work/key.asc" \
  go test ./sif/ -run '^$' -bench 'BenchmarkInspect' -benchtime "${runs}x" | grep '^Benchmark'

echo
echo "== hashing the whole file (page cache warm; best of 3)"
best_s() {
  local i s e best=""
  "$@" >/dev/null 2>&1 || true
  for i in 1 2 3; do
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N)
    d=$(( e - s )); if [ -z "$best" ] || [ "$d" -lt "$best" ]; then best=$d; fi
  done
  awk -v d="$best" 'BEGIN{printf "%.3f", d/1e9}'
}
sv=$(best_s "$work/gpuorch" image verify --key "$work/key.asc" "$img")
ss=$(best_s sha256sum "$img")
awk -v b="$bytes" -v v="$sv" -v s="$ss" 'BEGIN{
  printf "%-45s %8.3f s  %7.0f MB/s\n", "gpuorch image verify", v, b/v/1e6
  printf "%-45s %8.3f s  %7.0f MB/s\n", "sha256sum", s, b/s/1e6
  printf "verify throughput = %.0f%% of sha256sum\n", 100*s/v }'
echo
echo "machine: $(nproc) CPUs, load $(cut -d" " -f1-3 /proc/loadavg), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), sha_ni: $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)"
