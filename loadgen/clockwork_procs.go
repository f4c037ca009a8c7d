package loadgen

import (
	"math"
	"math/rand/v2"
	"time"
)

// OnOff is an alternating burst/idle pattern: burst and idle lengths are
// exponential with the given means. It starts at a uniformly random point
// of its stationary cycle (in a burst with probability
// burst/(burst+idle)), not always in a burst as the original did. Windows are
// generated lazily and only forwards in time.
type OnOff struct {
	burst, idle float64 // means, seconds
	rng         *rand.Rand
	on, off     time.Duration // current burst [on, off)
	begun       bool
}

// NewOnOff returns a burst/idle pattern with the given mean lengths.
func NewOnOff(burst, idle time.Duration, rng *rand.Rand) *OnOff {
	return &OnOff{burst: burst.Seconds(), idle: idle.Seconds(), rng: rng}
}

func (o *OnOff) draw(mean float64) time.Duration {
	return time.Duration(o.rng.ExpFloat64() * mean * 1e9)
}

func (o *OnOff) start(t0 time.Duration) {
	o.begun = true
	if o.rng.Float64()*(o.burst+o.idle) < o.burst {
		o.on = t0
	} else {
		o.on = t0 + o.draw(o.idle)
	}
	o.off = o.on + o.draw(o.burst)
}

func (o *OnOff) advance() {
	o.on = o.off + o.draw(o.idle)
	o.off = o.on + o.draw(o.burst)
}

// Gate returns the earliest time ≥ t that lies in a burst.
func (o *OnOff) Gate(t time.Duration) time.Duration {
	if !o.begun {
		o.start(t)
	}
	for t >= o.off {
		o.advance()
	}
	if t < o.on {
		return o.on
	}
	return t
}

// Window returns the current burst (for tests and plans).
func (o *OnOff) Window() (on, off time.Duration) { return o.on, o.off }

// BurstyPoisson is a Poisson process of rate r that runs only during the
// bursts of an OnOff pattern (Clockwork's BurstyPoissonOpenLoop): time spent
// idle does not count, so arrivals within bursts are exactly Poisson.
type BurstyPoisson struct {
	rate float64
	rng  *rand.Rand
	OnOff
	pos time.Duration // "on-time" position: where the last arrival was
}

// NewBurstyPoisson returns a bursty Poisson process.
func NewBurstyPoisson(rate float64, burst, idle time.Duration, rng *rand.Rand) *BurstyPoisson {
	return &BurstyPoisson{rate: rate, rng: rng, OnOff: OnOff{burst: burst.Seconds(), idle: idle.Seconds(), rng: rng}}
}

func (b *BurstyPoisson) Next(prev time.Duration) (time.Duration, bool) {
	if b.rate <= 0 || prev >= farFuture {
		return 0, false
	}
	t := b.Gate(prev)
	gap := afterSeconds(0, b.rng.ExpFloat64()/b.rate)
	if gap >= farFuture {
		return farFuture, true // a vanishing rate: never due
	}
	for t+gap >= b.off {
		gap -= b.off - t
		b.advance()
		t = b.on
	}
	return t + gap, true
}

// SetRate changes the rate for gaps drawn from now on.
func (b *BurstyPoisson) SetRate(r float64) { b.rate = r }

// RateSeries gives a source's rate per interval, in requests per minute (the
// unit of the Azure trace), for intervals 0 … Len()-1; the series wraps.
type RateSeries interface {
	Len() int
	PerMinute(k int) float64
}

// Floats is a RateSeries held in memory.
type Floats []float64

func (f Floats) Len() int                { return len(f) }
func (f Floats) PerMinute(k int) float64 { return f[k] }

// Counts is a RateSeries of per-minute counts as read from a trace file.
type Counts []uint32

func (c Counts) Len() int                { return len(c) }
func (c Counts) PerMinute(k int) float64 { return float64(c[k]) }

// TraceReplay is Clockwork's PoissonTraceReplay: a non-homogeneous Poisson
// process whose rate is piecewise constant, Scale·r_k/60 requests/s during
// interval k (r_k per minute, each interval Interval long). It is exact: one
// unit-exponential draw is spent across interval boundaries in proportion to
// the rates, zero-rate intervals are skipped, and the series wraps. Interval
// compresses time, not counts: a 1 s interval yields about Scale·r_k/60
// requests. StartAt is the trace position (interval index and offset within
// it) at the run's offset 0.
type TraceReplay struct {
	Rates    RateSeries
	Scale    float64
	Interval time.Duration
	StartAt  time.Duration // trace time at run offset 0 (k·Interval + offset)
	rng      *rand.Rand
	cycle    float64 // expected arrivals over one whole cycle (0: never fires)
	cycleSet bool
}

// NewTraceReplay returns a trace replay process.
func NewTraceReplay(rates RateSeries, scale float64, interval time.Duration, startAt time.Duration, rng *rand.Rand) *TraceReplay {
	return &TraceReplay{Rates: rates, Scale: scale, Interval: interval, StartAt: startAt, rng: rng}
}

func (p *TraceReplay) rate(k int) float64 { return p.Scale * p.Rates.PerMinute(k) / 60 } // per second

func (p *TraceReplay) Next(prev time.Duration) (time.Duration, bool) {
	n := p.Rates.Len()
	if n == 0 || p.Interval <= 0 || !(p.Scale > 0) {
		return 0, false
	}
	iv := p.Interval.Seconds()
	if !p.cycleSet {
		p.cycleSet = true
		for k := 0; k < n; k++ {
			p.cycle += p.rate(k) * iv
		}
	}
	if !(p.cycle > 0) {
		return 0, false
	}
	e := p.rng.ExpFloat64() // work left, in expected arrivals
	// Trace time of prev, in intervals.
	tt := float64(prev+p.StartAt) / float64(p.Interval)
	k := int(math.Floor(tt))
	frac := tt - float64(k) // position within interval k
	t := prev
	// Skip whole cycles the draw would span (only for very sparse series).
	if e > p.cycle {
		cycles := math.Floor(e / p.cycle)
		e -= cycles * p.cycle
		if t = afterSeconds(t, cycles*float64(n)*p.Interval.Seconds()); t >= farFuture {
			return farFuture, true // a vanishing rate: never due
		}
	}
	for {
		r := p.rate(((k % n) + n) % n)
		left := (1 - frac) * iv // seconds left in interval k
		if r > 0 {
			if need := e / r; need < left {
				return afterSeconds(t, need), true
			}
			e -= r * left
		}
		t += time.Duration(left * 1e9)
		k++
		frac = 0
	}
}

// SetScale changes the scale (Clockwork's AdjustScaleFactor) for draws from
// now on.
func (p *TraceReplay) SetScale(s float64) {
	if p.Scale > 0 {
		p.cycle *= s / p.Scale
	} else {
		p.cycleSet = false
		p.cycle = 0
	}
	p.Scale = s
}

// ExpectedCount returns the expected number of arrivals in run offsets
// [from, to) (for tests and plans).
func (p *TraceReplay) ExpectedCount(from, to time.Duration) float64 {
	n := p.Rates.Len()
	if n == 0 || p.Interval <= 0 || to <= from {
		return 0
	}
	sum := 0.0
	t := from
	for t < to {
		tt := t + p.StartAt
		k := int(tt / p.Interval)
		end := time.Duration(k+1)*p.Interval - p.StartAt
		if end > to {
			end = to
		}
		sum += p.rate(k%n) * (end - t).Seconds()
		t = end
	}
	return sum
}
