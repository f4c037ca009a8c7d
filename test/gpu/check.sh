#!/usr/bin/env bash
# gpuorch's GPU check: for any Linux machine with an NVIDIA GPU and driver.
# No Slurm, no CUDA toolkit, no network; under 4 minutes (about 1.5 with
# the binaries built). It prints measured figures and:
#
#   1. the real `gpuorch nodes probe --json` (model, memory, MIG mode, peak
#      FP16 TFLOPS; an H100 or H200 must resolve from gpuorch's table);
#   2. the enforcer (`gpuorch slice enforce`, node daemon mode, 500 ms polls)
#      against gpuload processes (test/gpu/gpuload) in pretend jobs:
#        - a process over its VRAM limit is signalled within one poll
#          interval of its allocation, and is gone;
#        - a process within its limit is untouched (runs to its end);
#        - a process busy above its compute limit (20 %) is reported within
#          the compute window (3 s) plus one interval;
#   3. where MPS can start: `gpuorch slice mps prolog` starts a control
#      daemon (private pipe directory) as a job's prolog would, two gpuload
#      clients run at 25 % and 75 % active thread percentage at once, and
#      their throughputs must be in the ratio 1:3 within 15 %; the enforcer
#      shows which PIDs NVML lists under MPS; the epilog stops the daemon.
#
# It only reads device state: it never changes MIG mode, compute mode,
# clocks, power limits or persistence mode (no nvidia-smi -c, -mig, -pm,
# -lgc, -pl). The MPS daemon it starts is its own and stopped on exit.
#
# Binaries: $GPUORCH and $GPULOAD when set (a GPU machine may reach nothing
# outside: build them where Go is and take them along), else built here:
#   go build -o gpuorch ./cmd/gpuorch && go build -o gpuload ./test/gpu/gpuload
#   GPUORCH=$PWD/gpuorch GPULOAD=$PWD/gpuload bash test/gpu/check.sh
#
# Exit: 0 all checks passed, or "SKIP: no NVIDIA GPU" (no GPU or driver);
# 1 a check failed. `go test ./test/gpu/` runs it (check_test.go).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
say() { printf '%s\n' "$*"; }
fails=0
fail() { say "FAIL: $*"; fails=$((fails + 1)); }
now() { date +%s.%N; }
# secs A B: B - A in seconds, 3 decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# --- 0. a GPU at all? (before building anything) ---------------------------
if ! ls /proc/driver/nvidia/gpus/* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml\.so\.1'; then
  say "SKIP: no NVIDIA GPU (no /proc/driver/nvidia/gpus/*, no libnvidia-ml.so.1)"
  exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpuorch-gpu-check.XXXXXX")
children=()
mps_job=""
cleanup() {
  for p in ${children[@]+"${children[@]}"}; do kill -9 "$p" 2>/dev/null; done
  if [ -n "$mps_job" ]; then
    mps_env "$mps_job" "$GPUORCH" slice mps epilog >/dev/null 2>&1
  fi
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

GPUORCH=${GPUORCH:-}
GPULOAD=${GPULOAD:-}
if [ -z "$GPUORCH" ] || [ -z "$GPULOAD" ]; then
  command -v go >/dev/null || { say "FAIL: set GPUORCH and GPULOAD to built binaries (no go here to build them)"; exit 1; }
  say "== building gpuorch and gpuload"
  (cd "$root" && go build -o "$tmp/gpuorch" ./cmd/gpuorch && go build -o "$tmp/gpuload" ./test/gpu/gpuload) || { say "FAIL: build"; exit 1; }
  GPUORCH=${GPUORCH:-$tmp/gpuorch}
  GPULOAD=${GPULOAD:-$tmp/gpuload}
fi
start_all=$(now)

# --- 1. the node as NVML sees it -----------------------------------------------
say "== gpuorch nodes probe --json"
"$GPUORCH" nodes probe --json --require-gpu >"$tmp/probe.json" 2>"$tmp/probe.err"
rc=$?
cat "$tmp/probe.json"
if [ "$rc" -eq 3 ]; then
  say "SKIP: no NVIDIA GPU ($(grep -o '"note": "[^"]*"' "$tmp/probe.json" | head -1))"
  exit 0
fi
[ "$rc" -eq 0 ] || fail "gpuorch nodes probe exited $rc: $(cat "$tmp/probe.err")"
# One line per device of type gpu: its name and peak FP16 TFLOPS ("null"
# when the table lacks it). In the JSON a device's name and type come
# before its device_config.
awk -F'"' '$2 == "name" { n = $4 } $2 == "type" { t = $4 }
  $2 == "peak_fp16_TFLOPS" && t == "gpu" { p = $3; sub(/^: */, "", p); sub(/[,}].*/, "", p); print n "\t" p }' \
  "$tmp/probe.json" >"$tmp/gpus.tsv"
