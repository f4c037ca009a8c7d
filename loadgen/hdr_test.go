package loadgen

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// randomResult is a finished request with latencies drawn from a heavy
// tail (most around a few ms, some seconds), sometimes a failure.
func randomResult(rng *rand.Rand, at time.Duration, streamed bool) *Result {
	svc := time.Duration(rng.ExpFloat64()*3e6) + 50*time.Microsecond
	if rng.IntN(100) == 0 {
		svc *= 500
	}
	late := time.Duration(rng.ExpFloat64() * 20e3)
	res := &Result{Arrival: Arrival{At: at}, Sent: at + late, Done: at + late + svc}
	switch rng.IntN(50) {
	case 0:
		res.Outcome = OutcomeError
	case 1:
		res.Outcome = OutcomeTimeout
	}
	if streamed && res.Outcome == OutcomeOK {
		res.Streamed = true
		gap := svc / 9
		for c := 1; c <= 9; c++ {
			res.Chunks = append(res.Chunks, Chunk{At: time.Duration(c) * gap, Tokens: 1})
		}
		res.InputTokens, res.OutputTokens = 128, 9
	}
	return res
}

// TestMergeSnapshotsIsOneGenerator records the same requests once in one
// recorder and once dealt over k recorders (shards); merging the shards'
// snapshots gives exactly the one recorder's quantiles — every percentile,
// min, mean and max of every distribution — and counts.
func TestMergeSnapshotsIsOneGenerator(t *testing.T) {
	t.Parallel()
	for _, k := range []int{1, 2, 4, 7} {
		for _, streamed := range []bool{false, true} {
			rng := rand.New(rand.NewPCG(uint64(k), 9))
			wall := time.Unix(1_800_000_000, 0)
			one := NewRecorder(wall, time.Second, LLMSLO{}, nil)
			shards := make([]*Recorder, k)
			for i := range shards {
				shards[i] = NewRecorder(wall, time.Second, LLMSLO{}, nil)
				shards[i].KeepHDR = true
			}
			const n = 20000
			for i := range n {
				res := randomResult(rng, time.Duration(i)*100*time.Microsecond, streamed)
				a := res.Arrival
				a.Seq = int64(i)
				res.Arrival = a
				one.Offered(a)
				one.Record(res)
				shards[i%k].Offered(a)
				shards[i%k].Record(res)
			}
			end := 2 * time.Second
			want, _, _ := one.Totals(end)
			var snaps []Snapshot
			for _, r := range shards {
				s, _, _ := r.Totals(end)
				if len(s.HDR) < 3 {
					t.Fatalf("k=%d: a shard's total carries histograms %v, want latency, service, lateness", k, keys(s.HDR))
				}
				snaps = append(snaps, s)
			}
			got, err := MergeSnapshots(snaps)
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("k=%d streamed=%v", k, streamed)
			if got.Offered != n || got.Completed != want.Completed || got.Errors != want.Errors || got.Timeouts != want.Timeouts ||
				got.OutputTokens != want.OutputTokens {
				t.Errorf("%s: merged counts %+v, one generator %+v", name, got, want)
			}
			for _, d := range Dists {
				if g, w := got.dist(d), want.dist(d); g != w {
					t.Errorf("%s: merged %s %+v, one generator %+v", name, d, g, w)
				}
			}
			if streamed && got.TTFT.Count == 0 {
				t.Errorf("%s: no TTFT merged", name)
			}
			if got.OfferedRate != want.OfferedRate {
				t.Errorf("%s: merged offered rate %v, one generator %v", name, got.OfferedRate, want.OfferedRate)
			}
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestMergeSnapshotsRefuses(t *testing.T) {
	t.Parallel()
	s := Snapshot{Latency: Quantiles{Count: 3, P99: time.Millisecond}}
	if _, err := MergeSnapshots([]Snapshot{s}); err == nil || !strings.Contains(err.Error(), "no histogram") {
		t.Errorf("samples without a histogram: %v", err)
	}
	h := newHist()
	_ = h.RecordValue(1000)
	s.HDR = map[string]string{DistLatency: encodeHist(h)}
	if _, err := MergeSnapshots([]Snapshot{s}); err == nil || !strings.Contains(err.Error(), "1 samples beside a count of 3") {
		t.Errorf("histogram and count disagree: %v", err)
	}
	if _, err := MergeSnapshots(nil); err == nil {
		t.Error("nothing to merge: no error")
	}
}

func TestDecodeHDR(t *testing.T) {
	t.Parallel()
	h := newHist()
	for v := int64(1); v < histMaxUS; v = v*3 + 1 {
		_ = h.RecordValue(v)
	}
	got, err := DecodeHDR(encodeHist(h))
	if err != nil || !got.Equals(h) {
		t.Fatalf("round trip: %v", err)
	}
	other := hdrhistogram.New(1, 1e6, 2)
	_ = other.RecordValue(5)
	b, _ := other.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	for _, c := range []struct{ in, want string }{
		{string(b), "with 2 significant digits"},
		{"not base64!", "illegal base64"},
		{base64.StdEncoding.EncodeToString([]byte("short")), "not HdrHistogram"},
		{strings.Repeat("A", MaxHDRLen+4), "more than"},
		{encodeHist(h)[:40], ""},
	} {
		if _, err := DecodeHDR(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("DecodeHDR(%.30q…): %v, want an error with %q", c.in, err, c.want)
		}
	}
}

// FuzzDecodeHDR: no input panics, and whatever decodes re-encodes to a
// histogram that decodes equal.
func FuzzDecodeHDR(f *testing.F) {
	h := newHist()
	_ = h.RecordValue(1234)
	f.Add(encodeHist(h))
	f.Add(encodeHist(newHistWith(1, 2, 3, histMaxUS)))
	f.Add("HISTFAAAAB")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := DecodeHDR(s)
		if err != nil {
			return
		}
		again, err := DecodeHDR(encodeHist(got))
		if err != nil || !again.Equals(got) {
			t.Fatalf("re-encoded histogram does not decode equal: %v", err)
		}
	})
}

func newHistWith(vs ...int64) *hdrhistogram.Histogram {
	h := newHist()
	for _, v := range vs {
		_ = h.RecordValue(v)
	}
	return h
}

func TestMergeSummaries(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_800_000_000, 0)
	mk := func(i int, status, errMsg string, factors ...float64) *Summary {
		r := NewRecorder(t0, time.Second, LLMSLO{}, nil)
		r.KeepHDR = true
		for j, f := range factors {
			a := Arrival{At: time.Duration(j+i) * time.Second, SLOFactor: f, Class: "fg"}
			r.Offered(a)
			r.Record(&Result{Arrival: a, Sent: a.At, Done: a.At + time.Duration(i+1)*time.Millisecond})
		}
		s := &Summary{Task: "t", Status: status, Error: errMsg, Started: t0, Ended: t0.Add(10 * time.Second),
			Shard: &ShardInfo{Index: i, Count: 3, Host: fmt.Sprintf("node%d", i+1)}}
		s.Total, s.Classes, s.Steps = r.Totals(10 * time.Second)
		return s
	}
	m, err := MergeSummaries([]*Summary{mk(2, StatusCompleted, "", 4, 8), mk(0, StatusCompleted, "", 2, 4), mk(1, StatusFailed, "target unreachable", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != StatusFailed || m.Error != "shard 1 of 3 (node2) failed: target unreachable" {
		t.Errorf("status %q, error %q", m.Status, m.Error)
	}
	if m.Total.Offered != 5 || len(m.Classes) != 1 || m.Classes[0].Offered != 5 {
		t.Errorf("total %d, classes %+v", m.Total.Offered, m.Classes)
	}
	var fs []float64
	for _, st := range m.Steps {
		fs = append(fs, st.SLOFactor)
	}
	if fmt.Sprint(fs) != "[2 4 8]" || m.Steps[0].Offered != 2 || m.Steps[1].Offered != 2 {
		t.Errorf("steps %v: %+v", fs, m.Steps)
	}
	if len(m.Shards) != 3 || m.Shards[0].Index != 0 || m.Shards[1].Status != StatusFailed {
		t.Errorf("shards %+v", m.Shards)
	}
	// HDR reports a bucket's highest equivalent value: 3 ms is 3.001 ms.
	if m.Total.Latency.Max != 3001*time.Microsecond || m.Total.Latency.Min != time.Millisecond {
		t.Errorf("merged latency %+v", m.Total.Latency)
	}
}

// BenchmarkEncodeHDR is what keeping histograms costs a shard per interval:
// one encoding per distribution, off the sender's path. Its sizes are in
// docs/benchmarks.md (HDR histograms in points).
func BenchmarkEncodeHDR(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{1000, 25000, 250000} {
		h := newHist()
		for range n {
			recordDur(h, time.Duration(rng.ExpFloat64()*5e6))
		}
		b.Run(fmt.Sprintf("samples=%d", n), func(b *testing.B) {
			var size int
			for range b.N {
				size = len(encodeHist(h))
			}
			b.ReportMetric(float64(size), "bytes")
		})
	}
}

// inflate returns the uncompressed V2 payload (header and counts) of an
// encoded histogram.
func inflate(t *testing.T, enc string) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw[8:]))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEncodeHistIsV2: the encoder writes exactly what hdrhistogram-go's
// Encode writes before compression (header and counts, byte for byte), and
// hdrhistogram-go's Decode reads it back equal — for histograms empty,
// sparse, dense, at the extremes and with 63-bit counts.
func TestEncodeHistIsV2(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 5))
	hists := []*hdrhistogram.Histogram{newHist(), newHistWith(1), newHistWith(histMaxUS), newHistWith(1, 1, 2, 3, 5000, 5000, histMaxUS)}
	h := newHist()
	_ = h.RecordValues(777, 1<<62)
	hists = append(hists, h)
	for range 20 {
		h := newHist()
		for range rng.IntN(50000) {
			_ = h.RecordValues(1+rng.Int64N(int64(1+rng.ExpFloat64()*1e6)), 1+rng.Int64N(3))
		}
		hists = append(hists, h)
	}
	for i, h := range hists {
		mine := encodeHist(h)
		lib, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(inflate(t, mine), inflate(t, string(lib))) {
			t.Errorf("histogram %d (%d samples): the payload differs from hdrhistogram-go's", i, h.TotalCount())
		}
		back, err := hdrhistogram.Decode([]byte(mine))
		if err != nil || !back.Equals(h) {
			t.Errorf("histogram %d: hdrhistogram-go decodes it as another histogram (%v)", i, err)
		}
	}
}

