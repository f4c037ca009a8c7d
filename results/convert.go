package results

import (
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
)

// Measurement names of the serving schema (docs/metrics.md).
const (
	MeasServing            = "serving"             // one point per interval snapshot
	MeasServingSummary     = "serving_summary"     // one point per task and breakdown
	MeasServingCalibration = "serving_calibration" // one point per calibrated model
	MeasServingRequest     = "serving_request"     // optional per-request points (off by default)
	// MeasTraining holds the points of Metaseq training logs (schema and
	// parser in results/trainlog; reports chart them).
	MeasTraining = "training"
)

// Tag keys of the serving schema. Every one is low-cardinality: bounded by
// the number of tasks, models, classes or SLO steps of an experiment.
const (
	TagExperiment = "experiment"
	TagTask       = "task"
	TagWorkload   = "workload"
	TagTarget     = "target"
	TagProtocol   = "protocol"
	TagModel      = "model"
	TagClass      = "class"
	TagBreakdown  = "breakdown" // serving_summary only: total, class, step
	TagStep       = "step"      // serving_summary breakdown=step only: step index
	TagShard      = "shard"     // a shard of a sharded task: its index (bounded by run.shards)
)

// Breakdown values of serving_summary points.
const (
	BreakdownTotal = "total"
	BreakdownClass = "class"
	BreakdownStep  = "step"
)

// identityTags are set by gpuorch on every point; a sweep tag with one of
// these names is written as "sweep_<name>" so that it cannot overwrite them.
// model and class are not here: a sweep over models legitimately sets the
// model tag, and a per-model snapshot's own value takes precedence.
var identityTags = map[string]bool{
	TagExperiment: true, TagTask: true, TagWorkload: true, TagTarget: true,
	TagProtocol: true, TagBreakdown: true, TagStep: true, TagShard: true,
}

// SweepTagKey is the tag key a sweep parameter named key is written under.
func SweepTagKey(key string) string {
	if identityTags[key] {
		return "sweep_" + key
	}
	return key
}

// TargetTag reduces a target URL to host:port, the only part that is both
// useful to group by and bounded: paths and queries can vary per request
// (k6's url tag cardinality problem) and user info can hold credentials.
func TargetTag(target string) string {
	if target == "" {
		return ""
	}
	u, err := url.Parse(target)
	if err == nil && u.Host != "" {
		return u.Host
	}
	// Not a URL with a host (e.g. already "host:port"): keep it, minus any
	// path or query.
	if i := strings.IndexAny(target, "/?#"); i >= 0 {
		target = target[:i]
	}
	if i := strings.LastIndexByte(target, '@'); i >= 0 {
		target = target[i+1:]
	}
	return target
}