gpu_names=$(cut -f1 "$tmp/gpus.tsv" | paste -sd, -)
peak=$(cut -f2 "$tmp/gpus.tsv" | head -1)
[ -s "$tmp/gpus.tsv" ] || fail "gpuorch nodes probe lists no GPU"
while IFS=$'\t' read -r name p; do
  [ "$p" = null ] || continue
  case $name in
  *H100* | *H200*) fail "$name did not resolve from gpuorch's GPU table (peak_fp16_TFLOPS null)" ;;
  *) say "NOTE: $name is not in gpuorch's GPU table (add [gpu_models.\"$name\"] to a pools file)" ;;
  esac
done <"$tmp/gpus.tsv"
mig=no
grep -q '"enabled"' "$tmp/probe.json" && mig=yes
driver=$(grep -o '"driver_version": "[^"]*"' "$tmp/probe.json" | head -1 | sed 's/.*: "//; s/"//')
say "GPU: $gpu_names, driver $driver, peak FP16 ${peak:-unknown} TFLOPS, MIG enabled: $mig"

# --- 2. the enforcer against gpuload ---------------------------------------------
# Pretend jobs: SLURM_JOB_ID in a process's environment is how the enforcer
# finds the job of a process outside job cgroups.
J_OVER=900000001 J_UNDER=900000002 J_BUSY=900000003
limits=$tmp/limits
reg() {
  local job=$1
  shift
  env "$@" GPUORCH_SLICE_QOS=check "$GPUORCH" slice enforce --register "$limits" --job "$job" >/dev/null || fail "register job $job"
}
reg "$J_OVER" GPUORCH_SLICE_VRAM_LIMIT=2147483648 GPUORCH_SLICE_ON_OVERRUN=terminate GPUORCH_SLICE_GRACE=5s
reg "$J_UNDER" GPUORCH_SLICE_VRAM_LIMIT=4294967296 GPUORCH_SLICE_ON_OVERRUN=terminate GPUORCH_SLICE_GRACE=5s
reg "$J_BUSY" GPUORCH_SLICE_COMPUTE_PERCENT=20 GPUORCH_SLICE_COMPUTE_WINDOW=3s GPUORCH_SLICE_ON_COMPUTE_OVERRUN=report
"$GPUORCH" slice enforce --limits-dir "$limits" --interval 500ms >"$tmp/enforcer.out" 2>"$tmp/enforcer.err" &
enforcer=$!
children+=("$enforcer")
sleep 1
kill -0 "$enforcer" 2>/dev/null || { fail "the enforcer did not start: $(cat "$tmp/enforcer.err")"; exit 1; }

# load JOB NAME ARGS…: start gpuload in job JOB; sets $load_pid, waits
# (≤ 30 s) for its "holds" line and sets $load_ready to that moment.
load() {
  local job=$1 name=$2
  shift 2
  SLURM_JOB_ID=$job "$GPULOAD" "$@" >"$tmp/$name.json" 2>"$tmp/$name.err" &
  load_pid=$!
  children+=("$load_pid")
  load_ready=""
  for _ in $(seq 3000); do
    if grep -q ' holds ' "$tmp/$name.err"; then load_ready=$(now); return 0; fi
    kill -0 "$load_pid" 2>/dev/null || break
    sleep 0.01
  done
  fail "gpuload ($name) never held its memory: $(cat "$tmp/$name.err")"
  return 1
}
# event_time JOB KIND: the time of the enforcer's first KIND event for JOB.
event_time() {
  local line
  line=$(grep " job $1 " "$tmp/enforcer.out" | grep " $2 over limit" | head -1)
  [ -n "$line" ] && date -d "${line%% *}" +%s.%N
}

