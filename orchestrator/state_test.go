package orchestrator

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewIDIsAName(t *testing.T) {
	now := time.Date(2026, 11, 22, 7, 4, 15, 0, time.UTC)
	for _, name := range []string{"q", "serving-quickstart", strings.Repeat("a", 63), strings.Repeat("a.", 31) + "a"} {
		id := NewID(name, now)
		if !NameRE.MatchString(id) {
			t.Errorf("id %q from %q is not a valid name", id, name)
		}
		if !strings.Contains(id, "-20261122-070415-") {
			t.Errorf("id %q lacks the UTC timestamp", id)
		}
	}
	if NewID("x", now) == NewID("x", now) {
		// 16 random bits: a collision here is a 1-in-65536 event.
		t.Log("two ids in the same second collided; the random suffix is too short?")
	}
}

func TestCreateOpenList(t *testing.T) {
	home := t.TempDir()
	s, err := ParseSpec("good.toml", []byte(goodSpec), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	exp, err := Create(home, s, p, "local")
	if err != nil {
		t.Fatal(err)
	}
	// The directory holds the spec as read, the plan, manifests and state.
	if b, err := os.ReadFile(filepath.Join(exp.Dir, "spec.toml")); err != nil || string(b) != goodSpec {
		t.Errorf("spec.toml: %v", err)
	}
	var m struct {
		Experiment string `json:"experiment"`
		Task       string `json:"task"`
		Seed       int64  `json:"seed"`
	}
	if err := readJSON(filepath.Join(exp.Dir, ManifestPath(11)), &m); err != nil {
		t.Fatal(err)
	}
	if m.Experiment != exp.ID() || m.Task != p.Tasks[11].Name || m.Seed != 18 {
		t.Errorf("manifest 11: %+v", m)
	}
	if p.Tasks[0].Config.Experiment != "exp-1" {
		t.Error("Create modified the caller's plan")
	}
	st := exp.Snapshot()
	if st.State != ExpPlanned || len(st.Tasks) != 12 || st.Tasks[3].State != TaskPending || st.Tasks[3].Log != "tasks/3/log" || st.Executor != "local" {
		t.Errorf("initial state %+v", st)
	}

	// Open by id, by path, by unique prefix, by name (latest run).
	time.Sleep(10 * time.Millisecond)
	exp2, err := Create(home, s, p, "local")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{exp.ID(), exp.Dir, exp2.ID()[:len(exp2.ID())-2], "exp-1"} {
		got, err := Open(home, q)
		if err != nil {
			t.Errorf("Open(%q): %v", q, err)
			continue
		}
		want := exp2.ID()
		if q == exp.ID() || q == exp.Dir {
			want = exp.ID()
		}
		if got.ID() != want || len(got.Plan.Tasks) != 12 || got.Plan.Tasks[4].Config.Target.Models[0] != "a" {
			t.Errorf("Open(%q) = %s, want %s", q, got.ID(), want)
		}
	}
	if _, err := Open(home, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(nope): %v", err)
	}
	if _, err := Open(home, "exp"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("Open(exp): %v", err)
	}
	// A name that is also a prefix of another name's ids still means itself.
	s.Experiment.Name, p.Experiment.Name = "exp", "exp"
	expShort, err := Create(home, s, p, "local")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Open(home, "exp"); err != nil || got.ID() != expShort.ID() {
		t.Errorf("Open(exp) with an experiment named exp: %v", err)
	}

	if err := exp.UpdateTask(2, func(ts *TaskStatus) { ts.State = TaskCompleted }); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(home, "not-an-experiment"), 0o755)
	list, err := List(home)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[1].ID != exp2.ID() || list[2].Counts[TaskCompleted] != 1 || list[2].Tasks != 12 || len(list[2].Tags) != 2 {
		t.Errorf("list %+v", list)
	}
}

func TestStateWritesAreAtomic(t *testing.T) {
	exp := newTestExperiment(t, testSpec(t, []string{"ok", "ok"}, "1s", 1, ""))
	path := filepath.Join(exp.Dir, "state.json")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad error
	var reads int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			var st State
			if err == nil {
				err = json.Unmarshal(b, &st)
			}
			if err != nil && bad == nil {
				bad = err
			}
			reads++
		}
	}()
	for i := range 60 {
		err := exp.UpdateTask(i%2, func(ts *TaskStatus) {
			ts.Error = strings.Repeat("x", i*37%4000) // vary the size
			ts.Attempts = i
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if bad != nil {
		t.Fatalf("a reader saw a torn state.json (after %d reads): %v", reads, bad)
	}
	ents, _ := os.ReadDir(exp.Dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temp file left behind: %s", e.Name())
		}
	}
	var st State
	if err := readJSON(path, &st); err != nil || st.Tasks[1].Attempts != 59 {
		t.Errorf("final state %v %+v", err, st.Tasks)
	}
}

func TestDerive(t *testing.T) {
	ts := func(states ...TaskState) []TaskStatus {
		out := make([]TaskStatus, len(states))
		for i, s := range states {
			out[i] = TaskStatus{Index: i, State: s}
		}
		return out
	}
	for _, c := range []struct {
		cur   ExperimentState
		tasks []TaskStatus
		want  ExperimentState
	}{
		{ExpPlanned, ts(TaskPending, TaskPending), ExpPlanned},
		{ExpSubmitted, ts(TaskRunning, TaskPending), ExpRunning},
		{ExpRunning, ts(TaskCompleted, TaskCompleted), ExpCompleted},
		{ExpRunning, ts(TaskCompleted, TaskFailed), ExpFailed},
		{ExpRunning, ts(TaskCompleted, TaskTimeout), ExpFailed},
		{ExpRunning, ts(TaskCancelled, TaskCompleted), ExpCancelled},
		{ExpRunning, ts(TaskCancelled, TaskCancelled), ExpCancelled},
		{ExpRunning, ts(TaskCancelled, TaskFailed), ExpFailed},
		{ExpRunning, ts(TaskCancelled, TaskInterrupted), ExpInterrupted},
		{ExpRunning, ts(TaskInterrupted, TaskFailed), ExpInterrupted},
		{ExpInterrupted, ts(TaskInterrupted, TaskPending), ExpInterrupted},
		{ExpSubmitted, ts(TaskCompleted, TaskPending), ExpSubmitted},
		{ExpNotSubmitted, ts(TaskPending), ExpNotSubmitted},
	} {
		if got := Derive(c.cur, c.tasks); got != c.want {
			t.Errorf("Derive(%s, %v) = %s, want %s", c.cur, c.tasks, got, c.want)
		}
	}
}

// BenchmarkPlanAndCreate1000 measures what `gpuorch run` does before the
// executor starts, for a 1,000-point sweep (the Slurm submission benchmark
// in docs/benchmarks.md builds on it).
func BenchmarkPlanAndCreate1000(b *testing.B) {
	src := baseSpec[:strings.Index(baseSpec, "[[workload]]\nname")] + "[sweep]\nseed = [" + strings.Repeat("1,", 99) + "1]\n\"slo.factor\" = [1,2,3,4,5,6,7,8,9,10]\n"
	home := b.TempDir()
	for b.Loop() {
		s, err := ParseSpec("s.toml", []byte(src), nil)
		if err != nil {
			b.Fatal(err)
		}
		p, err := s.Plan()
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Tasks) != 1000 {
			b.Fatalf("%d tasks", len(p.Tasks))
		}
		if _, err := Create(home, s, p, "local"); err != nil {
			b.Fatal(err)
		}
	}
}
