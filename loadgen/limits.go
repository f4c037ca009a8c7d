package loadgen

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// Limits of a load run. Every number a run reads (manifest, spec, flags,
// Clockwork parameters) has a range, so that no value can make a run or a
// plan hang, run backwards in time or exhaust memory. Limits lists the
// ranges of the Config fields; Config.Validate checks them, and
// docs/spec.md and docs/cli.md carry LimitsMarkdown's rendering of the
// table (TestLimitsDocumented keeps them in step).
const (
	// MaxDuration bounds a run's duration (and a plan's).
	MaxDuration = 7 * 24 * time.Hour
	// MaxWait bounds every per-request wait: timeout, drain, think time
	// and the SLO deadlines.
	MaxWait = time.Hour
	// MinInterval and MaxInterval bound the snapshot interval; a run has at
	// most MaxIntervals of them (duration / interval).
	MinInterval  = 10 * time.Millisecond
	MaxInterval  = time.Hour
	MaxIntervals = 1_000_000
	// MinRate and MaxRate bound a total open-loop rate (requests/s).
	MinRate = 0.001
	MaxRate = 1e6
	// MinBurstiness and MaxBurstiness bound the gamma shape.
	MinBurstiness = 0.01
	MaxBurstiness = 100
	// MaxConcurrency bounds the closed-loop clients of a workload, all
	// sources together.
	MaxConcurrency = 100_000
	// MaxSources bounds a workload's sources (open and closed loops, model
	// copies, trace functions).
	MaxSources = 100_000
	// MaxRequests bounds max_requests.
	MaxRequests = 1_000_000_000
	// MaxInFlightLimit bounds max_in_flight (its queue is allocated).
	MaxInFlightLimit = 1_000_000
	// MaxConnectionsLimit bounds target.max_connections.
	MaxConnectionsLimit = 100_000
	// MaxTokens bounds the LLM prompt and answer lengths.
	MaxTokens = 1_000_000
	// MaxSLOFactor bounds SLO factors (slo.factor, Clockwork's slo-*).
	MaxSLOFactor = 1e6
	// MaxCalibrationRequests bounds slo.calibration_requests.
	MaxCalibrationRequests = 10_000
	// MaxPlanArrivals bounds the arrivals one plan may generate
	// (PlanOptions.MaxArrivals may lower it).
	MaxPlanArrivals = 100_000_000
	// MaxAzureFunctions bounds the functions of a generated trace day.
	MaxAzureFunctions = MaxSources
	// CancelLatency is how soon every long loop (planning, the pacer,
	// trace generation) notices a cancelled context.
	CancelLatency = 100 * time.Millisecond
)

// A Limit is the range of one manifest key. Zero (the key unset) means the
// default; negative numbers, NaN and ±Inf are always refused.
type Limit struct {
	Key      string
	Min, Max float64 // nanoseconds for durations
	Duration bool
	Unit     string
	Zero     string // what 0 (or leaving the key out) means
	get      func(*Config) float64
}

func durLimit(key string, min, max time.Duration, zero string, get func(*Config) Duration) Limit {
	return Limit{Key: key, Min: float64(min), Max: float64(max), Duration: true, Zero: zero,
		get: func(c *Config) float64 { return float64(get(c)) }}
}

func numLimit(key string, min, max float64, unit, zero string, get func(*Config) float64) Limit {
	return Limit{Key: key, Min: min, Max: max, Unit: unit, Zero: zero, get: get}
}

