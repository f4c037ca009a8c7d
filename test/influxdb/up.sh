#!/usr/bin/env bash
# Start a throwaway InfluxDB 1.8.10 on loopback for tests and demos, and
# create the databases gpuorch uses. Idempotent: when one is already
# answering on the port, it only (re)creates the databases.
#
#   test/influxdb/build.sh && test/influxdb/up.sh
#   eval "$(test/influxdb/up.sh --env)"       # gpuorch writes to it (GPUORCH_INFLUX_*) and tests use it
#   eval "$(test/influxdb/up.sh --test-env)"  # only the tests use it (GPUORCH_TEST_INFLUX_URL)
#
# Environment:
#   INFLUXD_PORT   HTTP port (default 8086)
#   INFLUXD_DIR    data, config, log and pid (default /tmp/gpuorch-influxdb-$PORT)
#   INFLUXD        influxd binary (default <repo>/.cache/bin/influxd, then PATH)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
port=${INFLUXD_PORT:-8086}
dir=${INFLUXD_DIR:-/tmp/gpuorch-influxdb-$port}
url=http://127.0.0.1:$port
quiet=false
mode=${1:-}
[[ $mode == --env || $mode == --test-env ]] && quiet=true
say() { $quiet || echo "$@" >&2; }

bin=${INFLUXD:-}
if [[ -z $bin ]]; then
	if [[ -x $repo/.cache/bin/influxd ]]; then bin=$repo/.cache/bin/influxd
	elif command -v influxd >/dev/null; then bin=$(command -v influxd)
	else echo "up.sh: no influxd; run test/influxdb/build.sh first" >&2; exit 1
	fi
fi

ping() { curl -fsS -o /dev/null --max-time 2 "$url/ping"; }

if ping 2>/dev/null; then
	say "influxd already answering on $url"
else
	mkdir -p "$dir"
	cat >"$dir/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$((port + 1))"
[meta]
  dir = "$dir/meta"
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
  max-series-per-database = 1000000
  max-values-per-tag = 100000
[coordinator]
  query-timeout = "60s"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$port"
  flux-enabled = true
  log-enabled = false
  auth-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
CONF
	say "starting $bin on $url (data in $dir)"
	nohup "$bin" run -config "$dir/influxdb.conf" >"$dir/influxd.log" 2>&1 &
	echo $! >"$dir/influxd.pid"
	for _ in $(seq 1 150); do
		ping 2>/dev/null && break
		if ! kill -0 "$(cat "$dir/influxd.pid")" 2>/dev/null; then
			echo "up.sh: influxd exited; last lines of $dir/influxd.log:" >&2
			tail -20 "$dir/influxd.log" >&2
			exit 1
		fi
		sleep 0.2
	done
	ping || { echo "up.sh: influxd did not answer on $url within 30 s" >&2; exit 1; }
fi

for db in gpuorch gpuorch_test; do
	curl -fsS -o /dev/null --max-time 10 -XPOST "$url/query" --data-urlencode "q=CREATE DATABASE $db"
done
say "databases gpuorch and gpuorch_test ready"
if [[ $mode != --test-env ]]; then
	echo "export GPUORCH_INFLUX_URL=$url"
	echo "export GPUORCH_INFLUX_BUCKET=gpuorch"
fi
echo "export GPUORCH_TEST_INFLUX_URL=$url"
echo "export GPUORCH_TEST_INFLUXD=$bin"
