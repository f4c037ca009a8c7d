package results

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func lines(from, to int) ([]byte, int) {
	var b bytes.Buffer
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "m v=%di %d\n", i, i)
	}
	return b.Bytes(), to - from
}

func TestSpoolReplayInOrderAcrossSegmentsAndReopen(t *testing.T) {
	dir := t.TempDir()
	sp, err := OpenSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	sp.maxSegment = 200 // force many segments
	for i := 0; i < 100; i += 10 {
		b, n := lines(i, i+10)
		if err := sp.Append(b, n); err != nil {
			t.Fatal(err)
		}
	}
	if got := sp.Pending(); got != 100 {
		t.Fatalf("pending = %d, want 100", got)
	}
	// A second opener is refused while the first holds the lock.
	if _, err := OpenSpool(dir); !errors.Is(err, ErrSpoolBusy) {
		t.Fatalf("second open: err = %v, want ErrSpoolBusy", err)
	}
	// Replay fails part way: nothing is lost, and delivered lines are not
	// counted as pending any more.
	var got bytes.Buffer
	calls := 0
	failAt := 4
	send := func(_ context.Context, b []byte, n int) error {
		calls++
		if calls == failAt {
			return errors.New("server down")
		}
		if bytes.Count(b, []byte{'\n'}) != n || n > 7 {
			t.Errorf("batch of %d lines claims %d (limit 7)", bytes.Count(b, []byte{'\n'}), n)
		}
		got.Write(b)
		return nil
	}
	n, err := sp.Replay(context.Background(), 7, send)
	if err == nil || n == 0 || n >= 100 {
		t.Fatalf("replay with failure: n=%d err=%v", n, err)
	}
	if sp.Pending() != 100-n {
		t.Fatalf("pending = %d after delivering %d", sp.Pending(), n)
	}
	// Reopen (as `results push` would after the writer exited) and finish.
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	sp, err = OpenSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	failAt = -1
	if _, err := sp.Replay(context.Background(), 7, send); err != nil {
		t.Fatal(err)
	}
	if sp.Pending() != 0 {
		t.Fatalf("pending = %d after full replay", sp.Pending())
	}
	// Every line arrived, in order; a segment interrupted part way may be
	// sent again from its start, which is harmless for idempotent points.
	want, _ := lines(0, 100)
	if dedup := dedupLines(got.String()); dedup != string(want) {
		t.Fatalf("replayed lines (deduplicated) differ:\n%s", dedup)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.lp")); len(segs) != 0 {
		t.Fatalf("segments left: %v", segs)
	}
}

func dedupLines(s string) string {
	seen := map[string]bool{}
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l == "" || seen[l] {
			continue
		}
		seen[l] = true
		b.WriteString(l)
	}
	return b.String()
}

func TestSpoolDropsTornTail(t *testing.T) {
	dir := t.TempDir()
	b, _ := lines(0, 3)
	b = append(b, "m v=9i 9"...) // an append cut short by a crash
	if err := os.WriteFile(filepath.Join(dir, "seg-0000000000000000.lp"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := OpenSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if sp.Pending() != 3 {
		t.Fatalf("pending = %d, want 3", sp.Pending())
	}
	var got []byte
	if _, err := sp.Replay(context.Background(), 100, func(_ context.Context, b []byte, n int) error {
		got = append(got, b...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want, _ := lines(0, 3)
	if string(got) != string(want) || sp.Pending() != 0 {
		t.Fatalf("got %q pending %d", got, sp.Pending())
	}
	// New appends after reopening go to a new segment, not the torn one.
	b2, n2 := lines(10, 11)
	if err := sp.Append(b2, n2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "seg-0000000000000001.lp")); err != nil {
		t.Fatal(err)
	}
}

// Failed replay attempts (server still down) must not split the spool into
// a new file each time; appends during a replay are delivered too.
func TestSpoolReplayActiveSegmentInPlace(t *testing.T) {
	dir := t.TempDir()
	sp, err := OpenSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	down := func(context.Context, []byte, int) error { return errors.New("down") }
	for i := 0; i < 10; i++ {
		b, n := lines(i*5, i*5+5)
		if err := sp.Append(b, n); err != nil {
			t.Fatal(err)
		}
		if _, err := sp.Replay(context.Background(), 100, down); err == nil {
			t.Fatal("replay to a down server succeeded")
		}
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.lp")); len(segs) != 1 {
		t.Fatalf("%d segment files after 10 failed replays, want 1", len(segs))
	}
	// Server back; a writer keeps appending while the replay runs.
	var got bytes.Buffer
	appended := 50
	send := func(_ context.Context, b []byte, n int) error {
		got.Write(b)
		if appended < 200 {
			b2, n2 := lines(appended, appended+10)
			appended += 10
			if err := sp.Append(b2, n2); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	}
	if _, err := sp.Replay(context.Background(), 7, send); err != nil {
		t.Fatal(err)
	}
	want, _ := lines(0, 200)
	if got.String() != string(want) || sp.Pending() != 0 {
		t.Fatalf("delivered %d bytes (want %d), pending %d", got.Len(), len(want), sp.Pending())
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.lp")); len(segs) != 0 {
		t.Fatalf("segments left: %v", segs)
	}
}
