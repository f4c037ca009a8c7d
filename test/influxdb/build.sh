#!/usr/bin/env bash
# Build InfluxDB 1.8.10 (influxd, with Flux v0.65) from source into a cache
# directory. Idempotent: does nothing when the binary is already there.
# It takes 2-3 minutes on a fresh machine (cgo).
#
#   test/influxdb/build.sh            # -> <repo>/.cache/bin/influxd
#   INFLUXD_BIN_DIR=/usr/local/bin test/influxdb/build.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bindir=${INFLUXD_BIN_DIR:-$repo/.cache/bin}
if [[ -x $bindir/influxd ]]; then
	echo "influxd already built: $bindir/influxd"
	exit 0
fi
mkdir -p "$bindir"
echo "building influxd v1.8.10 into $bindir (2-3 minutes)..."
# Build outside the repo's module so its go.mod is not touched.
cd "$(mktemp -d)"
GOBIN=$bindir GOFLAGS=-mod=mod CGO_ENABLED=1 go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10
echo "built $bindir/influxd"
