package loadgen

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"time"
)

// MaxShards bounds Config.Shards: one load generator per node, and more
// nodes than this in one Slurm job step is beyond what gpuorch was built for.
const MaxShards = 1024

// How a sharded workload is split (ShardInfo.Split).
const (
	// SplitArrivals: every shard walks the whole seeded schedule on its
	// virtual timeline and keeps the open-loop arrivals n ≡ shard (mod K),
	// n counting open-loop arrivals in time order. The shards' arrivals
	// together are exactly the unsharded schedule: same times, models,
	// classes, SLO factors, and (without closed loops) the same Seq.
	SplitArrivals = "arrivals"
	// SplitSources: each open-loop source (a model's arrival stream, with
	// its own random stream) belongs to one shard, assigned by rate
	// (largest first, to the least loaded shard). Every source draws
	// exactly the arrivals it draws unsharded, so the union is the same
	// schedule too, but a shard generates only its own arrivals. Seq
	// numbers are the shard's own.
	SplitSources = "sources"
	// SplitClients: closed-loop clients are dealt round-robin over the
	// shards (client n → shard n mod K), and a loop's request count is
	// divided in proportion to its clients.
	SplitClients = "clients"
)

// maxSourceImbalance is how much more than its fair share the busiest shard
// may carry for a source split to be chosen over an arrival split.
const maxSourceImbalance = 1.05

// ShardOptions tune how Shard splits a workload.
type ShardOptions struct {
	// KeepSeq forces the arrival split for open loops, so that every
	// arrival keeps its unsharded Seq (prompts are picked by Seq).
	KeepSeq bool
}

// Shard makes w the workload of shard i of k (0 ≤ i < k): open-loop
// arrivals are split by source when w has at least k sources with known
// rates that divide evenly (within 5 %), otherwise by arrival; closed-loop
// clients are dealt round-robin. It returns how the open and closed parts
// were split ("" for a part w does not have). Timers stay on every shard:
// they change rates and factors identically everywhere, and a timer that
// ends the run ends every shard at the same intended time. Call it before
// the workload is used.
func (w *Workload) Shard(i, k int, o ShardOptions) (open, closed string, err error) {
	if k < 1 || k > MaxShards {
		return "", "", fmt.Errorf("shards must be between 1 and %d, got %d", MaxShards, k)
	}
	if i < 0 || i >= k {
		return "", "", fmt.Errorf("shard %d of %d: the index must be between 0 and %d", i, k, k-1)
	}
	if w.shardK > 0 {
		return "", "", errors.New("workload is already sharded")
	}
	if k == 1 {
		return "", "", nil
	}
	if len(w.Closed) > 0 && len(w.Open) > 0 && w.MaxRequests > 0 {
		return "", "", errors.New("max_requests over open-loop and closed-loop sources together cannot be divided exactly between shards; give the run a duration, or the closed loops their own request counts")
	}
	w.shardI, w.shardK = i, k
	if len(w.Open) > 0 {
		open = SplitArrivals
		if assign, ok := sourceAssignment(w.Open, k); ok && !o.KeepSeq && w.MaxRequests == 0 {
			open = SplitSources
			for j, src := range w.Open {
				src.foreign = assign[j] != i
			}
		} else {
			w.filterOpen = true
		}
	}
	if len(w.Closed) > 0 {
		closed = SplitClients
		n := 0
		for _, c := range w.Closed {
			first, mine := n, 0
			for p := range c.Concurrency {
				if (first+p)%k == i {
					mine++
				}
			}
			n += c.Concurrency
			if c.Max > 0 {
				if c.Max = shareOf(c.Max, c.Concurrency, first, i, k); c.Max == 0 {
					mine = 0 // this shard's clients have no requests to send
				}
			}
			c.Concurrency = mine
		}
		if w.MaxRequests > 0 {
			// Only closed loops here: divided like their clients.
			if w.MaxRequests = shareOf(w.MaxRequests, n, 0, i, k); w.MaxRequests == 0 {
				for _, c := range w.Closed {
					c.Concurrency = 0
				}
			}
		}
	}
	return open, closed, nil
}

