package taskrun

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/testgate"
)

// clearInfluxEnv leaves InfluxDB unconfigured, whatever the environment says.
func clearInfluxEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"GPUORCH_INFLUX_URL", "GPUORCH_INFLUX_BUCKET", "GPUORCH_INFLUX_TOKEN", "GPUORCH_INFLUX_TOKEN_FILE",
		"GPUORCH_INFLUX_ORG", "GPUORCH_RESULTS_SOURCE", "GPUORCH_INFLUX_BATCH_SIZE", "GPUORCH_INFLUX_FLUSH_INTERVAL", "GPUORCH_INFLUX_QUEUE_BATCHES"} {
		t.Setenv(k, "")
	}
	t.Setenv("GPUORCH_CONFIG", filepath.Join(t.TempDir(), "none.toml"))
	os.WriteFile(os.Getenv("GPUORCH_CONFIG"), nil, 0o600)
}

func TestCheckSinks(t *testing.T) {
	clearInfluxEnv(t)
	ctx := t.Context()
	if err := CheckSinks(ctx, false); err != nil {
		t.Fatalf("not configured: %v", err)
	}
	t.Setenv("GPUORCH_INFLUX_URL", "http://127.0.0.1:1")
	if err := CheckSinks(ctx, true); err != nil {
		t.Fatalf("unreachable, allowed: %v", err)
	}
	err := CheckSinks(ctx, false)
	if !errors.Is(err, errkind.ErrUnavailable) {
		t.Fatalf("unreachable: %v", err)
	}
	base := testgate.InfluxDB(t)
	t.Setenv("GPUORCH_INFLUX_URL", base)
	t.Setenv("GPUORCH_INFLUX_BUCKET", "gpuorch_no_such_database")
	err = CheckSinks(ctx, true) // a missing database is never waved through
	if !errors.Is(err, errkind.ErrInvalid) || !strings.Contains(err.Error(), "database not found") {
		t.Fatalf("missing database: %v", err)
	}
}
