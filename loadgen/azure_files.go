package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
)

// AzureDay is one generated trace day.
type AzureDay struct {
	Path        string
	Functions   int
	Invocations uint64
}

// GenerateAzureTraceDays writes synthetic trace days d01 … dNN (days in
// 1-14) into dir, created if need be, and says what each holds. Options out
// of range (AzureGenOptions.Validate) are refused before anything is
// written; a day is generated row by row as it is written, and generation
// stops with ctx's error, leaving no partial file, when ctx is done.
func GenerateAzureTraceDays(ctx context.Context, dir string, days int, o AzureGenOptions) ([]AzureDay, error) {
	if days < 1 || days > 14 {
		return nil, &FieldError{Key: "days", Value: strconv.Itoa(days), Want: "want 1 to 14"}
	}
	if o.Functions < 1 {
		return nil, &FieldError{Key: "functions", Value: strconv.Itoa(o.Functions), Want: fmt.Sprintf("want 1 to %d functions a day", MaxAzureFunctions)}
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []AzureDay
	for d := 1; d <= days; d++ {
		o.Day = d
		path := filepath.Join(dir, fmt.Sprintf("invocations_per_function_md.anon.d%02d.csv", d))
		day := AzureDay{Path: path}
		err := atomicfile.Write(path, 0o644, func(w io.Writer) error {
			bw := bufio.NewWriterSize(w, 1<<20)
			writeAzureHeader(bw)
			var buf []byte
			err := generateAzure(ctx, o, func(f *AzureFunction) error {
				buf = writeAzureRow(bw, f, buf)
				day.Functions++
				day.Invocations += f.Total
				return nil
			})
			if err != nil {
				return err
			}
			return bw.Flush()
		})
		if err != nil {
			return out, err
		}
		out = append(out, day)
	}
	return out, nil
}

// AzureStats summarise a trace day: what the azure workload would offer.
type AzureStats struct {
	File        string  `json:"file"`
	Functions   int     `json:"functions"`
	Invocations uint64  `json:"invocations"`
	MeanPerS    float64 `json:"mean_per_s"`
	PeakMinute  float64 `json:"peak_minute_per_s"`
	Top10Share  float64 `json:"top10_share"`
	// RateAtScale1 is what the azure workload offers per second at
	// load_factor × 0.125 × num_workers = 1.
	RateAtScale1 float64 `json:"azure_rate_per_s_at_scale_1"`
}

// Stats summarises the trace: invocations, the busiest minute, and the
// share of the ten busiest functions.
func (t *AzureTrace) Stats() AzureStats {
	fns := t.ByPopularity()
	var total uint64
	peak := make([]uint64, AzureMinutes)
	for _, f := range fns {
		total += f.Total
		for m, v := range f.Counts {
			peak[m] += uint64(v)
		}
	}
	var pk uint64
	for _, v := range peak {
		pk = max(pk, v)
	}
	var topShare uint64
	for _, f := range fns[:min(10, len(fns))] {
		topShare += f.Total
	}
	return AzureStats{File: t.File, Functions: len(fns), Invocations: total,
		MeanPerS: float64(total) / 86400, PeakMinute: float64(pk) / 60,
		Top10Share: float64(topShare) / float64(max(total, 1)), RateAtScale1: float64(total) / 86400}
}