// shareOf divides n requests among conc clients, numbered first, first+1,
// …, first+conc−1 in the round-robin deal over k shards, and returns the
// part of shard i's clients: client p gets ⌊n(p+1)/conc⌋ − ⌊np/conc⌋, so
// the parts add up to n exactly.
func shareOf(n int64, conc, first, i, k int) int64 {
	var s int64
	for p := 0; p < conc; p++ {
		if (first+p)%k == i {
			s += mulDiv(n, int64(p+1), int64(conc)) - mulDiv(n, int64(p), int64(conc))
		}
	}
	return s
}

// mulDiv is ⌊a·b/c⌋ for 0 ≤ a, 0 ≤ b ≤ c, c > 0, without overflow.
func mulDiv(a, b, c int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	q, _ := bits.Div64(hi, lo, uint64(c))
	return int64(q)
}

// sourceAssignment assigns open-loop sources to k shards by their rates,
// largest first to the least loaded shard (ties to the lower shard, so it
// is deterministic). ok is false when there are fewer sources than shards,
// a rate is unknown or not positive, or the busiest shard would carry more
// than maxSourceImbalance times its fair share.
func sourceAssignment(srcs []*OpenLoop, k int) (assign []int, ok bool) {
	if len(srcs) < k {
		return nil, false
	}
	rates := make([]float64, len(srcs))
	total := 0.0
	for j, s := range srcs {
		r, isRater := s.Proc.(rater)
		if !isRater || !(r.Rate() > 0) {
			return nil, false
		}
		rates[j] = r.Rate()
		total += rates[j]
	}
	order := make([]int, len(srcs))
	for j := range order {
		order[j] = j
	}
	sort.SliceStable(order, func(a, b int) bool { return rates[order[a]] > rates[order[b]] })
	load := make([]float64, k)
	assign = make([]int, len(srcs))
	for _, j := range order {
		best := 0
		for s := 1; s < k; s++ {
			if load[s] < load[best] {
				best = s
			}
		}
		load[best] += rates[j]
		assign[j] = best
	}
	busiest := 0.0
	for _, l := range load {
		busiest = max(busiest, l)
	}
	return assign, busiest <= maxSourceImbalance*total/float64(k)
}

// ShardInfo is what a shard of a sharded run records about itself: which
// part of the workload it ran, where, and how its start lined up with the
// others'. A merged summary lists every shard's.
type ShardInfo struct {
	Index int `json:"index"`
	Count int `json:"count"`
	// Split says how the open-loop and closed-loop parts were divided
	// ("arrivals", "sources", "clients"; see Workload.Shard).
	Split   string `json:"split,omitempty"`
	Attempt string `json:"attempt,omitempty"` // the run the shards agreed on (e.g. the Slurm job id)
	Host    string `json:"host,omitempty"`
	PID     int    `json:"pid,omitempty"`
	// Start is the common start every shard agreed on: offset 0 of the
	// schedule, by each shard's own clock.
	Start time.Time `json:"start,omitzero"`
	// StartOffset is when this shard was ready to send, relative to Start
	// by its own clock: negative when it waited for the common start,
	// positive when it learnt of it late (its first arrivals then went out
	// late, which their lateness shows).
	StartOffset time.Duration `json:"start_offset"`
	// ClockOffset is this shard's wall clock minus the clock of the shared
	// filesystem the shards met on (estimated from a file's modification
	// time), ± ClockUncertainty. Two shards' difference is how far apart
	// their clocks, and so their starts, were.
	ClockOffset      time.Duration `json:"clock_offset"`
	ClockUncertainty time.Duration `json:"clock_uncertainty"`
	// Status and Error are the shard's own run's (merged summaries only).
	Status string `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Name is how messages name the shard: "shard 2 of 4 (node3)".
func (s ShardInfo) Name() string {
	n := fmt.Sprintf("shard %d of %d", s.Index, s.Count)
	if s.Host != "" {
		n += " (" + s.Host + ")"
	}
	return n
}
