// Package results holds gpuorch's metric points, the sinks that store them
// (a local line-protocol store, InfluxDB), and the queries, summaries,
// reports and dashboards that read them back.
package results

import (
	"context"
	"time"
)

// Point is one metric sample: a measurement, low-cardinality tags, typed
// fields and a timestamp. It maps one to one onto an InfluxDB point.
//
// Field values are float64, int64, uint64, string or bool.
type Point struct {
	Measurement string
	Tags        map[string]string
	Fields      map[string]any
	Time        time.Time
}

// Sink stores points. Implementations batch as they see fit; Flush makes
// everything written so far durable (or returns why it could not), Close
// flushes and releases resources.
type Sink interface {
	Write(ctx context.Context, pts ...Point) error
	Flush(ctx context.Context) error
	Close() error
}
