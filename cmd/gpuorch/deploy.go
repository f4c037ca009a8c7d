package main

import (
	"github.com/gpuorch/gpuorch/deploy"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:   "deploy",
		Usage:  "a deployment's model-server replicas (run by gpuorch itself; see docs/deployments.md)",
		Hidden: true,
		Subcommands: []*cli.Command{{
			Name:  "replica",
			Usage: "run one replica: pick a free port, start the server, publish its address, stop with the task",
			Description: `What each replica's Slurm job (or local process) runs: the replica named by
$GPUORCH_DEPLOY_REPLICA of task $GPUORCH_DEPLOY_TASK of the experiment in
$GPUORCH_EXPERIMENT_DIR. It stops its server on SIGTERM (scancel) and when
the task stops renewing its lease.`,
			Action: func(c *cli.Context) error { return deploy.RunReplicaFromEnv(c.Context, c.App.ErrWriter) },
		}},
	})
}
