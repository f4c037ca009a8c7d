package results

import (
	"context"
	"time"
)

// Query selects points. Zero values select everything: no experiment
// filter, every measurement, no tag filter, all time.
type Query struct {
	// Experiments keeps points whose experiment tag is one of these.
	Experiments []string
	// Measurement keeps points of this measurement only.
	Measurement string
	// Tags keeps points that carry every one of these tag values.
	Tags map[string]string
	// Start and End bound the point time to [Start, End); zero is unbounded.
	Start, End time.Time
	// Exclude is a hint: points whose tag k has one of the values in
	// Exclude[k] are not needed. Sources may use it to read less (the local
	// store skips those lines before parsing their fields) or ignore it, so
	// callers must still cope with excluded points.
	Exclude map[string][]string
}

// Match reports whether p satisfies q. Sources that cannot filter natively
// (the local store) apply it point by point; others use it in tests to
// check their native filtering agrees.
func (q Query) Match(p Point) bool {
	return q.matchHead(p) && q.matchTime(p)
}

// matchHead checks what a point's measurement and tags decide, Exclude
// included.
func (q Query) matchHead(p Point) bool {
	if q.Measurement != "" && p.Measurement != q.Measurement {
		return false
	}
	if len(q.Experiments) > 0 {
		ok := false
		for _, e := range q.Experiments {
			if p.Tags[TagExperiment] == e {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for k, v := range q.Tags {
		if p.Tags[k] != v {
			return false
		}
	}
	for k, vs := range q.Exclude {
		if v, ok := p.Tags[k]; ok {
			for _, x := range vs {
				if v == x {
					return false
				}
			}
		}
	}
	return true
}

func (q Query) matchTime(p Point) bool {
	if !q.Start.IsZero() && p.Time.Before(q.Start) {
		return false
	}
	if !q.End.IsZero() && !p.Time.Before(q.End) {
		return false
	}
	return true
}

// Source is where review commands read points from: the local store
// (LocalStore) or InfluxDB. Both return the same points for the same query,
// so every table, comparison and report works on either.
type Source interface {
	Query(ctx context.Context, q Query) ([]Point, error)
}