// Limits is the range of every numeric key of a Config (a manifest), in
// the order Validate checks them.
var Limits = []Limit{
	durLimit("duration", time.Millisecond, MaxDuration, "until the workload ends by itself; a spec refuses 0", func(c *Config) Duration { return c.Duration }),
	durLimit("interval", MinInterval, MaxInterval, "1s", func(c *Config) Duration { return c.Interval }),
	durLimit("drain", time.Millisecond, MaxWait, "5s", func(c *Config) Duration { return c.Drain }),
	numLimit("max_in_flight", 1, MaxInFlightLimit, "requests", "20000", func(c *Config) float64 { return float64(c.MaxInFlight) }),
	numLimit("workload.rate", MinRate, MaxRate, "requests/s", "none: poisson, fixed and gamma need one", func(c *Config) float64 { return c.Workload.Rate }),
	numLimit("workload.burstiness", MinBurstiness, MaxBurstiness, "", "1 (Poisson)", func(c *Config) float64 { return c.Workload.Burstiness }),
	numLimit("workload.concurrency", 1, MaxConcurrency, "clients", "none: closed needs one", func(c *Config) float64 { return float64(c.Workload.Concurrency) }),
	durLimit("workload.think_time", time.Nanosecond, MaxWait, "no pause", func(c *Config) Duration { return c.Workload.ThinkTime }),
	numLimit("workload.max_requests", 1, MaxRequests, "requests", "no limit", func(c *Config) float64 { return float64(c.Workload.MaxRequests) }),
	durLimit("target.timeout", time.Millisecond, MaxWait, "30s", func(c *Config) Duration { return c.Target.Timeout }),
	numLimit("target.input_tokens", 1, MaxTokens, "tokens", "128", func(c *Config) float64 { return float64(c.Target.InputTokens) }),
	numLimit("target.output_tokens", 1, MaxTokens, "tokens", "32", func(c *Config) float64 { return float64(c.Target.OutputTokens) }),
	numLimit("target.max_connections", 1, MaxConnectionsLimit, "connections", "4096, or the closed-loop clients + 64 when more", func(c *Config) float64 { return float64(c.Target.MaxConnections) }),
	durLimit("slo.deadline", time.Microsecond, MaxWait, "none", func(c *Config) Duration { return c.SLO.Deadline }),
	numLimit("slo.factor", 0.001, MaxSLOFactor, "", "none", func(c *Config) float64 { return c.SLO.Factor }),
	numLimit("slo.calibration_requests", 1, MaxCalibrationRequests, "requests", "10", func(c *Config) float64 { return float64(c.SLO.CalibrationRequests) }),
	durLimit("slo.ttft", time.Microsecond, MaxWait, "none", func(c *Config) Duration { return c.SLO.TTFT }),
	durLimit("slo.tpot", time.Microsecond, MaxWait, "none", func(c *Config) Duration { return c.SLO.TPOT }),
	durLimit("slo.e2el", time.Microsecond, MaxWait, "none", func(c *Config) Duration { return c.SLO.E2EL }),
	numLimit("shards", 1, MaxShards, "shards", "one process", func(c *Config) float64 { return float64(c.Shards) }),
	durLimit("shard_timeout", time.Second, MaxWait, "2m", func(c *Config) Duration { return c.ShardTimeout }),
}

// FieldError is a value outside what a run accepts: Key is the manifest key
// (dotted, as in Limits), Value the value as given, Want what is wrong and
// what is accepted. It is bad input (errkind.ErrInvalid). The spec reader
// maps Key to the spec's line, the CLI to its flag.
type FieldError struct {
	Key, Value, Want string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s = %s: %s", e.Key, e.Value, e.Want)
}

// Is makes every FieldError invalid input.
func (e *FieldError) Is(target error) bool { return target == errkind.ErrInvalid }

