package loadgen

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms are kept losslessly, for merging the shards of a sharded run,
// in HdrHistogram's V2 compressed encoding (zlib, then base64): the format
// of HdrHistogram's own interval logs, which its Java, C and Python ports
// read too. Snapshot.HDR holds one per distribution that has samples.

// Names of the distributions in Snapshot.HDR (and of their point fields).
const (
	DistLatency  = "latency"
	DistService  = "service"
	DistLateness = "lateness"
	DistTTFT     = "ttft"
	DistTPOT     = "tpot"
	DistITL      = "itl"
	DistE2EL     = "e2el"
)

// Dists lists the distribution names in the order snapshots show them.
var Dists = []string{DistLatency, DistService, DistLateness, DistTTFT, DistTPOT, DistITL, DistE2EL}

// MaxHDRLen bounds one encoded histogram: far above what the 23,000
// counters of a 1 µs–1 h, 3-digit histogram can take (about 270 KB when
// every counter holds a 63-bit count), far below what could hurt to decode.
const MaxHDRLen = 1 << 20

// encodeHist encodes h as Snapshot.HDR holds it: HdrHistogram's V2
// compressed encoding, whose payload is byte for byte what
// hdrhistogram-go's Encode compresses (its Decode and HdrHistogram's other
// ports read it), written without Encode's allocation per counter and
// compressed at zlib's fastest level instead of its best: 0.13–0.21 ms
// instead of 1.2 ms per histogram, for 2–4 % more bytes
// (BenchmarkEncodeHDR, docs/benchmarks.md).
func encodeHist(h *hdrhistogram.Histogram) string {
	counts := h.Export().Counts
	n := len(counts)
	for n > 1 && counts[n-1] == 0 {
		n-- // up to the highest count (the first counter when there is none)
	}
	buf := make([]byte, hdrHeaderLen, hdrHeaderLen+n/4+16)
	for i := 0; i < n; {
		c := counts[i]
		i++
		if c == 0 {
			zeros := int64(1)
			for i < n && counts[i] == 0 {
				zeros++
				i++
			}
			if zeros > 1 {
				c = -zeros // a run of zeros
			}
		}
		buf = appendZigZag(buf, c)
	}
	be := binary.BigEndian
	be.PutUint32(buf[0:], hdrPayloadCookie|0x10)
	be.PutUint32(buf[4:], uint32(len(buf)-hdrHeaderLen))
	be.PutUint32(buf[8:], 0) // normalizing index offset
	be.PutUint32(buf[12:], uint32(h.SignificantFigures()))
	be.PutUint64(buf[16:], uint64(h.LowestTrackableValue()))
	be.PutUint64(buf[24:], uint64(h.HighestTrackableValue()))
	be.PutUint64(buf[32:], math.Float64bits(1))

	z := zlibPool.Get().(*zlibBuf)
	defer zlibPool.Put(z)
	z.out.Reset()
	z.out.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	z.w.Reset(&z.out)
	z.w.Write(buf) // to a bytes.Buffer: cannot fail
	z.w.Close()
	out := z.out.Bytes()
	be.PutUint32(out[0:], hdrCompressedCookie|0x10)
	be.PutUint32(out[4:], uint32(len(out)-8))
	return base64.StdEncoding.EncodeToString(out)
}

// appendZigZag appends v as a ZigZag LEB128 varint, as the V2 encoding
// writes counts (at most 9 bytes: the ninth carries 8 bits).
func appendZigZag(b []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for i := 0; i < 8 && u >= 0x80; i++ {
		b = append(b, byte(u)|0x80)
		u >>= 7
	}
	return append(b, byte(u))
}

type zlibBuf struct {
	out bytes.Buffer
	w   *zlib.Writer
}

var zlibPool = sync.Pool{New: func() any {
	z := &zlibBuf{}
	z.w, _ = zlib.NewWriterLevel(&z.out, zlib.BestSpeed)
	return z
}}

// dists returns the accumulator's histograms by distribution name.
func (a *acc) dists() map[string]*hdrhistogram.Histogram {
	return map[string]*hdrhistogram.Histogram{
		DistLatency: a.lat, DistService: a.svc, DistLateness: a.late,
		DistTTFT: a.ttft, DistTPOT: a.tpot, DistITL: a.itl, DistE2EL: a.e2el,
	}
}

