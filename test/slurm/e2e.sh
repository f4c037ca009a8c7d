#!/usr/bin/env bash
# End to end on the Slurm test cluster: the quickstart serving experiment
# (examples/serving-quickstart.toml against `gpuorch sim-server`) runs as one
# array job; `gpuorch status --watch` follows it; `gpuorch results show`
# prints the table. Then a task is made to fail and `gpuorch retry` reruns
# exactly it. Needs the cluster (test/slurm/up.sh). Usage:
#   test/slurm/e2e.sh [path/to/gpuorch]      # default: builds bin/gpuorch
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-}
if [ -z "$bin" ]; then
  CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations" go build -o bin/gpuorch ./cmd/gpuorch
  bin=bin/gpuorch
fi
bin=$(realpath "$bin")
scontrol ping 2>/dev/null | grep -q "is UP" || { echo "e2e: Slurm test cluster not running: run test/slurm/up.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/gpuorch-slurm-e2e.XXXXXX)
export GPUORCH_HOME=$work/runs
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$bin" sim-server --config examples/sim-models.toml --listen 127.0.0.1:0 --addr-file "$work/addr" >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 50); do [ -s "$work/addr" ] && break; sleep 0.1; done
addr=$(cat "$work/addr")
echo "e2e: sim-server on $addr"

step() { echo; echo "=== $*"; }
step "gpuorch run --executor slurm (one array job, throttle 1: the tasks share the server)"
id=$("$bin" run --executor slurm --set "target.url=http://$addr" --set run.duration=2s \
       --set slurm.throttle=1 examples/serving-quickstart.toml)
echo "$id"
job=$(jq -r '.submissions[0].job_id' "$GPUORCH_HOME/$id/state.json")
[ -n "$job" ] && [ "$job" != null ] || { echo "e2e: no job id saved" >&2; exit 1; }
grep -q -- '--array=0-2%1' "$GPUORCH_HOME/$id/slurm/submit-1.sbatch"

step "gpuorch status --watch"
"$bin" status --watch --interval 1s "$id"

step "gpuorch results show"
"$bin" results show "$id" | tee "$work/table"
for t in t000-rate=50 t001-rate=100 t002-rate=200; do
  grep -q "$t" "$work/table" || { echo "e2e: results table lacks $t" >&2; exit 1; }
done

step "a failing task, then gpuorch retry of exactly it"
# Submitted held; task 1's manifest then points at a dead port (as if its
# server were down), and the job is released: task 1 exits 3.
id2=$("$bin" run --executor slurm --set "target.url=http://$addr" --set run.duration=1s \
        --set slurm.throttle=1 --set 'slurm.extra_args=["--hold"]' examples/serving-quickstart.toml)
job2=$(jq -r '.submissions[0].job_id' "$GPUORCH_HOME/$id2/state.json")
m1=$GPUORCH_HOME/$id2/tasks/1/manifest.json
sed -i "s#http://$addr#http://127.0.0.1:9#" "$m1"
scontrol release "$job2"
if "$bin" status --watch --interval 1s "$id2"; then echo "e2e: expected a failed task" >&2; exit 1; fi
[ "$(jq -r '.tasks[1].state' "$GPUORCH_HOME/$id2/state.json")" = failed ]
[ "$(jq -r '.tasks[1].exit_code' "$GPUORCH_HOME/$id2/state.json")" = 3 ]
sed -i "s#http://127.0.0.1:9#http://$addr#" "$m1"     # the server is back
"$bin" retry "$id2"
grep -q -- '--array=1%1' "$GPUORCH_HOME/$id2/slurm/submit-2.sbatch"
scontrol release "$(jq -r '.submissions[1].job_id' "$GPUORCH_HOME/$id2/state.json")" 2>/dev/null || true
"$bin" status --watch --interval 1s "$id2"
echo
echo "e2e: ok"
