#!/usr/bin/env bash
# Brings up everything the integration tests need, idempotently, on a Debian 12
# machine (as root): Debian packages, a real InfluxDB 1.8.10 (built from
# source with Go), and the 4-node Slurm 22.05 test cluster. Then writes
# test/env.sh, which `make test` sources so the integration tests run: each
# variable switches on one service's tests (internal/testgate), which then
# fail rather than skip if it is missing; GPUORCH_TEST_TOOLS=1 does the same
# for the tools installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# gcc, libslurm-dev and slurm-wlm-basic-plugins (plugstack.conf.d) build and
# load the SPANK plugin in its test; squashfs-tools and chromium are the
# tools GPUORCH_TEST_TOOLS=1 promises; llvm (llc) checks test/gpu/gpuload/busy.ptx
# against its source, and gcc builds that workload and its stand-in driver.
pkgs=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server libslurm-dev slurm-wlm-jwt-plugin
      slurm-wlm-basic-plugins gcc libc6-dev squashfs-tools chromium jq curl ca-certificates procps psmisc llvm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-env: need root to install: ${missing[*]}" >&2; exit 1
  fi
  echo "test-env: installing ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

bash test/influxdb/build.sh
bash test/slurm/up.sh
# up.sh is idempotent; with --test-env it prints the variables the tests read.
influx_env=$(bash test/influxdb/up.sh --test-env)
{
  echo "# Written by scripts/test-env.sh: the services the integration tests use."
  echo "export GPUORCH_TEST_SLURM=1"
  echo "$influx_env"
  echo "export GPUORCH_TEST_TOOLS=1"
} >test/env.sh.tmp
mv test/env.sh.tmp test/env.sh
echo "test-env: InfluxDB and the Slurm test cluster are up; variables in test/env.sh"