say "== enforcer: VRAM within its limit (job $J_UNDER: 256 MiB + context, limit 4 GiB)"
load "$J_UNDER" under --mem 256Mi --busy 0 --hold 20s
under_pid=$load_pid

say "== enforcer: VRAM over its limit (job $J_OVER: 3 GiB + context, limit 2 GiB, terminate)"
vram_signal="" vram_gone=""
if load "$J_OVER" over --mem 3Gi --busy 0 --hold 60s; then
  over_pid=$load_pid over_ready=$load_ready
  for _ in $(seq 1000); do
    kill -0 "$over_pid" 2>/dev/null || break
    sleep 0.01
  done
  if kill -0 "$over_pid" 2>/dev/null; then
    fail "the process over its VRAM limit still runs 10 s after its allocation"
  else
    vram_gone=$(secs "$over_ready" "$(now)")
    t=$(event_time "$J_OVER" vram) && vram_signal=$(secs "$over_ready" "$t")
    say "signalled ${vram_signal:-?} s after its allocation, gone after $vram_gone s"
    grep " job $J_OVER " "$tmp/enforcer.out" | head -2
    if [ -z "$vram_signal" ]; then
      fail "no vram event for job $J_OVER in the enforcer's output"
    elif awk -v s="$vram_signal" 'BEGIN { exit !(s > 0.6) }'; then
      fail "signalled $vram_signal s after the allocation: more than one 500 ms poll interval (+100 ms)"
    fi
  fi
fi

say "== enforcer: compute above its limit (job $J_BUSY: busy kernel for 12 s, limit 20 %, window 3 s, report)"
compute_after="" compute_used=""
if [ "$mig" = yes ]; then
  say "SKIP compute: MIG is enabled; NVML has no per-process SM utilisation there"
elif load "$J_BUSY" busy --mem 64Mi --busy 12s; then
  busy_ready=$load_ready
  for _ in $(seq 100); do
    t=$(event_time "$J_BUSY" compute) && break
    sleep 0.1
  done
  if [ -n "${t:-}" ]; then
    compute_after=$(secs "$busy_ready" "$t")
    compute_used=$(grep " job $J_BUSY " "$tmp/enforcer.out" | grep -o 'compute over limit ([0-9]*' | head -1 | grep -o '[0-9]*$')
    say "reported ${compute_after} s after the kernels started: SM ${compute_used} % > 20 %"
    awk -v s="$compute_after" 'BEGIN { exit !(s > 4.5) }' && fail "compute reported after $compute_after s: more than the 3 s window + 1 interval (+1 s)"
  else
    fail "no compute event for job $J_BUSY within 10 s"
    command -v nvidia-smi >/dev/null && { say "nvidia-smi pmon -c 1 (is per-process SM use reported?):"; nvidia-smi pmon -c 1; }
  fi
  wait "$load_pid"
  say "gpuload alone: $(grep -o '"fp32_tflops": [0-9.]*' "$tmp/busy.json") on $(grep -o '"sms": [0-9]*' "$tmp/busy.json")"
fi

wait "$under_pid"
rc=$?
if [ "$rc" -ne 0 ] || grep -q " job $J_UNDER " "$tmp/enforcer.out"; then
  fail "the process within its limit was touched (exit $rc): $(grep " job $J_UNDER " "$tmp/enforcer.out")"
else
  say "within its limit: untouched, ran to its end (exit 0)"
fi
kill "$enforcer" 2>/dev/null

# --- 3. MPS: the prolog's daemon, and the thread percentage at work ---------------
mps_control=$(command -v nvidia-cuda-mps-control || true)
mps_ratio=""
mps_env() {
  local job=$1
  shift
  env SLURM_JOB_ID="$job" SLURM_JOB_UID="$(id -u)" SLURM_JOB_GID="$(id -g)" SLURM_JOB_GPUS=0 \
    SLURMD_NODENAME="$(hostname)" SLURM_JOB_COMMENT="gpuorch-mps=75" \
    GPUORCH_MPS_DIR="$tmp/mps" GPUORCH_MPS_CONTROL="$mps_control" "$@"
}
if [ -z "$mps_control" ]; then
  say "SKIP MPS: nvidia-cuda-mps-control is not on PATH"
