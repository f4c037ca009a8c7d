package sbatch

import (
	"reflect"
	"testing"
)

func TestParseState(t *testing.T) {
	tests := map[string]State{
		"PENDING": StatePending, "RUNNING": StateRunning, "COMPLETED": StateCompleted,
		"FAILED": StateFailed, "TIMEOUT": StateTimeout, "CANCELLED by 0": StateCancelled,
		"CANCELLED+": StateCancelled, "NODE_FAIL": StateNodeFail, "PREEMPTED": StatePreempted,
		"OUT_OF_MEMORY": StateOutOfMemory, "OOM": StateOutOfMemory, "CD": StateCompleted,
		"PD": StatePending, "COMPLETING": StateCompleting, "BOOT_FAIL": StateUnknown,
		"DEADLINE": StateUnknown, "": StateUnknown, "REQUEUED": StateRequeued,
	}
	for in, want := range tests {
		if got := ParseState(in); got != want {
			t.Errorf("ParseState(%q) = %s, want %s", in, got, want)
		}
	}
	for _, s := range []State{StateFailed, StateTimeout, StateNodeFail, StatePreempted, StateOutOfMemory} {
		if !s.Retryable() || !s.Terminal() || !s.Failed() {
			t.Errorf("%s should be terminal, failed and retryable", s)
		}
	}
	for _, s := range []State{StateCompleted, StateCancelled, StatePending, StateRunning, StateUnknown} {
		if s.Retryable() {
			t.Errorf("%s should not be retryable", s)
		}
	}
	if StateRunning.Terminal() || StatePending.Terminal() || StateUnknown.Terminal() {
		t.Error("live states reported terminal")
	}
}

