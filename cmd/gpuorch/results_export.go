package main

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
)

func init() {
	resultsCmd.Subcommands = append(resultsCmd.Subcommands, &cli.Command{
		Name:      "export",
		Usage:     "write one task's LLM results in the JSON shape of aiperf's or vLLM's bench serve result file",
		ArgsUsage: "EXP|DIR",
		Description: `Writes one task's LLM results (TTFT, ITL, TPOT, E2EL, tokens, rates) as
aiperf's profile_export_aiperf.json (--format aiperf, schema 1.1) or the file
of 'vllm bench serve --save-result' (--format vllm). The tools define the
metrics differently (aiperf's inter_token_latency is gpuorch's TPOT):
docs/loadgen.md, "Definitions side by side", says how each field is filled.
EXP is an experiment (id, id prefix, name) or its directory, with --task when
it has several tasks; DIR may be a task directory (loadgen run --out).

Examples:
   gpuorch results export --format vllm --task 2 llm-sweep > vllm-c64.json
   gpuorch results export --format aiperf --out profile_export_aiperf.json /tmp/run1`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Required: true, Usage: "aiperf or vllm"},
			&cli.StringFlag{Name: "task", Usage: "task `INDEX` (needed when the experiment has several)"},
			&cli.StringFlag{Name: "out", Usage: "write to `FILE` (atomically) instead of stdout"},
			&cli.StringFlag{Name: "home", Usage: "directory holding experiment directories", EnvVars: []string{"GPUORCH_HOME"}, Value: "gpuorch-runs"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errkind.Invalidf("usage: gpuorch results export --format aiperf|vllm [--task INDEX] [--out FILE] EXP|DIR")
			}
			dir := c.Args().First()
			if !results.Exportable(dir) { // an id or name, or an experiment without summaries yet
				r, err := orchestrator.OpenReview(c.String("home"), dir)
				if err != nil {
					return err
				}
				dir = r.Dir
			}
			dir, err := results.ExportTaskDir(dir, c.String("task"))
			if err != nil {
				return err
			}
			v, err := results.ExportTask(dir, c.String("format"))
			if err != nil {
				return err
			}
			if out := c.String("out"); out != "" {
				return atomicfile.Write(out, 0o644, func(w io.Writer) error { return printJSON(w, v) })
			}
			return printJSON(c.App.Writer, v)
		},
	})
}
