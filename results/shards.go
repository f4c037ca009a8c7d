package results

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/loadgen"
)

// The shards of a sharded task (loadgen.Config.Shards) write their own
// points, tagged shard=<index>, with their histograms losslessly encoded
// in string fields (X_hdr, see putHDR). Review merges them: counts add up,
// and percentiles come from the merged histograms — exactly what one
// generator that had sent every request would have reported, never an
// average of the shards' percentiles.

// HDRChunk is the longest piece of an encoded histogram one string field
// holds: InfluxDB 1.8 documents 64 KiB as a string field's limit. (1.8.10
// stores longer ones, measured in docs/benchmarks.md; other versions and
// relays may not.) A longer encoding continues in X_hdr_1, X_hdr_2, ….
const HDRChunk = 60000

// hdrField is the field of chunk i of distribution name's histogram.
func hdrField(name string, i int) string {
	if i == 0 {
		return name + "_hdr"
	}
	return name + "_hdr_" + strconv.Itoa(i)
}

// putHDR stores an encoded histogram in f, chunked.
func putHDR(f map[string]any, name, enc string) {
	for i := 0; len(enc) > 0; i++ {
		n := min(len(enc), HDRChunk)
		f[hdrField(name, i)] = enc[:n]
		enc = enc[n:]
	}
}

// getHDR reassembles distribution name's encoded histogram from f.
func getHDR(f map[string]any, name string) (string, bool) {
	var b strings.Builder
	for i := 0; ; i++ {
		s, ok := f[hdrField(name, i)].(string)
		if !ok {
			return b.String(), i > 0
		}
		b.WriteString(s)
	}
}

// shardFields adds a shard's identity to its points' fields: the number of
// shards and the attempt (on every point: review merges the points of one
// attempt), the host, and on summaries how its start lined up.
func shardFields(f map[string]any, sh *loadgen.ShardInfo, summary bool) {
	if sh == nil {
		return
	}
	f["shards"] = int64(sh.Count)
	f["shard_attempt"] = sh.Attempt
	if sh.Host != "" {
		f["shard_host"] = sh.Host
	}
	if summary {
		if sh.Split != "" {
			f["shard_split"] = sh.Split
		}
		if !sh.Start.IsZero() {
			f["shard_start_offset_ms"] = ms(sh.StartOffset)
			f["shard_clock_offset_ms"] = ms(sh.ClockOffset)
			f["shard_clock_uncertainty_ms"] = ms(sh.ClockUncertainty)
		}
	}
}

// Fields of a shard's point that merging sums, and the rates it recomputes.
var (
	summedFields = []string{"offered", "sent", "completed", "errors", "timeouts", "dropped", "cancelled", "slo_met", "input_tokens", "output_tokens"}
	rateFields   = map[string]string{"offered_rate": "offered", "achieved_rate": "completed", "goodput": "slo_met"}
)

// MergeShards returns pts with the points of every sharded task merged:
// the shards' points of one measurement, series (tags but shard) and
// attempt — at one time for interval points, one SLO factor for SLO steps —
// become one point without the shard tag (see mergeGroup). Other points
// are returned as they are, in order; a merged point takes the place of its
// group's first.
func MergeShards(pts []Point) []Point {
	type group struct {
		at  int // index in out
		pts []Point
	}
	groups := map[string]*group{}
	var out []Point
	for _, p := range pts {
		if _, sharded := p.Tags[TagShard]; !sharded {
			out = append(out, p)
			continue
		}
		k := groupKey(p)
		g := groups[k]
		if g == nil {
			g = &group{at: len(out)}
			groups[k] = g
			out = append(out, Point{})
		}
		g.pts = append(g.pts, p)
	}
	if len(groups) == 0 {
		return pts
	}
	for _, g := range groups {
		out[g.at] = mergeGroup(g.pts)
	}
	renumberSteps(out)
	return out
}