// encodeHists encodes the accumulator's non-empty histograms.
func (a *acc) encodeHists() map[string]string {
	out := map[string]string{}
	for name, h := range a.dists() {
		if h != nil && h.TotalCount() > 0 {
			if e := encodeHist(h); e != "" {
				out[name] = e
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// V2 encoding constants (HdrHistogram's EncodableHistogram).
const (
	hdrCompressedCookie = 0x1c849304
	hdrPayloadCookie    = 0x1c849303
	hdrHeaderLen        = 40
)

// DecodeHDR decodes one encoded histogram of Snapshot.HDR. It refuses, from
// the header and before anything is allocated for the counts, a histogram
// whose settings are not gpuorch's (1 µs to 1 h, 3 significant digits):
// merging histograms of different precision would not be exact.
func DecodeHDR(s string) (*hdrhistogram.Histogram, error) {
	if len(s) > MaxHDRLen {
		return nil, fmt.Errorf("encoded histogram of %d bytes, more than %d", len(s), MaxHDRLen)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("encoded histogram: %w", err)
	}
	if len(raw) < 8 || binary.BigEndian.Uint32(raw)&^0xf0 != hdrCompressedCookie {
		return nil, errors.New("encoded histogram: not HdrHistogram's V2 compressed encoding")
	}
	n := binary.BigEndian.Uint32(raw[4:])
	if int64(n) > int64(len(raw)-8) {
		return nil, fmt.Errorf("encoded histogram: %d bytes of compressed counts announced, %d present", n, len(raw)-8)
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw[8 : 8+n]))
	if err != nil {
		return nil, fmt.Errorf("encoded histogram: %w", err)
	}
	var hd [hdrHeaderLen]byte
	if _, err := io.ReadFull(zr, hd[:]); err != nil {
		return nil, fmt.Errorf("encoded histogram header: %w", err)
	}
	digits := int32(binary.BigEndian.Uint32(hd[12:]))
	lo := int64(binary.BigEndian.Uint64(hd[16:]))
	hi := int64(binary.BigEndian.Uint64(hd[24:]))
	switch {
	case binary.BigEndian.Uint32(hd[:])&^0xf0 != hdrPayloadCookie:
		return nil, errors.New("encoded histogram: bad payload cookie")
	case binary.BigEndian.Uint32(hd[4:]) > MaxHDRLen:
		return nil, fmt.Errorf("encoded histogram: %d bytes of counts announced", binary.BigEndian.Uint32(hd[4:]))
	case digits != histSig || lo != 1 || hi != histMaxUS:
		return nil, fmt.Errorf("encoded histogram covers %d–%d µs with %d significant digits; gpuorch's cover 1–%d µs with %d", lo, hi, digits, histMaxUS, histSig)
	}
	h, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("encoded histogram: %w", err)
	}
	return h, nil
}

// MergeHDR merges encoded histograms (of Snapshot.HDR, or its point fields)
// and returns the quantiles of the merged histogram: exactly what one
// generator that had recorded every sample would report.
func MergeHDR(encoded []string) (Quantiles, error) {
	h, err := mergeEncoded(encoded)
	if err != nil {
		return Quantiles{}, err
	}
	return quantiles(h), nil
}

func mergeEncoded(encoded []string) (*hdrhistogram.Histogram, error) {
	m := newHist()
	for _, e := range encoded {
		h, err := DecodeHDR(e)
		if err != nil {
			return nil, err
		}
		m.Merge(h)
	}
	return m, nil
}

// MergeSnapshots merges the same interval (or breakdown) of several shards:
// counts and tokens add up, the span is the union of theirs, rates are
// recomputed over it, and each distribution's quantiles come from the
// merged histograms — never from the shards' quantiles. Every snapshot with
// samples of a distribution must carry its histogram (Snapshot.HDR);
// otherwise the merge is an error. The result carries the merged
// histograms.
func MergeSnapshots(snaps []Snapshot) (Snapshot, error) {
	if len(snaps) == 0 {
		return Snapshot{}, errors.New("no snapshots to merge")
	}
	m := Snapshot{Interval: snaps[0].Interval, Class: snaps[0].Class, Model: snaps[0].Model, SLOFactor: snaps[0].SLOFactor}
	hists := map[string]*hdrhistogram.Histogram{}
	for i, s := range snaps {
		if i == 0 || (!s.Start.IsZero() && s.Start.Before(m.Start)) {
			m.Start = s.Start
		}
		if s.End.After(m.End) {
			m.End = s.End
		}
		m.Offered += s.Offered
		m.Sent += s.Sent
		m.Completed += s.Completed
		m.Errors += s.Errors
		m.Timeouts += s.Timeouts
		m.Dropped += s.Dropped
		m.Cancelled += s.Cancelled
		m.SLOMet += s.SLOMet
		m.InputTokens += s.InputTokens
		m.OutputTokens += s.OutputTokens
		for _, name := range Dists {
			q := s.dist(name)
			if q.Count == 0 {
				continue
			}
			enc, ok := s.HDR[name]
			if !ok {
				return Snapshot{}, fmt.Errorf("%s has %d samples but no histogram to merge", name, q.Count)
			}
			h, err := DecodeHDR(enc)
			if err != nil {
				return Snapshot{}, fmt.Errorf("%s: %w", name, err)
			}
			if h.TotalCount() != q.Count {
				return Snapshot{}, fmt.Errorf("%s: histogram of %d samples beside a count of %d", name, h.TotalCount(), q.Count)
			}
			if hists[name] == nil {
				hists[name] = newHist()
			}
			hists[name].Merge(h)
		}
	}
	if secs := m.End.Sub(m.Start).Seconds(); secs > 0 {
		m.OfferedRate = float64(m.Offered) / secs
		m.AchievedRate = float64(m.Completed) / secs
		m.Goodput = float64(m.SLOMet) / secs
	}
	for name, h := range hists {
		*m.distPtr(name) = quantiles(h)
		if m.HDR == nil {
			m.HDR = map[string]string{}
		}
		m.HDR[name] = encodeHist(h)
	}
	return m, nil
}

func (s *Snapshot) distPtr(name string) *Quantiles {
	switch name {
	case DistLatency:
		return &s.Latency
	case DistService:
		return &s.Service
	case DistLateness:
		return &s.Lateness
	case DistTTFT:
		return &s.TTFT
	case DistTPOT:
		return &s.TPOT
	case DistITL:
		return &s.ITL
	case DistE2EL:
		return &s.E2EL
	}
	panic("loadgen: unknown distribution " + name)
}

func (s Snapshot) dist(name string) Quantiles { return *s.distPtr(name) }

// MergeSummaries merges the summaries of a sharded run's shards into the
// summary of the whole run: totals, classes (by name) and SLO steps (by
// factor, in order of their start) merged with MergeSnapshots; the earliest
// start and the latest end; failures by kind added up. Status is failed if
// any shard failed, else interrupted if any was, else completed; Error
// names each shard that did not complete. Shards lists every shard's
// ShardInfo with its status. The caller adds the shards that wrote no
// summary at all.
func MergeSummaries(sums []*Summary) (*Summary, error) {
	if len(sums) == 0 {
		return nil, errors.New("no shard summaries to merge")
	}
	first := sums[0]
	m := &Summary{
		Experiment: first.Experiment, Task: first.Task, Workload: first.Workload, Target: first.Target,
		Protocol: first.Protocol, Tags: first.Tags, Calibration: first.Calibration, Deviations: first.Deviations,
		Started: first.Started, Ended: first.Ended, Status: StatusCompleted,
	}
	var totals []Snapshot
	classes := map[string][]Snapshot{}
	steps := map[float64][]Snapshot{}
	var pacers, errs []string
	for _, s := range sums {
		if s.Started.Before(m.Started) {
			m.Started = s.Started
		}
		if s.Ended.After(m.Ended) {
			m.Ended = s.Ended
		}
		switch {
		case s.Status == StatusFailed:
			m.Status = StatusFailed
		case s.Status == StatusInterrupted && m.Status != StatusFailed:
			m.Status = StatusInterrupted
		}
		info := ShardInfo{Status: s.Status, Error: s.Error}
		if s.Shard != nil {
			info = *s.Shard
			info.Status, info.Error = s.Status, s.Error
		}
		if s.Status != StatusCompleted {
			msg := info.Name() + " " + s.Status
			if s.Error != "" {
				msg += ": " + s.Error
			}
			errs = append(errs, msg)
		}
		m.Shards = append(m.Shards, info)
		if s.Pacer != "" && !contains(pacers, s.Pacer) {
			pacers = append(pacers, s.Pacer)
		}
		for k, n := range s.ErrorKinds {
			if m.ErrorKinds == nil {
				m.ErrorKinds = map[string]int64{}
			}
			if _, ok := m.ErrorKinds[k]; !ok && len(m.ErrorKinds) >= 32 {
				k = "other"
			}
			m.ErrorKinds[k] += n
		}
		if s.Started.IsZero() {
			continue // failed before it measured anything
		}
		totals = append(totals, s.Total)
		for _, c := range s.Classes {
			classes[c.Class] = append(classes[c.Class], c)
		}
		for _, st := range s.Steps {
			steps[st.SLOFactor] = append(steps[st.SLOFactor], st)
		}
	}
	sort.Slice(m.Shards, func(i, j int) bool { return m.Shards[i].Index < m.Shards[j].Index })
	m.Pacer = strings.Join(pacers, ",")
	m.Error = strings.Join(errs, "; ")
	var err error
	if len(totals) > 0 {
		if m.Total, err = MergeSnapshots(totals); err != nil {
			return nil, fmt.Errorf("merge totals: %w", err)
		}
	}
	names := make([]string, 0, len(classes))
	for n := range classes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c, err := MergeSnapshots(classes[n])
		if err != nil {
			return nil, fmt.Errorf("merge class %s: %w", n, err)
		}
		m.Classes = append(m.Classes, c)
	}
	for f, ss := range steps {
		st, err := MergeSnapshots(ss)
		if err != nil {
			return nil, fmt.Errorf("merge SLO step ×%g: %w", f, err)
		}
		m.Steps = append(m.Steps, st)
	}
	sort.Slice(m.Steps, func(i, j int) bool {
		if !m.Steps[i].Start.Equal(m.Steps[j].Start) {
			return m.Steps[i].Start.Before(m.Steps[j].Start)
		}
		return m.Steps[i].SLOFactor < m.Steps[j].SLOFactor
	})
	return m, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
