package main

import (
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/orchestrator"
)

func TestProgressLine(t *testing.T) {
	st := orchestrator.State{Tasks: []orchestrator.TaskStatus{
		{State: orchestrator.TaskCompleted}, {State: orchestrator.TaskFailed},
		{State: orchestrator.TaskRunning}, {State: orchestrator.TaskPending},
	}}
	got := progressLine(st, true)
	want := "[###############...............] 2/4 ended: 1 completed, 1 failed, 1 running, 1 pending"
	if got != want {
		t.Errorf("progressLine = %q, want %q", got, want)
	}
	if plain := progressLine(st, false); strings.Contains(plain, "[") || !strings.HasPrefix(plain, "2/4 ended") {
		t.Errorf("plain progress line %q", plain)
	}
	if allEnded(st) {
		t.Error("allEnded with running tasks")
	}
	st.Tasks[2].State, st.Tasks[3].State = orchestrator.TaskTimeout, orchestrator.TaskCancelled
	if !allEnded(st) || !strings.HasPrefix(progressLine(st, true), "[##############################] 4/4") {
		t.Errorf("all ended: %q", progressLine(st, true))
	}
}