// sweepKeys returns the task's sweep keys that carry information: a sweep
// key that repeats an identity tag with the same value (a "workload" tag
// equal to the workload name) is left out rather than written twice.
func sweepKeys(meta loadgen.Summary) []string {
	ident := map[string]string{
		TagExperiment: meta.Experiment, TagTask: meta.Task, TagWorkload: meta.Workload,
		TagTarget: TargetTag(meta.Target), TagProtocol: meta.Protocol,
	}
	keys := make([]string, 0, len(meta.Tags))
	for k, v := range meta.Tags {
		if iv, ok := ident[k]; ok && iv == v {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// baseTags are the tags every point of a load run carries: identity tags and
// the task's sweep tags.
func baseTags(meta loadgen.Summary) map[string]string {
	tags := make(map[string]string, 6+len(meta.Tags))
	for _, k := range sweepKeys(meta) {
		tags[SweepTagKey(k)] = meta.Tags[k]
	}
	tags[TagExperiment] = meta.Experiment
	tags[TagTask] = meta.Task
	tags[TagWorkload] = meta.Workload
	tags[TagTarget] = TargetTag(meta.Target)
	tags[TagProtocol] = meta.Protocol
	if meta.Shard != nil {
		tags[TagShard] = strconv.Itoa(meta.Shard.Index)
	}
	return tags
}

// snapshotTags adds a snapshot's class and model (when set) to base.
func snapshotTags(base map[string]string, s loadgen.Snapshot) map[string]string {
	tags := make(map[string]string, len(base)+2)
	for k, v := range base {
		tags[k] = v
	}
	if s.Class != "" {
		tags[TagClass] = s.Class
	}
	if s.Model != "" {
		tags[TagModel] = s.Model
	}
	return tags
}

// ms converts a duration to float milliseconds, the unit of every latency
// field (floats keep sub-millisecond resolution for fast servers).
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// addQuantiles writes prefix_count and, when there are samples, the
// quantiles in milliseconds. With no samples the quantile fields are left out
// rather than written as 0, which charts would draw as a real latency.
func addQuantiles(f map[string]any, prefix string, q loadgen.Quantiles) {
	f[prefix+"_count"] = q.Count
	if q.Count == 0 {
		return
	}
	f[prefix+"_min"] = ms(q.Min)
	f[prefix+"_mean"] = ms(q.Mean)
	f[prefix+"_p25"] = ms(q.P25)
	f[prefix+"_p50"] = ms(q.P50)
	f[prefix+"_p75"] = ms(q.P75)
	f[prefix+"_p90"] = ms(q.P90)
	f[prefix+"_p95"] = ms(q.P95)
	f[prefix+"_p99"] = ms(q.P99)
	f[prefix+"_p999"] = ms(q.P999)
	f[prefix+"_max"] = ms(q.Max)
}

// SLOAttainment is the fraction of offered requests that completed within
// their deadline: dropped, failed and timed-out requests count as misses (as
// in Clockwork). ok is false when nothing was offered.
func SLOAttainment(s loadgen.Snapshot) (v float64, ok bool) {
	if s.Offered <= 0 {
		return 0, false
	}
	return float64(s.SLOMet) / float64(s.Offered), true
}

// snapshotFields holds every measured value of s, in the units of
// docs/metrics.md.
func snapshotFields(s loadgen.Snapshot) map[string]any {
	f := make(map[string]any, 64)
	f["interval"] = int64(s.Interval)
	if !s.Start.IsZero() && s.End.After(s.Start) {
		f["interval_s"] = s.End.Sub(s.Start).Seconds()
	}
	f["slo_factor"] = s.SLOFactor
	f["offered"] = s.Offered
	f["sent"] = s.Sent
	f["completed"] = s.Completed
	f["errors"] = s.Errors
	f["timeouts"] = s.Timeouts
	f["dropped"] = s.Dropped
	f["cancelled"] = s.Cancelled
	f["slo_met"] = s.SLOMet
	f["offered_rate"] = s.OfferedRate
	f["achieved_rate"] = s.AchievedRate
	f["goodput"] = s.Goodput
	if a, ok := SLOAttainment(s); ok {
		f["slo_attainment"] = a
	}
	addQuantiles(f, "latency", s.Latency)
	addQuantiles(f, "service", s.Service)
	addQuantiles(f, "lateness", s.Lateness)
	// LLM metrics only exist for streaming LLM targets; leaving them out
	// elsewhere keeps DNN series free of empty fields.
	for _, m := range []struct {
		name string
		q    loadgen.Quantiles
	}{{"ttft", s.TTFT}, {"tpot", s.TPOT}, {"itl", s.ITL}, {"e2el", s.E2EL}} {
		if m.q.Count > 0 {
			addQuantiles(f, m.name, m.q)
		}
	}
	if s.InputTokens != 0 || s.OutputTokens != 0 {
		f["input_tokens"] = s.InputTokens
		f["output_tokens"] = s.OutputTokens
	}
	for name, enc := range s.HDR {
		putHDR(f, name, enc)
	}
	return f
}

// pointTime is the timestamp of a snapshot's point: the start of its
// interval, so that a rewrite of the same snapshot (a spool replay) lands on
// the same series and time and overwrites instead of double counting.
func pointTime(s loadgen.Snapshot, fallback time.Time) time.Time {
	if !s.Start.IsZero() {
		return s.Start
	}
	if !s.End.IsZero() {
		return s.End
	}
	return fallback
}

// SnapshotPoints converts one interval snapshot of a load run into points of
// measurement "serving". meta supplies the run's identity (experiment, task,
// workload, target, protocol, sweep tags); its measurements are not used.
// The snapshot's class and model, when set, become tags.
func SnapshotPoints(meta loadgen.Summary, s loadgen.Snapshot) []Point {
	f := snapshotFields(s)
	shardFields(f, meta.Shard, false)
	return []Point{{
		Measurement: MeasServing,
		Tags:        snapshotTags(baseTags(meta), s),
		Fields:      f,
		Time:        pointTime(s, meta.Started),
	}}
}

// SummaryPoints converts the outcome of a load run into "serving_summary"
// points — one for the whole run (breakdown=total), one per class
// (breakdown=class) and one per SLO-factor step (breakdown=step) — and one
// "serving_calibration" point per calibrated model.
func SummaryPoints(s loadgen.Summary) []Point {
	base := baseTags(s)
	common := func(f map[string]any) map[string]any {
		f["status"] = s.Status
		if s.Error != "" {
			f["error"] = s.Error
		}
		if !s.Started.IsZero() && s.Ended.After(s.Started) {
			f["duration_s"] = s.Ended.Sub(s.Started).Seconds()
		}
		if keys := sweepKeys(s); len(keys) > 0 {
			// Records which tags are sweep parameters, so that a reader can
			// tell them from identity tags without the plan.
			f["sweep_tags"] = strings.Join(keys, ",")
		}
		shardFields(f, s.Shard, true)
		return f
	}
	runTime := s.Started
	if runTime.IsZero() {
		runTime = pointTime(s.Total, s.Ended)
	}

	pts := make([]Point, 0, 1+len(s.Classes)+len(s.Steps)+len(s.Calibration))
	total := snapshotTags(base, s.Total)
	total[TagBreakdown] = BreakdownTotal
	pts = append(pts, Point{Measurement: MeasServingSummary, Tags: total, Fields: common(snapshotFields(s.Total)), Time: runTime})

	for _, c := range s.Classes {
		tags := snapshotTags(base, c)
		tags[TagBreakdown] = BreakdownClass
		// Same timestamp as the total: the class tag tells the series apart.
		pts = append(pts, Point{Measurement: MeasServingSummary, Tags: tags, Fields: common(snapshotFields(c)), Time: runTime})
	}
	for i, st := range s.Steps {
		tags := snapshotTags(base, st)
		tags[TagBreakdown] = BreakdownStep
		tags[TagStep] = strconv.Itoa(i)
		pts = append(pts, Point{Measurement: MeasServingSummary, Tags: tags, Fields: common(snapshotFields(st)), Time: pointTime(st, runTime)})
	}
	models := make([]string, 0, len(s.Calibration))
	for m := range s.Calibration {
		models = append(models, m)
	}
	sort.Strings(models)
	for _, m := range models {
		tags := make(map[string]string, len(base)+1)
		for k, v := range base {
			tags[k] = v
		}
		tags[TagModel] = m
		f := map[string]any{"batch1_latency_ms": ms(s.Calibration[m])}
		shardFields(f, s.Shard, false)
		pts = append(pts, Point{
			Measurement: MeasServingCalibration,
			Tags:        tags,
			Fields:      f,
			Time:        runTime,
		})
	}
	return pts
}
