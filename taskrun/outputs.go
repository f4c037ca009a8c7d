package taskrun

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/results"
)

// outputs writes a run's files: snapshots.jsonl as intervals finish,
// metrics through the task sink, requests.jsonl as requests end (when asked
// for), summary.json at the end. With no directory it writes nothing.
type outputs struct {
	dir   layout.Task
	meta  loadgen.Summary
	snaps *os.File
	bw    *bufio.Writer
	sink  results.Sink
	// borrowed: the sink is the caller's (Options.Sink), not closed here.
	borrowed bool
	rows     *rowWriter
	mu       sync.Mutex
	err      error
}

func (o *outputs) open(ctx context.Context, meta loadgen.Summary, perRequest bool) error {
	o.meta = meta
	if o.dir == "" {
		return nil
	}
	if err := os.MkdirAll(string(o.dir), 0o755); err != nil {
		return err
	}
	f, err := os.Create(o.dir.Snapshots())
	if err != nil {
		return err
	}
	o.snaps, o.bw = f, bufio.NewWriter(f)
	if o.sink == nil {
		if o.sink, err = OpenSink(ctx, o.dir); err != nil {
			o.close()
			return fmt.Errorf("open metrics sink: %w", err)
		}
	} else {
		o.borrowed = true
	}
	// A benchmark's prediction goes through the task sink too, so that
	// InfluxDB has it beside the measurements (same tags and time on every
	// run: a rerun overwrites the point).
	if err := CopyPrediction(ctx, o.dir, o.sink); err != nil {
		slog.Warn("prediction not written to the task sink", "err", err)
	}
	if perRequest {
		if o.rows, err = newRowWriter(o.dir.Requests()); err != nil {
			o.close()
			return err
		}
	}
	return nil
}

func (o *outputs) fail(err error) {
	if err != nil && o.err == nil {
		o.err = err
		slog.Error("write results", "err", err)
	}
}

func (o *outputs) snapshot(s loadgen.Snapshot) {
	if o.dir == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	b, _ := json.Marshal(s)
	b = append(b, '\n')
	_, err := o.bw.Write(b)
	o.fail(err)
	// One snapshot a second: flush each, so `gpuorch run` (and anyone
	// tailing the file) sees rate, p99 and errors while the task runs.
	o.fail(o.bw.Flush())
	o.fail(o.sink.Write(context.Background(), results.SnapshotPoints(o.meta, s)...))
}

func (o *outputs) summary(sum *loadgen.Summary) error {
	if o.dir == "" {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rows != nil {
		o.fail(o.rows.close())
		o.rows = nil
	}
	o.fail(o.sink.Write(context.Background(), results.SummaryPoints(*sum)...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o.fail(o.sink.Flush(ctx))
	o.fail(o.bw.Flush())
	o.fail(atomicfile.WriteJSON(o.dir.Summary(), sum, 0o644))
	return o.err
}

func (o *outputs) close() {
	if o.rows != nil {
		o.fail(o.rows.close())
	}
	if o.snaps != nil {
		_ = o.bw.Flush()
		o.fail(o.snaps.Close())
	}
	if o.sink != nil && !o.borrowed {
		o.fail(o.sink.Close())
	}
}

// CopyPrediction writes the points of a task's prediction.lp to sink.
func CopyPrediction(ctx context.Context, dir layout.Task, sink results.Sink) error {
	path := dir.Prediction()
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var pts []results.Point
	if err := results.ReadLineFile(path, results.MeasServingPrediction, func(p results.Point) { pts = append(pts, p) }, nil); err != nil {
		return err
	}
	if len(pts) == 0 {
		return nil
	}
	return sink.Write(ctx, pts...)
}

// LastSnapshot reads the last complete line of a task's snapshots.jsonl,
// which a running task appends to every interval. For a sharded task it
// merges its shards' last snapshots when they are of the same interval.
func LastSnapshot(dir layout.Task) (loadgen.Snapshot, bool) {
	if snap, ok := lastSnapshot(dir); ok {
		return snap, true
	}
	var snaps []loadgen.Snapshot
	for s := 0; ; s++ {
		snap, ok := lastSnapshot(dir.Shard(s))
		if !ok {
			break
		}
		if len(snaps) > 0 && snap.Interval != snaps[0].Interval {
			return loadgen.Snapshot{}, false
		}
		snaps = append(snaps, snap)
	}
	if len(snaps) == 0 {
		return loadgen.Snapshot{}, false
	}
	m, err := loadgen.MergeSnapshots(snaps)
	return m, err == nil
}

func lastSnapshot(dir layout.Task) (loadgen.Snapshot, bool) {
	var snap loadgen.Snapshot
	// Only the tail is read, so only the file's kind is checked (a named
	// pipe in its place must not block the progress display).
	f, err := limitio.Open(context.Background(), dir.Snapshots(), limitio.Metrics)
	if err != nil {
		return snap, false
	}
	defer f.Close()
	const tail = 256 << 10 // a shard's lines carry histograms
	off := max(f.Size()-tail, 0)
	buf := make([]byte, f.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return snap, false
	}
	buf = bytes.TrimRight(buf[:bytes.LastIndexByte(buf, '\n')+1], "\n")
	if len(buf) == 0 {
		return snap, false
	}
	line := buf[bytes.LastIndexByte(buf, '\n')+1:]
	if json.Unmarshal(line, &snap) != nil {
		return snap, false
	}
	return snap, true
}
