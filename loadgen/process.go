package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Process is an arrival process on an absolute timeline: given the intended
// time of the previous arrival (or the source's start for the first one) it
// returns the intended time of the next. Times are offsets from the start of
// the run. Implementations derive every arrival from the previous absolute
// time, never from when the caller got round to asking, so a late sender
// never shifts the schedule. ok=false ends the process.
type Process interface {
	Next(prev time.Duration) (next time.Duration, ok bool)
}

// NewRNG returns the deterministic random stream number stream of a run
// seeded with seed. Every source gets its own stream so that adding a source
// does not change the arrivals of the others.
func NewRNG(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream^0x9e3779b97f4a7c15))
}

// Fixed sends at a constant rate: arrival n is at base + n/rate, computed from
// the count rather than by adding gaps, so rounding never accumulates.
// The first arrival is at the source's start.
type Fixed struct {
	rate       float64
	base, last time.Duration
	n          int64
	begun      bool
}

// NewFixed returns a fixed-rate process (requests/s).
func NewFixed(rate float64) *Fixed { return &Fixed{rate: rate} }

func (f *Fixed) Next(prev time.Duration) (time.Duration, bool) {
	if f.rate <= 0 {
		return 0, false
	}
	if !f.begun {
		f.begun, f.base, f.n, f.last = true, prev, 0, prev
		return prev, true
	}
	f.n++
	f.last = afterSeconds(f.base, float64(f.n)/f.rate)
	return f.last, true
}

// SetRate changes the rate from the last arrival on (Clockwork's
// AdjustFixedRate): the next gap already uses the new rate.
func (f *Fixed) SetRate(rate float64) {
	f.rate = rate
	if f.begun {
		f.base, f.n = f.last, 0
	}
}

// Rate returns the current rate.
func (f *Fixed) Rate() float64 { return f.rate }

// Poisson has exponentially distributed gaps with mean 1/rate. The next
// arrival is the previous intended time plus one draw; the first is one draw
// after the start (memoryless, as Clockwork's PoissonOpenLoop).
type Poisson struct {
	rate float64
	rng  *rand.Rand
}

// NewPoisson returns a Poisson process of rate requests/s.
func NewPoisson(rate float64, rng *rand.Rand) *Poisson { return &Poisson{rate: rate, rng: rng} }

func (p *Poisson) Next(prev time.Duration) (time.Duration, bool) {
	if p.rate <= 0 {
		return 0, false
	}
	return afterSeconds(prev, p.rng.ExpFloat64()/p.rate), true
}

// SetRate changes the rate for the gaps drawn from now on.
func (p *Poisson) SetRate(rate float64) { p.rate = rate }

// Rate returns the current rate.
func (p *Poisson) Rate() float64 { return p.rate }

// Gamma has gamma-distributed gaps with the given mean rate and shape
// (vLLM's --burstiness): shape 1 is Poisson, below 1 burstier, above 1 more
// regular. The coefficient of variation of the gaps is 1/sqrt(shape).
type Gamma struct {
	rate, shape float64
	rng         *rand.Rand
}

// NewGamma returns a gamma process; shape must be > 0.
func NewGamma(rate, shape float64, rng *rand.Rand) (*Gamma, error) {
	if !(shape > 0) || math.IsInf(shape, 0) {
		return nil, fmt.Errorf("gamma burstiness must be a positive number, got %v", shape)
	}
	return &Gamma{rate: rate, shape: shape, rng: rng}, nil
}

func (g *Gamma) Next(prev time.Duration) (time.Duration, bool) {
	if g.rate <= 0 {
		return 0, false
	}
	// Gamma(shape, scale) with scale = 1/(rate*shape) has mean 1/rate.
	x := gammaDraw(g.rng, g.shape) / (g.rate * g.shape)
	return afterSeconds(prev, x), true
}

// SetRate changes the mean rate for the gaps drawn from now on.
func (g *Gamma) SetRate(rate float64) { g.rate = rate }

// Rate returns the current mean rate.
func (g *Gamma) Rate() float64 { return g.rate }

// gammaDraw returns a Gamma(shape, 1) variate (Marsaglia and Tsang 2000; for
// shape < 1 the boost Gamma(shape+1)·U^(1/shape)).
func gammaDraw(r *rand.Rand, shape float64) float64 {
	if shape < 1 {
		u := r.Float64()
		for u == 0 {
			u = r.Float64()
		}
		return gammaDraw(r, shape+1) * math.Pow(u, 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x {
			return d * v
		}
		if u > 0 && math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// Offsets is a precomputed schedule (a trace): the arrivals are at the given
// offsets from the source's start, which must be non-decreasing.
type Offsets struct {
	At []time.Duration
	i  int
	s0 time.Duration
}

func (o *Offsets) Next(prev time.Duration) (time.Duration, bool) {
	if o.i == 0 {
		o.s0 = prev
	}
	if o.i >= len(o.At) {
		return 0, false
	}
	t := o.s0 + o.At[o.i]
	o.i++
	if t < prev {
		t = prev
	}
	return t, true
}
