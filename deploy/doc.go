// Package deploy keeps one task's model-server replicas running while its
// load runs (a spec's [deployment], docs/deployments.md): it starts them as
// Slurm jobs (in the experiment's slice) or local processes, waits until
// they answer, balances the task's load over them (loadgen.Replicas), sizes
// them between min and max with an autoscaling controller that watches a
// measured signal, replaces lost ones, drains before it removes one, and
// cancels them all when the task ends. The replica side (RunReplica) is
// what each replica runs: a free port, the server, its published address,
// and a lease that stops it when its task is gone.
package deploy
