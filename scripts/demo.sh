#!/usr/bin/env bash
# The main job of gpuorch on the embedded defaults: start the simulated model
# server, run the quickstart serving sweep with the local executor, print the
# results table from the local store, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-bin/gpuorch}
[ -x "$BIN" ] || { echo "demo: $BIN not built; run 'make build'" >&2; exit 2; }

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> starting the simulated model server (gpuorch sim-server)"
"$BIN" sim-server --config examples/sim-models.toml --listen 127.0.0.1:0 --addr-file "$work/addr" 2>"$work/sim-server.log" &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.1; done
[ -s "$work/addr" ] || { echo "demo: sim-server did not start:" >&2; cat "$work/sim-server.log" >&2; exit 1; }
addr=$(cat "$work/addr")
echo "    listening on $addr"

echo "==> running examples/serving-quickstart.toml (3 sweep points, local executor)"
"$BIN" run --set "target.url=http://$addr" --json examples/serving-quickstart.toml >"$work/run.json"
id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$work/run.json" | head -n1)
[ -n "$id" ] || { echo "demo: could not read the experiment id from:" >&2; cat "$work/run.json" >&2; exit 1; }
echo "    experiment $id"

echo "==> gpuorch results show $id"
"$BIN" results show "$id"
