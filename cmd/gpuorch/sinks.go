package main

import (
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