elif [ "$mig" = yes ]; then
  say "SKIP MPS: MIG is enabled (MPS would need a daemon per MIG device)"
else
  mps_job=900000010
  say "== MPS: gpuorch slice mps prolog (job $mps_job, GPU 0, default 75 % of the threads)"
  mps_env "$mps_job" "$GPUORCH" slice mps prolog
  jobdir=$tmp/mps/$mps_job
  if [ -r "$jobdir/env" ]; then
    cat "$jobdir/env"
    # Two clients at once: 25 % (lowered by the client) and 75 % (the
    # daemon's default). Their throughputs should be 1:3.
    for pct in 25 75; do
      (
        . "$jobdir/env"
        unset CUDA_VISIBLE_DEVICES
        CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=$pct SLURM_JOB_ID=$mps_job exec "$GPULOAD" --mem 64Mi --busy 20s
      ) >"$tmp/mps$pct.json" 2>"$tmp/mps$pct.err" &
      children+=($!)
      eval "mps_pid_$pct=$!"
    done
    sleep 8
    say "what NVML lists under MPS (a dry-run enforcer, VRAM limit 1 byte):"
    GPUORCH_SLICE_VRAM_LIMIT=1 "$GPUORCH" slice enforce --job "$mps_job" --once --dry-run 2>&1 | head -5
    say "clients: $(grep -ho 'pid [0-9]*' "$tmp/mps25.err" "$tmp/mps75.err" | paste -sd, -); MPS processes: $(pgrep -d, -f nvidia-cuda-mps || echo none)"
    wait "$mps_pid_25" "$mps_pid_75"
    f25=$(grep -o '"fma_per_s": [0-9.e+]*' "$tmp/mps25.json" | awk '{print $2}')
    f75=$(grep -o '"fma_per_s": [0-9.e+]*' "$tmp/mps75.json" | awk '{print $2}')
    if [ -z "$f25" ] || [ -z "$f75" ]; then
      fail "an MPS client failed: $(cat "$tmp/mps25.err" "$tmp/mps75.err")"
    else
      mps_ratio=$(awk -v a="$f25" -v b="$f75" 'BEGIN { printf "%.3f", b / a }')
      say "MPS 25 %: $(grep -o '"fp32_tflops": [0-9.]*' "$tmp/mps25.json"), 75 %: $(grep -o '"fp32_tflops": [0-9.]*' "$tmp/mps75.json"), ratio $mps_ratio (want 3 ± 15 %)"
      awk -v r="$mps_ratio" 'BEGIN { exit !(r < 2.55 || r > 3.45) }' && fail "MPS throughput ratio $mps_ratio is not 3 within 15 %"
    fi
  else
    say "SKIP MPS: the prolog did not start a daemon: $(cat "$jobdir/refused" "$jobdir/unavailable" 2>/dev/null)"
    tail -3 "$tmp/mps/hook.log" 2>/dev/null
  fi
  mps_env "$mps_job" "$GPUORCH" slice mps epilog || fail "MPS epilog"
  [ -e "$jobdir" ] && fail "the epilog left $jobdir"
  mps_job=""
fi

say "== figures"
say "gpu              $gpu_names (driver $driver, peak FP16 ${peak:-?} TFLOPS, MIG $mig)"
say "vram overrun     signalled ${vram_signal:-—} s after the allocation, process gone after ${vram_gone:-—} s (poll interval 0.5 s)"
say "compute overrun  reported ${compute_after:-—} s after the kernels started (window 3 s), SM ${compute_used:-—} %"
say "mps 75/25        throughput ratio ${mps_ratio:-—} (want 3 ± 15 %)"
say "check took $(secs "$start_all" "$(now)") s (without building)"
if [ "$fails" -gt 0 ]; then
  say "FAILED: $fails check(s)"
  exit 1
fi
say "OK"