// groupKey identifies the points that merge: measurement, tags but shard
// (and step, whose index a shard that missed a step numbers differently),
// attempt, and the time (intervals) or SLO factor (steps).
func groupKey(p Point) string {
	keys := make([]string, 0, len(p.Tags))
	for k := range p.Tags {
		if k != TagShard && !(k == TagStep && p.Tags[TagBreakdown] == BreakdownStep) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(p.Measurement)
	for _, k := range keys {
		fmt.Fprintf(&b, "\x00%s=%s", k, p.Tags[k])
	}
	attempt, _ := p.Fields["shard_attempt"].(string)
	fmt.Fprintf(&b, "\x01%s", attempt)
	switch {
	case p.Measurement == MeasServing:
		fmt.Fprintf(&b, "\x01%d", p.Time.UnixNano())
	case p.Tags[TagBreakdown] == BreakdownStep:
		fmt.Fprintf(&b, "\x01%v", p.Fields["slo_factor"])
	}
	return b.String()
}

// mergeGroup merges the points of one group (one per shard; a shard's
// repeated point counts once, its last): counts add up; the span is the
// union of the shards' (time, interval_s) and rates are recomputed over it;
// every distribution's quantiles come from the shards' merged histograms
// (left out, keeping only the count, if a shard's histogram is missing);
// a summary is failed when a shard failed or — for the whole-run total —
// when a shard wrote none (named in error), else interrupted if one was.
func mergeGroup(pts []Point) Point {
	byShard := map[string]Point{}
	var order []string
	for _, p := range pts {
		s := p.Tags[TagShard]
		if _, dup := byShard[s]; !dup {
			order = append(order, s)
		}
		byShard[s] = p
	}
	sort.Slice(order, func(i, j int) bool { return NaturalLess(order[i], order[j]) })
	first := byShard[order[0]]
	m := Point{Measurement: first.Measurement, Tags: map[string]string{}, Fields: map[string]any{}, Time: first.Time}
	for k, v := range first.Tags {
		if k != TagShard {
			m.Tags[k] = v
		}
	}
	for k, v := range first.Fields {
		if !strings.HasPrefix(k, "shard_") && !strings.Contains(k, "_hdr") {
			m.Fields[k] = v
		}
	}
	var end time.Time
	spanKnown := true
	var statuses, errs []string
	for _, s := range order {
		p := byShard[s]
		if p.Time.Before(m.Time) {
			m.Time = p.Time
		}
		if iv, ok := fieldFloat(p.Fields, "interval_s"); ok {
			if e := p.Time.Add(time.Duration(iv * float64(time.Second))); e.After(end) {
				end = e
			}
		} else {
			spanKnown = false
		}
		if d, ok := fieldFloat(p.Fields, "duration_s"); ok && d > fieldFloat0(m.Fields, "duration_s") {
			m.Fields["duration_s"] = d
		}
		if st, ok := p.Fields["status"].(string); ok {
			statuses = append(statuses, st)
			if st != loadgen.StatusCompleted {
				msg := shardLabel(p) + " " + st
				if e, _ := p.Fields["error"].(string); e != "" {
					msg += ": " + e
				}
				errs = append(errs, msg)
			}
		}
	}
	for _, k := range summedFields {
		var sum int64
		have := false
		for _, s := range order {
			if _, ok := byShard[s].Fields[k]; ok {
				have = true
				sum += fieldInt(byShard[s].Fields, k)
			}
		}
		if have {
			m.Fields[k] = sum
		}
	}
	if spanKnown && end.After(m.Time) {
		span := end.Sub(m.Time).Seconds()
		m.Fields["interval_s"] = span
		for rate, count := range rateFields {
			if _, ok := m.Fields[rate]; ok {
				m.Fields[rate] = float64(fieldInt(m.Fields, count)) / span
			}
		}
	} else {
		for rate := range rateFields {
			if _, ok := m.Fields[rate]; ok {
				var sum float64
				for _, s := range order {
					sum += fieldFloat0(byShard[s].Fields, rate)
				}
				m.Fields[rate] = sum
			}
		}
	}
	delete(m.Fields, "slo_attainment")
	if off := fieldInt(m.Fields, "offered"); off > 0 {
		m.Fields["slo_attainment"] = float64(fieldInt(m.Fields, "slo_met")) / float64(off)
	}
	for _, name := range loadgen.Dists {
		mergeDist(m.Fields, name, order, byShard)
	}
	count := int(fieldInt(first.Fields, "shards"))
	m.Fields["shards"] = int64(count)
	m.Fields["shard_attempt"] = first.Fields["shard_attempt"]
	m.Fields["shards_merged"] = int64(len(order))
	if len(statuses) > 0 {
		if m.Tags[TagBreakdown] == BreakdownTotal || (m.Measurement == MeasServingSummary && m.Tags[TagBreakdown] == "") {
			for i := range count {
				if _, ok := byShard[strconv.Itoa(i)]; !ok {
					errs = append(errs, fmt.Sprintf("shard %d of %d wrote no summary: it died or was killed", i, count))
					statuses = append(statuses, loadgen.StatusFailed)
				}
			}
		}
		m.Fields["status"] = loadgen.StatusCompleted
		for _, st := range statuses {
			switch {
			case st == loadgen.StatusFailed:
				m.Fields["status"] = loadgen.StatusFailed
			case st == loadgen.StatusInterrupted && m.Fields["status"] != loadgen.StatusFailed:
				m.Fields["status"] = loadgen.StatusInterrupted
			}
		}
		delete(m.Fields, "error")
		if len(errs) > 0 {
			m.Fields["error"] = strings.Join(errs, "; ")
		}
	}
	return m
}

// shardLabel names the shard a point came from: "shard 2 of 4 (node3)".
func shardLabel(p Point) string {
	n := fmt.Sprintf("shard %s of %d", p.Tags[TagShard], fieldInt(p.Fields, "shards"))
	if h, _ := p.Fields["shard_host"].(string); h != "" {
		n += " (" + h + ")"
	}
	return n
}

// mergeDist sets distribution name's fields of m from the shards' merged
// histograms.
func mergeDist(m map[string]any, name string, order []string, byShard map[string]Point) {
	prefix := name + "_"
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			delete(m, k)
		}
	}
	var total int64
	var encs []string
	complete := true
	for _, s := range order {
		f := byShard[s].Fields
		n := fieldInt(f, name+"_count")
		if n == 0 {
			continue
		}
		total += n
		enc, ok := getHDR(f, name)
		if !ok {
			complete = false
			continue
		}
		encs = append(encs, enc)
	}
	if total == 0 {
		for _, s := range order {
			if _, ok := byShard[s].Fields[name+"_count"]; ok {
				m[name+"_count"] = int64(0)
				break
			}
		}
		return
	}
	if complete {
		if q, err := loadgen.MergeHDR(encs); err == nil && q.Count == total {
			addQuantiles(m, name, q)
			return
		}
	}
	// A histogram is missing or unreadable: the count is known, the
	// percentiles are not (and are not averaged).
	m[name+"_count"] = total
}

// renumberSteps gives the merged SLO-step points of each task their index
// by start time, as one generator numbers its steps.
func renumberSteps(pts []Point) {
	type task struct{ exp, task, attempt string }
	idx := map[task][]int{}
	for i, p := range pts {
		if _, merged := p.Fields["shards_merged"]; merged && p.Tags[TagBreakdown] == BreakdownStep {
			k := task{p.Tags[TagExperiment], p.Tags[TagTask], fmt.Sprint(p.Fields["shard_attempt"])}
			idx[k] = append(idx[k], i)
		}
	}
	for _, is := range idx {
		sort.SliceStable(is, func(a, b int) bool { return pts[is[a]].Time.Before(pts[is[b]].Time) })
		for n, i := range is {
			pts[i].Tags[TagStep] = strconv.Itoa(n)
		}
	}
}
