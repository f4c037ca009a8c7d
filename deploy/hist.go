package deploy

import (
	"math/bits"
	"time"
)

// Hist is a small latency histogram for the autoscaler's window: 8 buckets
// per power of two of microseconds (at most 12.5 % above the true value),
// from 1 µs to days, in 2.5 KiB. Merging a window of them and reading a
// quantile costs a few microseconds, where an HDR histogram of the same
// range would cost a millisecond per interval. Not safe for concurrent use.
type Hist struct {
	counts [histBuckets]uint64
	n      uint64
	max    uint64 // µs
}

const (
	histSub     = 8 // buckets per power of two
	histBuckets = 41 * histSub
)

func bucketOf(us uint64) int {
	if us < histSub {
		return int(us)
	}
	e := bits.Len64(us) - 1 // ≥ 3
	i := (e-2)*histSub + int((us>>(e-3))&(histSub-1))
	return min(i, histBuckets-1)
}

// bucketHigh is the largest value bucket i holds.
func bucketHigh(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub + 2
	low := uint64(1)<<e | uint64(i%histSub)<<(e-3)
	return low + uint64(1)<<(e-3) - 1
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	h.counts[bucketOf(us)]++
	h.n++
	h.max = max(h.max, us)
}

// Count is the number of latencies recorded.
func (h *Hist) Count() uint64 { return h.n }

// Add merges o into h.
func (h *Hist) Add(o *Hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Reset empties h.
func (h *Hist) Reset() { *h = Hist{} }

// Quantile returns the q-quantile (0 < q ≤ 1): the upper edge of the bucket
// holding it, never above the largest value recorded; 0 when empty.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), h.max)) * time.Microsecond
		}
	}
	return time.Duration(h.max) * time.Microsecond
}
