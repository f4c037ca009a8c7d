package results

import (
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
)

// A task that runs again — `gpuorch run --resume` after an interruption,
// `gpuorch retry` after a failure, a requeued Slurm task — writes a second
// attempt's points onto the same series as the first: the same experiment
// and task tags, in the same metrics.lp and the same InfluxDB series. Review
// reports each task once, from its latest attempt.
//
// Attempts are told apart by what every source keeps, the points' times.
// Each attempt starts with interval 0 and ends with its serving_summary
// total, both stamped with the attempt's start (docs/metrics.md); every
// other point of it lies at or after that start, and attempts of one task
// never overlap (an executor starts a task again only once it has ended).
// So the latest start marks the latest attempt, and every earlier point
// belongs to an earlier one.

// attemptStart reports whether p marks the start of an attempt, and when.
func attemptStart(p Point) (time.Time, bool) {
	switch p.Measurement {
	case MeasServingSummary:
		if b := p.Tags[TagBreakdown]; b == BreakdownTotal || b == "" {
			return p.Time, true
		}
	case MeasServing:
		// Only the field's presence counts: a point without it (written by
		// another tool) marks nothing.
		if _, ok := p.Fields["interval"]; ok && fieldInt(p.Fields, "interval") == 0 {
			return p.Time, true
		}
	}
	return time.Time{}, false
}

// latestStarts returns, per task, the start of its latest attempt among the
// points given.
func latestStarts(sets ...[]Point) map[taskKey]time.Time {
	latest := map[taskKey]time.Time{}
	for _, pts := range sets {
		for _, p := range pts {
			if s, ok := attemptStart(p); ok {
				k := taskKey{p.Tags[TagExperiment], p.Tags[TagTask]}
				if cur, seen := latest[k]; !seen || s.After(cur) {
					latest[k] = s
				}
			}
		}
	}
	return latest
}

// latestAttempts keeps, of the summary and interval points, those of each
// task's latest attempt. Points of a task with no attempt start among them
// are kept as they are.
func latestAttempts(summary, intervals []Point) ([]Point, []Point) {
	latest := latestStarts(summary, intervals)
	keep := func(pts []Point) []Point {
		out := pts[:0:0]
		for _, p := range pts {
			if s, ok := latest[taskKey{p.Tags[TagExperiment], p.Tags[TagTask]}]; ok && p.Time.Before(s) {
				continue
			}
			out = append(out, p)
		}
		return out
	}
	return keep(summary), keep(intervals)
}

// finishedTasks lists the tasks whose latest attempt among the summary
// points completed. Their interval points are not needed (the summary says
// everything), and no later attempt can follow a completed one (resume and
// retry run only tasks that did not complete).
func finishedTasks(summary []Point) []string {
	type last struct {
		start  time.Time
		status string
	}
	latest := map[taskKey]last{}
	var order []taskKey
	for _, p := range summary {
		s, ok := attemptStart(p)
		if !ok || p.Measurement != MeasServingSummary {
			continue
		}
		k := taskKey{p.Tags[TagExperiment], p.Tags[TagTask]}
		cur, seen := latest[k]
		if !seen {
			order = append(order, k)
		}
		if !seen || !s.Before(cur.start) {
			st, _ := p.Fields["status"].(string)
			latest[k] = last{s, st}
		}
	}
	var out []string
	for _, k := range order {
		if latest[k].status == loadgen.StatusCompleted && k.task != "" {
			out = append(out, k.task)
		}
	}
	return out
}
