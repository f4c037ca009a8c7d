package layout

import (
	"path/filepath"
	"testing"
)

func TestPaths(t *testing.T) {
	e := Experiment("/runs/x-1")
	cases := []struct{ got, want string }{
		{e.Spec(), "/runs/x-1/spec.toml"},
		{e.State(), "/runs/x-1/state.json"},
		{e.SlurmScript(), "/runs/x-1/slurm/array.sbatch"},
		{e.BenchWrapper(), "/runs/x-1/bench-task.sh"},
		{string(e.Task(12)), "/runs/x-1/tasks/12"},
		{e.Task(3).Metrics(), "/runs/x-1/tasks/3/metrics.lp"},
		{e.Task(3).InfluxSpool(), "/runs/x-1/tasks/3/influx-spool"},
		{RelTask(7).Manifest(), "tasks/7/manifest.json"},
		{RelTask(7).Log(), "tasks/7/log"},
		{e.Deployment(), "/runs/x-1/deployment.json"},
		{e.ReplicaScript(), "/runs/x-1/slurm/replica.sbatch"},
		{e.Task(2).Lease(), "/runs/x-1/tasks/2/replicas/lease"},
		{e.Task(2).Replica("r3").Address(), "/runs/x-1/tasks/2/replicas/r3/address.json"},
		{e.Task(2).Replica("r3").Job(), "/runs/x-1/tasks/2/replicas/r3/job.json"},
		{e.Task(2).Replica("r3").Log(), "/runs/x-1/tasks/2/replicas/r3/log"},
		{e.Task(3).Shard(2).Metrics(), "/runs/x-1/tasks/3/shards/2/metrics.lp"},
		{e.Task(3).Shard(0).Summary(), "/runs/x-1/tasks/3/shards/0/summary.json"},
		{e.Task(3).ShardStart("2367.0"), "/runs/x-1/tasks/3/shards/start/2367.0"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	if ok, _ := filepath.Match(e.TaskGlob(), string(e.Task(40))); !ok {
		t.Errorf("TaskGlob %s does not match %s", e.TaskGlob(), e.Task(40))
	}
}

func TestHomePaths(t *testing.T) {
	h := Home("/runs")
	for _, c := range []struct{ got, want string }{
		{h.Workflows(), "/runs/workflows"},
		{h.Registry("clusters"), "/runs/registry/clusters"},
		{h.RegistryEntry("models", "30cc08ec"), "/runs/registry/models/30cc08ec.json"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
}
