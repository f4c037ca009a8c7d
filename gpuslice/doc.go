// Package gpuslice models GPU pools, QoS levels and fractional GPU slices,
// maps them to Slurm partitions, QOS and shards, and enforces slices on a
// node through NVML.
//
// It imports sbatch (an edge between leaf packages) for its `scontrol -o`
// parser, so partitions, nodes and jobs are read by the same rules
// everywhere.
package gpuslice
