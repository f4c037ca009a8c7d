package results

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/influxdata/influxdb-client-go/v2/api/query"
)

// InfluxSource reads points back from InfluxDB with Flux. It returns the
// same points as the local store holds for the same query (measurement,
// tags, typed fields, nanosecond time), so show, compare and report give
// the same output on either.
type InfluxSource struct {
	Cfg InfluxConfig
}

// NewInfluxSource returns a Source over cfg's bucket.
func NewInfluxSource(cfg InfluxConfig) *InfluxSource { return &InfluxSource{Cfg: cfg.withDefaults()} }

// Flux time bounds for an unbounded query: all of int64 nanoseconds that
// Flux accepts comfortably.
var (
	fluxMinTime = time.Unix(0, 0).UTC()
	fluxMaxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// FluxQuery renders q as a Flux query on bucket that yields one row per
// point (fields pivoted into columns).
func FluxQuery(bucket string, q Query) string {
	start, stop := fluxMinTime, fluxMaxTime
	if !q.Start.IsZero() {
		start = q.Start
	}
	if !q.End.IsZero() {
		stop = q.End
	}
	var b strings.Builder
	fmt.Fprintf(&b, "from(bucket: %s)\n", fluxString(bucket))
	fmt.Fprintf(&b, "  |> range(start: %s, stop: %s)\n", start.UTC().Format(time.RFC3339Nano), stop.UTC().Format(time.RFC3339Nano))
	if q.Measurement != "" {
		fmt.Fprintf(&b, "  |> filter(fn: (r) => r._measurement == %s)\n", fluxString(q.Measurement))
	}
	if len(q.Experiments) > 0 {
		var or []string
		for _, e := range q.Experiments {
			or = append(or, fmt.Sprintf("r[%s] == %s", fluxString(TagExperiment), fluxString(e)))
		}
		fmt.Fprintf(&b, "  |> filter(fn: (r) => %s)\n", strings.Join(or, " or "))
	}
	for _, k := range sortedKeys(q.Tags) {
		fmt.Fprintf(&b, "  |> filter(fn: (r) => r[%s] == %s)\n", fluxString(k), fluxString(q.Tags[k]))
	}
	b.WriteString(`  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")` + "\n")
	return b.String()
}

// Query runs q and returns the points sorted like the local store returns
// them: by experiment, task (natural order), then time.
func (s *InfluxSource) Query(ctx context.Context, q Query) ([]Point, error) {
	cfg := s.Cfg.withDefaults()
	// The request timeout covers reading the whole answer, which for a big
	// experiment takes far longer than a write: give queries minutes; the
	// caller's context still bounds them.
	qcfg := cfg
	qcfg.Timeout = max(cfg.Timeout, 10*time.Minute)
	c := NewInfluxClient(qcfg)
	defer c.Close()
	flux := FluxQuery(cfg.Bucket, q)
	res, err := c.QueryAPI(cfg.Org).Query(ctx, flux)
	if err != nil {
		return nil, fmt.Errorf("influxdb query: %w", httpCheckError(cfg, err, "Flux query on bucket "+cfg.Bucket))
	}
	defer res.Close()
	var (
		pts  []Point
		tags []string // group-key columns of the current table that are tags
	)
	for res.Next() {
		if res.TableChanged() {
			tags = tags[:0]
			for _, col := range res.TableMetadata().Columns() {
				if col.IsGroup() && !strings.HasPrefix(col.Name(), "_") && col.Name() != "result" && col.Name() != "table" {
					tags = append(tags, col.Name())
				}
			}
		}
		p := recordPoint(res.Record(), tags)
		// InfluxDB 1.8's storage read includes points at the range's stop;
		// Match keeps the [Start, End) contract of Query.
		if q.Match(p) {
			pts = append(pts, p)
		}
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("influxdb query: %w", httpCheckError(cfg, err, "Flux query on bucket "+cfg.Bucket))
	}
	sortPoints(pts)
	return pts, nil
}

func recordPoint(r *query.FluxRecord, tagCols []string) Point {
	p := Point{Measurement: r.Measurement(), Time: r.Time(), Tags: map[string]string{}, Fields: map[string]any{}}
	isTag := make(map[string]bool, len(tagCols))
	for _, k := range tagCols {
		isTag[k] = true
		if v, ok := r.Values()[k].(string); ok && v != "" {
			p.Tags[k] = v
		}
	}
	for k, v := range r.Values() {
		if v == nil || isTag[k] || strings.HasPrefix(k, "_") || k == "result" || k == "table" {
			continue
		}
		p.Fields[k] = v
	}
	return p
}

func sortPoints(pts []Point) {
	sort.SliceStable(pts, func(i, j int) bool {
		a, b := pts[i], pts[j]
		if x, y := a.Tags[TagExperiment], b.Tags[TagExperiment]; x != y {
			return x < y
		}
		if x, y := a.Tags[TagTask], b.Tags[TagTask]; x != y {
			return NaturalLess(x, y)
		}
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		if a.Measurement != b.Measurement {
			return a.Measurement < b.Measurement
		}
		return tagString(a.Tags) < tagString(b.Tags)
	})
}

func tagString(tags map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(tags) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(tags[k])
		b.WriteByte(',')
	}
	return b.String()
}
