// Package loadgen generates load against model servers: arrival schedules
// on an absolute, seeded timeline, closed loops, workloads, targets
// (OpenAI-compatible, KServe v2, plain HTTP), and coordinated-omission-correct
// latency recording into HDR histograms. The simulated model server used by
// demos and tests lives in loadgen/simserver.
package loadgen
