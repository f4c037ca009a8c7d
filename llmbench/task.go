package llmbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/taskrun"
)

// RunTask is one benchmark task, what the experiment's wrapper runs (through
// `gpuorch bench task loadgen run --manifest M`): it starts the local model
// server (if any), points the manifest's target at it, runs the load with
// the task's outputs (per-request rows when asked for), and stops the
// server. expDir is the experiment directory (relative manifests are taken
// from it); self is the gpuorch binary "gpuorch" in a server command means.
// Progress lines go to log.
func RunTask(ctx context.Context, expDir, manifest, self string, log io.Writer) (*loadgen.Summary, error) {
	if !filepath.IsAbs(manifest) {
		manifest = filepath.Join(expDir, manifest)
	}
	cfg, err := taskrun.ReadManifest(manifest)
	if err != nil {
		return nil, err
	}
	bt, err := ReadTaskInfo(expDir)
	if err != nil {
		return nil, errkind.Invalidf("bench task: %w", err)
	}
	taskDir := filepath.Dir(manifest)
	if len(bt.ServerArgv) > 0 {
		fmt.Fprintf(log, "starting model server: %s\n", strings.Join(bt.ServerArgv, " "))
		srv, err := StartServer(ctx, bt.ServerArgv, self, layout.Task(taskDir).ServerLog(), bt.ReadyTimeout.D())
		if err != nil {
			return nil, specError(err)
		}
		defer srv.Stop()
		fmt.Fprintf(log, "model server ready at %s\n", srv.URL)
		cfg.Target.URL = srv.URL
	}
	w, err := taskrun.Prepare(cfg)
	if err != nil {
		return nil, err
	}
	return taskrun.Run(ctx, cfg, w, taskrun.Options{Dir: taskDir, PerRequest: bt.PerRequest})
}

// Self is the gpuorch binary a task runs as: the one the wrapper names
// ($GPUORCH_BIN), else this process's.
func Self() string {
	if self := os.Getenv("GPUORCH_BIN"); self != "" {
		return self
	}
	self, _ := os.Executable()
	return self
}
