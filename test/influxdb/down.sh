#!/usr/bin/env bash
# Stop the InfluxDB started by up.sh (same INFLUXD_PORT / INFLUXD_DIR).
# Add --purge to delete its data directory too.
set -euo pipefail
port=${INFLUXD_PORT:-8086}
dir=${INFLUXD_DIR:-/tmp/gpuorch-influxdb-$port}
pidf=$dir/influxd.pid
if [[ -f $pidf ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
	pid=$(cat "$pidf")
	kill "$pid"
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
	echo "stopped influxd (pid $pid)" >&2
else
	echo "no influxd running from $dir" >&2
fi
rm -f "$pidf"
[[ ${1:-} == --purge ]] && rm -rf "$dir"
exit 0
