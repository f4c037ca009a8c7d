package taskrun

import (
	"os"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
)

func TestLastSnapshot(t *testing.T) {
	dir := layout.Task(t.TempDir())
	path := dir.Snapshots()
	if _, ok := LastSnapshot(dir); ok {
		t.Error("snapshot from a missing file")
	}
	os.WriteFile(path, []byte(`{"interval":0,"achieved_rate":5}`+"\n"+`{"interval":1,"achieved_rate":7,"latency":{"p99":2000000}}`+"\n"+`{"interval":2,"achie`), 0o644)
	s, ok := LastSnapshot(dir)
	if !ok || s.Interval != 1 || s.AchievedRate != 7 || s.Latency.P99 != 2*time.Millisecond {
		t.Errorf("got %+v %v, want interval 1 (the last complete line)", s, ok)
	}
	os.WriteFile(path, []byte(`{"interval":0`), 0o644)
	if _, ok := LastSnapshot(dir); ok {
		t.Error("snapshot from a partial line")
	}
}
