package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/orchestrator"
)

func init() {
	register(&cli.Command{
		Name:  "experiments",
		Usage: "list the experiments in $GPUORCH_HOME (default ./gpuorch-runs)",
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "list experiments, newest first, with their state and task counts",
			Description: `Every 'gpuorch run' creates an experiment directory; this lists them.
An experiment can then be named by its id, a unique id prefix, or its name
(meaning its most recent run) in 'gpuorch run --resume' and 'gpuorch results show'.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "home", Usage: "directory holding experiment directories", EnvVars: []string{"GPUORCH_HOME"}, Value: "gpuorch-runs"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			},
			Action: func(c *cli.Context) error {
				list, err := orchestrator.List(c.String("home"))
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				if c.Bool("json") {
					if list == nil {
						list = []orchestrator.Summary{}
					}
					return printJSON(c.App.Writer, list)
				}
				if len(list) == 0 {
					fmt.Fprintf(c.App.ErrWriter, "no experiments in %s\n", c.String("home"))
					return nil
				}
				tw := tabwriter.NewWriter(c.App.Writer, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tTASKS\tEXECUTOR\tCREATED")
				for _, s := range list {
					fmt.Fprintf(tw, "%s\t%s\t%d/%d completed\t%s\t%s\n", s.ID, s.State, s.Counts[orchestrator.TaskCompleted], s.Tasks, s.Executor, s.Created.Local().Format("2006-01-02 15:04:05"))
				}
				return tw.Flush()
			},
		}},
	})
}