// FormatNumber writes a number as people write it: integers without an
// exponent below 10^15, others in the shortest form.
func FormatNumber(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

func (l Limit) format(x float64) string {
	if l.Duration {
		return FormatDuration(time.Duration(x))
	}
	return FormatNumber(x)
}

// FormatDuration writes a duration without zero minutes and seconds
// ("168h", "1h30m", "250ms").
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Range says what the limit accepts, e.g. "1ms to 168h0m0s".
func (l Limit) Range() string {
	s := l.format(l.Min) + " to " + l.format(l.Max)
	if l.Unit != "" {
		s += " " + l.Unit
	}
	return s
}

func (l Limit) check(c *Config) error {
	v := l.get(c)
	if v == 0 {
		return nil
	}
	switch {
	case math.IsNaN(v):
		return &FieldError{Key: l.Key, Value: "NaN", Want: "not a number; want " + l.Range()}
	case math.IsInf(v, 0):
		return &FieldError{Key: l.Key, Value: l.format(v), Want: "not finite; want " + l.Range()}
	case v < 0:
		return &FieldError{Key: l.Key, Value: l.format(v), Want: "must not be negative; want " + l.Range() + " (or 0: " + l.Zero + ")"}
	case v < l.Min || v > l.Max:
		return &FieldError{Key: l.Key, Value: l.format(v), Want: "out of range; want " + l.Range() + " (or 0: " + l.Zero + ")"}
	}
	return nil
}

// LimitsMarkdown renders Limits as the Markdown table the docs carry.
func LimitsMarkdown() string {
	var b strings.Builder
	b.WriteString("| manifest key | range | 0 or unset |\n|---|---|---|\n")
	for _, l := range Limits {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", l.Key, l.Range(), l.Zero)
	}
	return b.String()
}

// Validate checks every field of a run that can be checked without
// building its workload: the ranges of Limits (NaN and ±Inf refused
// everywhere), duration / interval ≤ MaxIntervals, the pacer priority and
// the target (TargetConfig.Validate). The error is a *FieldError.
func (c *Config) Validate() error {
	if err := c.validateNumbers(); err != nil {
		return err
	}
	return c.Target.Validate()
}

// validateNumbers is Validate without the target: what BuildWorkload
// checks, since plans build workloads without one.
func (c *Config) validateNumbers() error {
	for _, l := range Limits {
		if err := l.check(c); err != nil {
			return err
		}
	}
	if d, iv := c.Duration.D(), c.Interval.D(); d > 0 {
		if iv <= 0 {
			iv = time.Second
		}
		if n := int64(d / iv); n > MaxIntervals {
			return &FieldError{Key: "interval", Value: FormatDuration(iv),
				Want: fmt.Sprintf("%d snapshot intervals over %s; at most %d: make the interval at least %v", n, FormatDuration(d), MaxIntervals, (d/MaxIntervals).Round(time.Millisecond)+time.Millisecond)}
		}
	}
	if p := c.PacerPriority; p != "" && !slices.Contains(PacerPriorities, p) {
		return &FieldError{Key: "pacer_priority", Value: strconv.Quote(p), Want: "want one of " + strings.Join(PacerPriorities, ", ")}
	}
	return nil
}

// Validate checks a target without building it: an http:// or https:// URL
// with a host, a port from 1 to 65535 and no spaces or control characters;
// a known protocol; a method that is an HTTP token; header names that are
// tokens and values without CR, LF, NUL or other control characters. So no
// user byte reaches the wire outside its field, over http and https alike.
// The error is a *FieldError with a "target." key.
func (t TargetConfig) Validate() error {
	if err := checkTargetURL(t.URL); err != nil {
		return err
	}
	if t.Protocol != "" && !slices.Contains(Protocols, t.Protocol) {
		return &FieldError{Key: "target.protocol", Value: strconv.Quote(t.Protocol), Want: "unknown protocol; want one of " + strings.Join(Protocols, ", ")}
	}
	if t.Method != "" && !isToken(t.Method) {
		return &FieldError{Key: "target.method", Value: strconv.Quote(t.Method), Want: "not an HTTP method: want a token of letters, digits and !#$%&'*+-.^_`|~ (e.g. GET, POST)"}
	}
	names := make([]string, 0, len(t.Headers))
	for k := range t.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !isToken(k) {
			return &FieldError{Key: "target.headers", Value: strconv.Quote(k), Want: "not a header name: want a token of letters, digits and !#$%&'*+-.^_`|~"}
		}
		if v := t.Headers[k]; strings.ContainsFunc(v, isCtlNotTab) {
			return &FieldError{Key: "target.headers", Value: strconv.Quote(k + ": " + v), Want: "the value of header " + k + " holds CR, LF, NUL or another control character"}
		}
	}
	return nil
}

func checkTargetURL(raw string) error {
	bad := func(why string) error {
		return &FieldError{Key: "target.url", Value: strconv.Quote(raw), Want: "bad target URL: " + why}
	}
	if raw == "" {
		return bad("missing; want http://host:port[/path]")
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return bad("it holds a space or a control character (write a space as %20)")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("want http://host:port[/path] or https://…")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return bad("port " + p + ": want 1 to 65535")
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("empty port")
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token (method and header names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func isCtlNotTab(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }

// farFuture is where a gap too long for the timeline lands: beyond any
// run's end (MaxDuration), so such an arrival is never due.
const farFuture = time.Duration(math.MaxInt64 / 2)

// afterSeconds is prev plus s seconds, saturating at farFuture: a gap too
// long for a time.Duration (a vanishing rate) never overflows into the past.
func afterSeconds(prev time.Duration, s float64) time.Duration {
	if prev >= farFuture {
		return prev
	}
	ns := s * 1e9
	if !(ns < float64(farFuture-prev)) { // also NaN
		return farFuture
	}
	if ns < 0 {
		return prev
	}
	return prev + time.Duration(ns)
}

// checkSize refuses a workload beyond MaxSources sources or MaxConcurrency
// closed-loop clients, all sources together.
func (w *Workload) checkSize() error {
	if n := len(w.Open) + len(w.Closed); n > MaxSources {
		return errkind.Invalidf("workload %s has %d sources, more than the %d a workload may have", w.Name, n, MaxSources)
	}
	total := 0
	for _, c := range w.Closed {
		if c.Concurrency < 0 || c.Concurrency > MaxConcurrency {
			total = MaxConcurrency + 1
			break
		}
		total += c.Concurrency
	}
	if total > MaxConcurrency {
		return errkind.Invalidf("workload %s has %d closed-loop clients (concurrency, all sources together), more than the %d a workload may have", w.Name, total, MaxConcurrency)
	}
	return nil
}
