#!/usr/bin/env bash
# Stops the Slurm test cluster started by test/slurm/up.sh: the four slurmd,
# slurmctld, slurmdbd, MariaDB and munge. Keeps the accounting database and
# the configs, so the next up.sh is faster (≈5 s).
# NOTE: the cluster is shared machine-wide (GPU pools tests use it too).
set -uo pipefail
log() { echo "slurm-down: $*"; }
[ "$(id -u)" -eq 0 ] || { echo "slurm-down: must run as root" >&2; exit 1; }

stop_pid() { # name pidfile [pids...]
  local name=$1 pidfile=$2; shift 2
  local pids=("$@")
  [ -s "$pidfile" ] && pids+=("$(cat "$pidfile")")
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -f "$pidfile"
  [ ${#pids[@]} -gt 0 ] && log "stopped $name"
}

for n in node1 node2 node3 node4; do
  stop_pid "slurmd $n" "/run/slurmd-$n.pid" $(pgrep -f "slurmd -N $n\$")
done
stop_pid slurmctld /run/slurmctld.pid $(pgrep -x slurmctld)
stop_pid slurmdbd /run/slurmdbd.pid $(pgrep -x slurmdbd)
if mysqladmin ping >/dev/null 2>&1; then
  mysqladmin shutdown && log "stopped mariadb"
fi
stop_pid munged /run/munge/munged.pid $(pgrep -x munged)
exit 0
