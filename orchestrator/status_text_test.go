package orchestrator

import (
	"strings"
	"testing"
)

func TestProgressLine(t *testing.T) {
	st := State{Tasks: []TaskStatus{
		{State: TaskCompleted}, {State: TaskFailed},
		{State: TaskRunning}, {State: TaskPending},
	}}
	got := ProgressLine(st, true)
	want := "[###############...............] 2/4 ended: 1 completed, 1 failed, 1 running, 1 pending"
	if got != want {
		t.Errorf("progressLine = %q, want %q", got, want)
	}
	if plain := ProgressLine(st, false); strings.Contains(plain, "[") || !strings.HasPrefix(plain, "2/4 ended") {
		t.Errorf("plain progress line %q", plain)
	}
	if AllEnded(st) {
		t.Error("allEnded with running tasks")
	}
	st.Tasks[2].State, st.Tasks[3].State = TaskTimeout, TaskCancelled
	if !AllEnded(st) || !strings.HasPrefix(ProgressLine(st, true), "[##############################] 4/4") {
		t.Errorf("all ended: %q", ProgressLine(st, true))
	}
}