// BenchmarkMergeSnapshots is what review pays per interval of a sharded
// task: k shards' snapshots, each with latency, service and lateness
// histograms of 1,000,000/k requests (one second of a 1,000,000 requests/s
// run), merged into one (decoding every histogram, merging, quantiles,
// encoding the result).
func BenchmarkMergeSnapshots(b *testing.B) {
	const perSecond = 1_000_000
	for _, k := range []int{4, 50} {
		rng := rand.New(rand.NewPCG(2, uint64(k)))
		snaps := make([]Snapshot, k)
		for i := range snaps {
			a := newAcc()
			for range perSecond / k {
				recordDur(a.lat, time.Duration(rng.ExpFloat64()*5e6))
				recordDur(a.svc, time.Duration(rng.ExpFloat64()*4e6))
				recordDur(a.late, time.Duration(rng.ExpFloat64()*3e4))
			}
			a.offered, a.sent, a.completed = perSecond/int64(k), perSecond/int64(k), perSecond/int64(k)
			snaps[i] = a.snapshot(0, time.Unix(0, 0), time.Unix(1, 0), true)
		}
		b.Run(fmt.Sprintf("shards=%d", k), func(b *testing.B) {
			for range b.N {
				m, err := MergeSnapshots(snaps)
				if err != nil || m.Completed != perSecond/int64(k)*int64(k) {
					b.Fatal(m.Completed, err)
				}
			}
		})
	}
}
