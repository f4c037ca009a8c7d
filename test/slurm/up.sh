#!/usr/bin/env bash
# Starts a real 4-node Slurm 22.05 test cluster on this Debian 12 machine (as
# root, no systemd): munge, MariaDB, slurmdbd, slurmctld and four
# `slurmd -N nodeN` (4 CPUs, 2000 MB, 4 fake GPUs and 8 shards each), an
# account and the QoS `high` and `low`, partitions `debug` (default, all
# nodes) and `gpu` (node[3-4], QoS high/low).
#
# Idempotent: if the cluster is already up it says so and exits 0; if it is
# partly up it starts what is missing. Installs the Debian packages if they
# are missing. Stop it with test/slurm/down.sh.
#
# The cluster is machine-wide (/etc/slurm). slurm.conf includes
# /etc/slurm/gpuorch-pools.conf, which belongs to `gpuorch admin apply` (GPU
# pools); this script only creates it empty when it does not exist. It also
# includes /etc/slurm/gpuorch-hooks.conf, which runs the MPS hook
# /etc/slurm/gpuorch-mps-hook as Prolog and Epilog (added to a running
# cluster too).
# See /work/shared/reference/slurm-test-cluster.md and docs/slurm.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
log() { echo "slurm-up: $*"; }
die() { echo "slurm-up: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"

ETC=/etc/slurm
LIB=/var/lib/slurm
LOGDIR=/var/log/slurm
NODES=(node1 node2 node3 node4)
start=$(date +%s.%N)
elapsed() { awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

cluster_up() {
  command -v scontrol >/dev/null 2>&1 || return 1
  timeout 5 scontrol ping 2>/dev/null | grep -q "is UP" || return 1
  local n
  n=$(timeout 5 sinfo -h -N -p debug -t idle,alloc,mix,completing -o '%N' 2>/dev/null | sort -u | wc -l) || return 1
  [ "$n" -ge 4 ] || return 1
  timeout 5 sinfo -h -p gpu -o '%P' 2>/dev/null | grep -q gpu || return 1
}

# The MPS hook (gpuslice/mps/hook.sh) runs as Slurm's Prolog and Epilog,
# through the include gpuorch-hooks.conf. A job without gpuorch-mps= in its
# comment leaves it at a case statement, so it costs every other test
# nothing; `gpuorch admin apply` of a pools file with [mps] enabled rewrites
# it with that model's paths (TestMPSHookOnCluster). Installed when missing,
# never overwritten. Succeeds when it changed the configuration.
ensure_mps_hook() {
  local changed=1 want
  if [ ! -s "$ETC/gpuorch-mps-hook" ]; then
    install -m 755 "$here/../../gpuslice/mps/hook.sh" "$ETC/gpuorch-mps-hook"
  fi
  want="# Written by test/slurm/up.sh: the MPS hook as Prolog and Epilog (docs/gpu-slicing.md).
Prolog=$ETC/gpuorch-mps-hook
Epilog=$ETC/gpuorch-mps-hook"
  if [ "$(cat "$ETC/gpuorch-hooks.conf" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" >"$ETC/gpuorch-hooks.conf"
    changed=0
  fi
  if ! grep -qx "Include $ETC/gpuorch-hooks.conf" "$ETC/slurm.conf"; then
    echo "Include $ETC/gpuorch-hooks.conf" >>"$ETC/slurm.conf"
    changed=0
  fi
  return $changed
}

if cluster_up; then
  # A cluster started before the hook existed gets it now.
  if ensure_mps_hook; then
    scontrol reconfigure
    log "MPS hook installed as Prolog and Epilog"
  fi
  log "cluster already up ($(sinfo -h -N -o '%N' | sort -u | tr '\n' ' '))"
  exit 0
fi

# --- packages -----------------------------------------------------------
pkgs=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server libslurm-dev slurm-wlm-jwt-plugin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- directories, keys, configs ----------------------------------------------
mkdir -p "$ETC" "$LIB/slurmctld" "$LIB/fakegpu" "$LOGDIR" /run/munge /run/mysqld
for n in "${NODES[@]}"; do mkdir -p "$LIB/slurmd/$n"; done
chown munge:munge /run/munge 2>/dev/null || true
chown mysql:mysql /run/mysqld
for i in 0 1 2 3; do
  [ -c "$LIB/fakegpu/nvidia$i" ] || { rm -f "$LIB/fakegpu/nvidia$i"; mknod "$LIB/fakegpu/nvidia$i" c 195 "$i"; }
done
if [ ! -s "$ETC/jwt_hs256.key" ]; then
  head -c 32 /dev/urandom >"$ETC/jwt_hs256.key"
fi
chmod 600 "$ETC/jwt_hs256.key"

cp "$here/slurm.conf" "$ETC/slurm.conf"
cp "$here/gres.conf" "$ETC/gres.conf"
install -m 600 "$here/slurmdbd.conf" "$ETC/slurmdbd.conf"
# partitions.conf gets the QoS partitions only after the QoS exist (a
# partition naming an unknown QoS is fatal to slurmctld).
# (A comment, not an empty file: Slurm warns about empty includes on every
# command's stderr.)
echo "# QoS partitions: filled in by test/slurm/up.sh once the QoS exist" >"$ETC/partitions.conf"
# Owned by `gpuorch admin apply`: created (effectively empty), never overwritten.
[ -s "$ETC/gpuorch-pools.conf" ] ||
  echo "# GPU pools: managed by gpuorch admin apply" >"$ETC/gpuorch-pools.conf"
ensure_mps_hook || true

# --- munge --------------------------------------------------------------------
if ! pgrep -x munged >/dev/null; then
  [ -s /etc/munge/munge.key ] || { mungekey -c -f 2>/dev/null || create-munge-key -f; }
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || die "munge does not work"
log "munge ok"

# --- MariaDB -----------------------------------------------------------------
if ! mysqladmin ping >/dev/null 2>&1; then
  if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql >/dev/null
  fi
  setsid mysqld_safe --user=mysql >/dev/null 2>&1 </dev/null &
  for _ in $(seq 150); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.2; done
  mysqladmin ping >/dev/null 2>&1 || die "MariaDB did not start (see /var/log/mysql/error.log or journal)"
fi
mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
          GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
log "mariadb ok"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- slurmdbd ------------------------------------------------------------------
if ! pgrep -x slurmdbd >/dev/null; then
  rm -f /run/slurmdbd.pid
  slurmdbd
fi
for _ in $(seq 150); do port_open 6819 && break; sleep 0.1; done
port_open 6819 || die "slurmdbd did not open port 6819 (see $LOGDIR/slurmdbd.log)"
log "slurmdbd ok"

# --- slurmctld -----------------------------------------------------------------
if ! pgrep -x slurmctld >/dev/null; then
  rm -f /run/slurmctld.pid
  slurmctld
fi
for _ in $(seq 150); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.1; done
scontrol ping 2>/dev/null | grep -q "is UP" || die "slurmctld is not up (see $LOGDIR/slurmctld.log)"
log "slurmctld ok"

# --- slurmd × 4 -----------------------------------------------------------------
for n in "${NODES[@]}"; do
  if ! pgrep -f "slurmd -N $n\$" >/dev/null; then
    rm -f "/run/slurmd-$n.pid"
    slurmd -N "$n"
  fi
done
for _ in $(seq 200); do
  [ "$(sinfo -h -N -t idle,alloc,mix -o '%N' 2>/dev/null | sort -u | wc -l)" -ge 4 ] && break
  sleep 0.1
done
[ "$(sinfo -h -N -t idle,alloc,mix -o '%N' | sort -u | wc -l)" -ge 4 ] || {
  # Nodes left DOWN by an earlier unclean stop come back with a resume.
  scontrol update nodename=node[1-4] state=resume 2>/dev/null || true
  sleep 1
  [ "$(sinfo -h -N -t idle,alloc,mix -o '%N' | sort -u | wc -l)" -ge 4 ] || die "not all 4 nodes are idle: $(sinfo -N)"
}
log "4 nodes ok"

# --- accounts and QoS ------------------------------------------------------------
user=$(id -un)
sacctmgr -i add account gpuorch Description=gpuorch-tests Organization=gpuorch >/dev/null 2>&1 || true
sacctmgr -i add user "$user" DefaultAccount=gpuorch Account=gpuorch >/dev/null 2>&1 || true
sacctmgr -n -P show qos format=name | grep -qx high ||
  sacctmgr -i add qos high Priority=100 MaxTRESPerUser=gres/gpu=4 MaxJobsPerUser=10 >/dev/null
sacctmgr -n -P show qos format=name | grep -qx low ||
  sacctmgr -i add qos low MaxWall=00:10:00 Flags=DenyOnLimit >/dev/null
sacctmgr -i modify user "$user" set qos+=high,low >/dev/null 2>&1 || true
sacctmgr -n -P show assoc user="$user" format=qos | grep -q high || die "QoS high not granted to $user"
log "account gpuorch, QoS high/low ok"

# --- QoS partitions ----------------------------------------------------------------
cp "$here/partitions.conf" "$ETC/partitions.conf"
scontrol reconfigure
for _ in $(seq 50); do sinfo -h -p gpu -o '%P' 2>/dev/null | grep -q gpu && break; sleep 0.1; done
sinfo -h -p gpu -o '%P' | grep -q gpu || die "partition gpu missing after reconfigure"
for _ in $(seq 100); do cluster_up && break; sleep 0.1; done
cluster_up || die "cluster not up: $(sinfo)"
log "up in $(elapsed)s"
sinfo
