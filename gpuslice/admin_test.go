package gpuslice

import (
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/sbatch"
)

// stateOf is the cluster state a fully applied model leaves (as ReadState
// would parse it), for testing Diff without a cluster.
func stateOf(m *Model, include string) *ClusterState {
	st := &ClusterState{QoS: map[string]SlurmQoSState{}, Partitions: map[string]PartitionState{}, NodeGres: map[string]string{}, NodeNames: map[string][]string{}, IncludeSeen: true}
	for _, q := range m.Levels() {
		w := m.wantQoS(q)
		st.QoS[w.Name] = w
	}
	for _, l := range m.PartitionLines() {
		name, _ := partitionName(l)
		st.Partitions[name] = m.wantPartition(name)
	}
	st.Include = m.wantInclude(include)
	return st
}

func TestDiffIdempotentAndKeepsForeignLines(t *testing.T) {
	m := mustModel(t, testModel)
	foreign := "PartitionName=other Nodes=n9 State=UP\n"
	st := stateOf(m, foreign)
	if !strings.Contains(st.Include, foreign) {
		t.Fatalf("foreign partition line dropped:\n%s", st.Include)
	}
	p := (&Admin{SlurmConf: "/nonexistent"}).Diff(m, st)
	if len(p.Actions) != 0 {
		t.Fatalf("applied state still has actions: %v", p.Actions)
	}
	// Change one thing at a time.
	st.QoS["t_high"] = SlurmQoSState{Name: "t_high", Priority: 1, Preempt: []string{"t_low", "t_zzz"}, PreemptMode: "cluster", GraceTime: 5 * time.Second}
	delete(st.Partitions, "t_h100")
	st.QoS["t_extra"] = SlurmQoSState{Name: "t_extra"}               // not a level name: never deleted
	st.QoS["t_critical_old"] = SlurmQoSState{Name: "t_critical_old"} // not a level name either
	st.QoS["high"] = SlurmQoSState{Name: "high", Priority: 100}      // unprefixed: not ours
	p = (&Admin{SlurmConf: "/nonexistent"}).Diff(m, st)
	var got []string
	for _, a := range p.Actions {
		got = append(got, a.Kind+" "+a.Target+" "+strings.Join(a.Cmd, " "))
	}
	want := []string{
		"modify-qos t_high sacctmgr -i modify qos where name=t_high set Priority=60 Preempt+=t_medium PreemptMode=requeue",
		"modify-qos t_high sacctmgr -i modify qos where name=t_high set Preempt-=t_zzz",
		"reconfigure slurmctld scontrol reconfigure",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("actions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDiffGresManual(t *testing.T) {
	m := mustModel(t, testModel)
	st := stateOf(m, "")
	st.NodeNames["a100"] = []string{"node1", "node2"}
	st.NodeGres["node1"] = "gpu:4,shard:32"          // 8 per GPU: right
	st.NodeGres["node2"] = "gpu:a100:4(S:0),shard:8" // wrong
	p := (&Admin{SlurmConf: "/nonexistent"}).Diff(m, st)
	if len(p.Actions) != 1 || p.Actions[0].Kind != KindManual || p.Actions[0].Target != "node2" || p.Changes() != 0 {
		t.Fatalf("%v", p.Actions)
	}
}

func TestParseQoSList(t *testing.T) {
	q, err := ParseQoSList("normal|0||cluster|00:00:00|Normal QOS default\ngs_high|60|gs_medium,gs_low|requeue|1-00:01:00|x\n")
	if err != nil {
		t.Fatal(err)
	}
	h := q["gs_high"]
	if h.Priority != 60 || strings.Join(h.Preempt, ",") != "gs_low,gs_medium" || h.PreemptMode != "requeue" || h.GraceTime != 24*time.Hour+time.Minute {
		t.Fatalf("%+v", h)
	}
	if _, err := ParseQoSList("a|b|c\n"); err == nil {
		t.Fatal("short line accepted")
	}
}

func FuzzParseQoSList(f *testing.F) {
	f.Add("normal|0||cluster|00:00:00|Normal QOS default\n")
	f.Add("x|1|a,b|requeue|2-03:04:05|d\n")
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQoSList(s)
		if err != nil {
			return
		}
		for _, v := range q {
			if v.GraceTime < 0 {
				t.Fatalf("negative grace from %q", s)
			}
		}
	})
}

func FuzzParseOneLiners(f *testing.F) {
	f.Add("NodeName=node1 Arch=x86_64 Gres=gpu:4,shard:8 Reason=a b c [root@2026]\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, kv := range sbatch.ParseOneliners(s) {
			for k := range kv {
				if k == "" || strings.Contains(k, "=") {
					t.Fatalf("bad key %q from %q", k, s)
				}
			}
		}
		_ = GresCount(s, "gpu")
	})
}
