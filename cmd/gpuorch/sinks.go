package main

import (
	"path/filepath"

	"github.com/gpuorch/gpuorch/results"
	"github.com/urfave/cli/v2"
)

// resultsCmd is the `gpuorch results` group; files add their subcommands to
// it from their init functions (package-level vars are set before any init).
var resultsCmd = &cli.Command{
	Name:  "results",
	Usage: "review experiment results: tables, comparisons, exports, reports",
}

func init() { register(resultsCmd) }

// taskSinkOpener opens where a task's metrics go. It is a variable so the
// InfluxDB wiring can wrap it.
var _ = results.AppendLine

// openTaskSink opens the local store of one task: tasks/<i>/metrics.lp in
// the experiment directory (schema: docs/metrics.md).
func openTaskSink(taskDir string) (results.Sink, error) {
	return results.OpenLineFile(filepath.Join(taskDir, "metrics.lp"))
}
