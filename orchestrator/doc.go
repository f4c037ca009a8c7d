// Package orchestrator holds experiment specs (TOML), the planning of a sweep
// into tasks, the executors that run tasks (local, Slurm), experiment state
// and the benchmark workflow.
package orchestrator
