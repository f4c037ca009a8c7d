package results

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/loadgen"
)

func benchPoint() Point {
	meta := testMeta()
	return SnapshotPoints(meta, fullSnapshot())[0]
}

// BenchmarkAppendLine encodes one full serving point (all latency and LLM
// fields, ~110 fields).
func BenchmarkAppendLine(b *testing.B) {
	p := benchPoint()
	var buf []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = AppendLine(buf[:0], p)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkParseLine parses the same point back.
func BenchmarkParseLine(b *testing.B) {
	line, _ := AppendLine(nil, benchPoint())
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ParseLine(line); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadExperiment builds the review model of an experiment of 100
// tasks × 300 one-second intervals (30,000 interval points) from the local
// store: what `gpuorch results show` does.
func BenchmarkLoadExperiment(b *testing.B) {
	dir := b.TempDir()
	meta := testMeta()
	meta.Status = loadgen.StatusCompleted
	s := fullSnapshot()
	s.Class, s.Model = "", ""
	meta.Total = s
	for task := 0; task < 100; task++ {
		meta.Task = fmt.Sprintf("t%03d", task)
		lf, err := OpenLineFile(fmt.Sprintf("%s/tasks/%d/%s", dir, task, layout.MetricsFile))
		if err != nil {
			b.Fatal(err)
		}
		for k := 0; k < 300; k++ {
			s.Interval, s.Start = k, t0.Add(time.Duration(k)*time.Second)
			lf.Write(context.Background(), SnapshotPoints(meta, s)...)
		}
		lf.Write(context.Background(), SummaryPoints(meta)...)
		lf.Close()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Load(context.Background(), NewLocalStore(dir), "")
		if err != nil || len(res.Tasks) != 100 {
			b.Fatal(err, len(res.Tasks))
		}
	}
}
