// Package gpuslice models GPU pools, QoS levels and fractional GPU slices,
// maps them to Slurm partitions, QOS and shards, and enforces slices on a
// node through NVML.
//
// It imports sbatch (an edge between leaf packages) for Slurm's command
// runner and its `scontrol -o` parser: the admin, the node listing and the
// enforcer's requeue call Slurm the way every other package does, with the
// same timeouts, retries and unavailability error (errkind.ErrUnavailable).
package gpuslice