func TestParseTaskID(t *testing.T) {
	tests := []struct {
		in   string
		want TaskID
		err  bool
	}{
		{"123", TaskID{JobID: "123", Index: -1}, false},
		{"123_4", TaskID{JobID: "123", Index: 4}, false},
		{"123_[5-9%2]", TaskID{JobID: "123", Index: -1, Indices: []int{5, 6, 7, 8, 9}}, false},
		{"123_[1,3,5-7]", TaskID{JobID: "123", Index: -1, Indices: []int{1, 3, 5, 6, 7}}, false},
		{"123_[0-8:4]", TaskID{JobID: "123", Index: -1, Indices: []int{0, 4, 8}}, false},
		{"77+1", TaskID{JobID: "77", Index: -1}, false},
		{"abc", TaskID{}, true},
		{"12_x", TaskID{}, true},
		{"12_[3-", TaskID{}, true},
		{"12_[5-3]", TaskID{}, true},
	}
	for _, tt := range tests {
		got, err := ParseTaskID(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParseTaskID(%q) err = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if !tt.err && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseTaskID(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestExpandArraySpecRoundTrip(t *testing.T) {
	for _, idx := range [][]int{{0}, {0, 1, 2}, {1, 4, 5, 6, 10}, {3, 999, 1000}} {
		spec := ArraySpec(idx)
		got, err := ExpandArraySpec(spec + "%3")
		if err != nil || !reflect.DeepEqual(got, idx) {
			t.Errorf("ExpandArraySpec(ArraySpec(%v)=%q) = %v, %v", idx, spec, got, err)
		}
	}
}

func FuzzParseTaskID(f *testing.F) {
	for _, s := range []string{"1", "1_2", "1_[2-3%1]", "1_[0-10:2,15]", "9+0", "_", "1_[", "1_[99999999999]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseTaskID(s)
		if err != nil {
			return
		}
		if id.JobID == "" {
			t.Fatalf("%q parsed without a job id", s)
		}
		for _, i := range id.Indices {
			if i < 0 {
				t.Fatalf("%q: negative index", s)
			}
		}
	})
}

func TestParseExitStatus(t *testing.T) {
	tests := map[string]ExitStatus{"0:0": {}, "3:0": {Code: 3}, "0:15": {Signal: 15}, "": {}}
	for in, want := range tests {
		got, err := ParseExitStatus(in)
		if err != nil || got != want {
			t.Errorf("ParseExitStatus(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseExitStatus("x:1"); err == nil {
		t.Error("bad exit status accepted")
	}
}

// Output captured from the 22.05 test cluster (array 0-5%2, task 3 exits 3,
// task 4 not yet in sacct, task 5 running).
func TestParseSacctAndMerge(t *testing.T) {
	acct, err := parseSacct("2_0|COMPLETED|0:0|node1|2026-11-22T07:12:42|2026-11-22T07:12:43\n" +
		"2_3|FAILED|3:0|node1|2026-11-22T07:12:45|2026-11-22T07:12:46\n" +
		"2_5|RUNNING|0:0|node1|2026-11-22T07:12:48|Unknown\n" +
		"2_[6-7%2]|PENDING|0:0|None assigned|Unknown|Unknown\n")
	if err != nil {
		t.Fatal(err)
	}
	queue, err := parseSqueue("2_5|RUNNING|None|node1\n2_6|PENDING|JobArrayTaskLimit|\n2_7|PENDING|JobArrayTaskLimit|\n")
	if err != nil {
		t.Fatal(err)
	}
	tasks := MergeTasks("2", queue, acct, []int{0, 3, 4, 5, 6, 7})
	want := []struct {
		idx   int
		state State
		exit  int
		done  bool
	}{
		{0, StateCompleted, 0, true}, {3, StateFailed, 3, true}, {4, StateUnknown, 0, false},
		{5, StateRunning, 0, false}, {6, StatePending, 0, false}, {7, StatePending, 0, false},
	}
	if len(tasks) != len(want) {
		t.Fatalf("got %d tasks, want %d: %+v", len(tasks), len(want), tasks)
	}
	for i, w := range want {
		g := tasks[i]
		if g.Index != w.idx || g.State != w.state || g.Exit.Code != w.exit || g.Done() != w.done {
			t.Errorf("task %d = %+v (done %v), want %+v", i, g, g.Done(), w)
		}
	}
	if tasks[5].Nodes != "" {
		t.Errorf("pending task nodes %q, want empty", tasks[5].Nodes)
	}
	if tasks[4].Reason != "JobArrayTaskLimit" || tasks[1].ID() != "2_3" {
		t.Errorf("reason/id wrong: %+v", tasks[4])
	}
}

func TestParseParsable(t *testing.T) {
	for in, want := range map[string]string{"42\n": "42", "42;ci\n": "42", "sbatch: warning: x\n43\n": "43"} {
		got, err := parseParsable(in)
		if err != nil || got != want {
			t.Errorf("parseParsable(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := parseParsable("Submitted batch job 5"); err == nil {
		t.Error("non-parsable output accepted")
	}
}

// FuzzParseAccounting feeds arbitrary text to the squeue and sacct parsers:
// they return an error or well-formed rows, never panic.
func FuzzParseAccounting(f *testing.F) {
	f.Add("2_0|COMPLETED|0:0|node1|2026-11-22T07:12:42|2026-11-22T07:12:43\n2_[6-7%2]|PENDING|0:0|None assigned|Unknown|Unknown\n")
	f.Add("5|CANCELLED by 0|0:15|node[1-2]|None|2026-11-22T07:26:11\n")
	f.Add("2_5|RUNNING|None|node1\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, parse := range []func(string) ([]Task, error){parseSacct, parseSqueue} {
			tasks, err := parse(s)
			if err != nil {
				continue
			}
			for _, task := range tasks {
				if task.JobID == "" || task.Index < -1 {
					t.Fatalf("bad row %+v from %q", task, s)
				}
				if task.Done() && !task.State.Terminal() {
					t.Fatalf("done but not terminal: %+v", task)
				}
			}
		}
	})
}
