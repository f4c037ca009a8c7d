// Package gpuslice models GPU pools, QoS levels and fractional GPU slices,
// maps them to Slurm partitions, QOS and shards, and enforces slices on a
// node through NVML.
package gpuslice
