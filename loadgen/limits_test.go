package loadgen

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// validConfig is a run every check accepts.
func validConfig() Config {
	return Config{
		Seed: 1, Duration: Duration(2 * time.Second),
		Target:   TargetConfig{URL: "http://127.0.0.1:8000/x", Protocol: "http", Method: "POST", Headers: map[string]string{"X-Trace": "1"}},
		Workload: WorkloadConfig{Arrival: "poisson", Rate: 10},
	}
}

// TestValidateRanges: every numeric field refuses NaN, ±Inf, negative and
// out-of-range values with a *FieldError naming the manifest key, of kind
// errkind.ErrInvalid; values inside the range pass.
func TestValidateRanges(t *testing.T) {
	inf, nan := math.Inf(1), math.NaN()
	cases := []struct {
		name string
		set  func(*Config)
		key  string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"rate NaN", func(c *Config) { c.Workload.Rate = nan }, "workload.rate"},
		{"rate +Inf", func(c *Config) { c.Workload.Rate = inf }, "workload.rate"},
		{"rate -Inf", func(c *Config) { c.Workload.Rate = -inf }, "workload.rate"},
		{"rate 1e300", func(c *Config) { c.Workload.Rate = 1e300 }, "workload.rate"},
		{"rate 1e-300", func(c *Config) { c.Workload.Rate = 1e-300 }, "workload.rate"},
		{"rate negative", func(c *Config) { c.Workload.Rate = -1 }, "workload.rate"},
		{"rate at the maximum", func(c *Config) { c.Workload.Rate = MaxRate }, ""},
		{"burstiness NaN", func(c *Config) { c.Workload.Burstiness = nan }, "workload.burstiness"},
		{"burstiness tiny", func(c *Config) { c.Workload.Burstiness = 1e-300 }, "workload.burstiness"},
		{"concurrency negative", func(c *Config) { c.Workload.Concurrency = -1 }, "workload.concurrency"},
		{"concurrency huge", func(c *Config) { c.Workload.Concurrency = 1 << 40 }, "workload.concurrency"},
		{"think time negative", func(c *Config) { c.Workload.ThinkTime = Duration(-time.Second) }, "workload.think_time"},
		{"max requests negative", func(c *Config) { c.Workload.MaxRequests = -1 }, "workload.max_requests"},
		{"duration negative", func(c *Config) { c.Duration = Duration(-time.Second) }, "duration"},
		{"duration 1000000h", func(c *Config) { c.Duration = Duration(1000000 * time.Hour) }, "duration"},
		{"interval too small", func(c *Config) { c.Interval = Duration(time.Nanosecond) }, "interval"},
		{"too many intervals", func(c *Config) { c.Duration, c.Interval = Duration(MaxDuration), Duration(MinInterval) }, "interval"},
		{"drain negative", func(c *Config) { c.Drain = Duration(-1) }, "drain"},
		{"max in flight huge", func(c *Config) { c.MaxInFlight = 1 << 40 }, "max_in_flight"},
		{"max in flight negative", func(c *Config) { c.MaxInFlight = -1 }, "max_in_flight"},
		{"pacer priority", func(c *Config) { c.PacerPriority = "fast" }, "pacer_priority"},
		{"timeout negative", func(c *Config) { c.Target.Timeout = Duration(-1) }, "target.timeout"},
		{"timeout a year", func(c *Config) { c.Target.Timeout = Duration(365 * 24 * time.Hour) }, "target.timeout"},
		{"input tokens huge", func(c *Config) { c.Target.InputTokens = 1 << 40 }, "target.input_tokens"},
		{"output tokens negative", func(c *Config) { c.Target.OutputTokens = -1 }, "target.output_tokens"},
		{"max connections huge", func(c *Config) { c.Target.MaxConnections = 1 << 40 }, "target.max_connections"},
		{"slo factor negative", func(c *Config) { c.SLO.Factor = -2 }, "slo.factor"},
		{"slo factor +Inf", func(c *Config) { c.SLO.Factor = inf }, "slo.factor"},
		{"slo deadline negative", func(c *Config) { c.SLO.Deadline = Duration(-1) }, "slo.deadline"},
		{"calibration requests huge", func(c *Config) { c.SLO.CalibrationRequests = 1 << 40 }, "slo.calibration_requests"},
		{"ttft negative", func(c *Config) { c.SLO.TTFT = Duration(-1) }, "slo.ttft"},
		{"url port 99999", func(c *Config) { c.Target.URL = "http://127.0.0.1:99999" }, "target.url"},
		{"url port 0", func(c *Config) { c.Target.URL = "http://127.0.0.1:0" }, "target.url"},
		{"url with a space", func(c *Config) { c.Target.URL = "http://127.0.0.1:8000/a b" }, "target.url"},
		{"url with CRLF", func(c *Config) { c.Target.URL = "http://127.0.0.1:8000/a\r\nX: y" }, "target.url"},
		{"url scheme", func(c *Config) { c.Target.URL = "ftp://h" }, "target.url"},
		{"protocol", func(c *Config) { c.Target.Protocol = "grpc" }, "target.protocol"},
		{"method with CRLF", func(c *Config) { c.Target.Method = "GET / HTTP/1.1\r\nX-Injected: 1\r\n" }, "target.method"},
		{"method with a space", func(c *Config) { c.Target.Method = "GET /" }, "target.method"},
		{"method with NUL", func(c *Config) { c.Target.Method = "GE\x00T" }, "target.method"},
		{"header value with LF", func(c *Config) { c.Target.Headers = map[string]string{"X-A": "1\nX-B: 2"} }, "target.headers"},
		{"header value with NUL", func(c *Config) { c.Target.Headers = map[string]string{"X-A": "1\x00"} }, "target.headers"},
		{"header name with a colon", func(c *Config) { c.Target.Headers = map[string]string{"X-A: b": "1"} }, "target.headers"},
		{"header name empty", func(c *Config) { c.Target.Headers = map[string]string{"": "1"} }, "target.headers"},
		{"header value with a tab", func(c *Config) { c.Target.Headers = map[string]string{"X-A": "a\tb"} }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig()
			c.set(&cfg)
			err := cfg.Validate()
			if c.key == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v (%T), want a *FieldError about %s", err, err, c.key)
			}
			if fe.Key != c.key {
				t.Errorf("error about %q (%v), want %q", fe.Key, err, c.key)
			}
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Errorf("%v is not errkind.ErrInvalid", err)
			}
		})
	}
}

// TestCheckRefusesWorkloadsBeyondTheLimits: Check builds the workload as
// the task would (without reading trace files) and refuses what it would
// refuse, quickly and without allocating the absurd.
func TestCheckRefusesWorkloadsBeyondTheLimits(t *testing.T) {
	cases := []struct {
		name    string
		arrival string
		args    []string
		params  map[string]any
		want    string
	}{
		{"slo-exp-1 with a billion copies", "slo-exp-1", []string{"resnet50_v2", "1000000000", "poisson", "100", "2", "32", "2", "mul", "7"}, nil, "copies"},
		{"poisson-open-loop at an infinite rate", "poisson-open-loop", []string{"4", "inf"}, nil, "rate"},
		{"poisson-open-loop at 1e300", "poisson-open-loop", []string{"4", "1e300"}, nil, "rate"},
		{"poisson-open-loop at NaN", "poisson-open-loop", []string{"4", "NaN"}, nil, "rate"},
		{"comparison_experiment2 with 1e6 × 1e6 clients", "comparison_experiment2", []string{"1000000", "1000000"}, nil, "num_models"},
		{"slo-exp-2 with too many background clients", "slo-exp-2", []string{"m", "1", "poisson", "10", "2", "8", "2", "mul", "1", "50000", "100", "2"}, nil, "concurrency"},
		{"slo-exp-1 with a nanosecond period", "slo-exp-1", []string{"m", "1", "poisson", "10", "2", "8", "2", "mul", "1e-9"}, nil, "period"},
		{"example over a huge zoo", "example", nil, map[string]any{"zoo": int64(100000)}, "sources"},
		{"azure with absurd workers", "azure", nil, map[string]any{"num_workers": int64(1 << 40)}, "num_workers"},
		{"unknown arrival", "poison", nil, nil, "poison"},
		{"poisson without a rate", "poisson", nil, nil, "rate"},
		{"closed without clients", "closed", nil, nil, "concurrency"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig()
			cfg.Workload = WorkloadConfig{Arrival: c.arrival, Args: c.args, Params: c.params}
			start := time.Now()
			err := Check(&cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Errorf("%v is not errkind.ErrInvalid", err)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("refusing took %v", el)
			}
		})
	}
	// Check reads no trace: azure passes without AZURE_TRACE_DIR.
	t.Setenv("AZURE_TRACE_DIR", "")
	cfg := validConfig()
	cfg.Workload = WorkloadConfig{Arrival: "azure"}
	if err := Check(&cfg); err != nil {
		t.Errorf("azure: %v", err)
	}
}

// TestPlanNoticesCancellation: a plan that would take long stops soon
// after its context is cancelled, with the context's error.
func TestPlanNoticesCancellation(t *testing.T) {
	w, err := BuildWorkload(&Config{Seed: 1, Workload: WorkloadConfig{Arrival: "poisson", Rate: MaxRate}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := PlanWorkload(ctx, w, PlanOptions{Duration: 90 * time.Second}) // 9e7 arrivals: several seconds
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	cancelled := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
		// 100 ms is the documented bound; the rest is slack for a loaded machine.
		if el := time.Since(cancelled); el > time.Second {
			t.Errorf("plan stopped %v after cancellation", el)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("plan ignored cancellation")
	}
}

// TestPlanRefusesBeyondItsBound: a plan that would generate more arrivals
// than its bound is refused with the number, before it starts when the
// rate says so and as soon as it passes the bound otherwise.
func TestPlanRefusesBeyondItsBound(t *testing.T) {
	w, err := BuildWorkload(&Config{Seed: 1, Workload: WorkloadConfig{Arrival: "poisson", Rate: MaxRate}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = PlanWorkload(context.Background(), w, PlanOptions{Duration: MaxDuration})
	if err == nil || !errors.Is(err, errkind.ErrInvalid) || !strings.Contains(err.Error(), "100000000") {
		t.Errorf("got %v, want an invalid-input error naming the bound 100000000", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("refusing took %v", el)
	}
	// slo-exp-1's rate is not known up front: the bound stops it as it passes.
	w = mustClockwork(t, "slo-exp-1", 0, "m", "2", "fixed-rate", "1000", "2", "32", "2", "mul", "7")
	rep, err := PlanWorkload(context.Background(), w, PlanOptions{MaxArrivals: 5000})
	if err == nil || !strings.Contains(err.Error(), "5000") || !errors.Is(err, errkind.ErrInvalid) {
		t.Errorf("got %v (report %v), want the bound of 5000 arrivals", err, rep)
	}
	// Per-interval rows are bounded too.
	w = openWorkload(t, "fixed", 1, 0, 1)
	if _, err := PlanWorkload(context.Background(), w, PlanOptions{Duration: MaxDuration, Interval: time.Microsecond}); err == nil || !errors.Is(err, errkind.ErrInvalid) {
		t.Errorf("a week in 1 µs intervals: got %v", err)
	}
}

// TestProcessesNeverRunBackwards: a vanishing rate (after a split across
// many sources) gives gaps that saturate far in the future instead of
// overflowing into the past.
func TestProcessesNeverRunBackwards(t *testing.T) {
	rng := NewRNG(1, 1)
	g, err := NewGamma(1e-300, 1, rng)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]Process{
		"poisson": NewPoisson(1e-300, rng),
		"gamma":   g,
		"bursty":  NewBurstyPoisson(1e-300, time.Second, time.Second, rng),
		"trace":   NewTraceReplay(Floats{1e-300, 0}, 1e-300, time.Minute, 0, rng),
	} {
		prev := time.Second
		for i := 0; i < 3; i++ {
			next, ok := p.Next(prev)
			if ok && next < prev {
				t.Errorf("%s: next arrival %v before the previous at %v", name, next, prev)
				break
			}
			prev = next
		}
	}
	f := NewFixed(1e-300)
	f.Next(time.Second)
	if next, ok := f.Next(time.Second); ok && next < time.Second {
		t.Errorf("fixed: next arrival %v before the first", next)
	}
}

// TestAzureGenerateBounds: an absurd function count is refused with the
// limit before anything is written, bad numbers are refused, and a long
// generation stops when cancelled.
func TestAzureGenerateBounds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "azure")
	for _, o := range []AzureGenOptions{
		{Functions: 1000000000},
		{Functions: 10, MeanRate: math.Inf(1)},
		{Functions: 10, MeanRate: math.NaN()},
		{Functions: 10, Sigma: 1e300},
	} {
		_, err := GenerateAzureTraceDays(context.Background(), dir, 1, o)
		if err == nil || !errors.Is(err, errkind.ErrInvalid) {
			t.Errorf("%+v: got %v, want an invalid-input error", o, err)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("refused generation created %s", dir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := GenerateAzureTraceDays(ctx, dir, 14, AzureGenOptions{Functions: MaxAzureFunctions}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled generation: got %v", err)
	}
}

// TestLimitsDocumented: docs/spec.md and docs/cli.md carry the limits
// table as Limits renders it, so the docs cannot drift from the code.
func TestLimitsDocumented(t *testing.T) {
	table := LimitsMarkdown()
	for _, l := range Limits {
		if !strings.Contains(table, "`"+l.Key+"`") {
			t.Errorf("the table lacks %s", l.Key)
		}
	}
	for _, doc := range []string{"../docs/spec.md", "../docs/cli.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), table) {
			t.Errorf("%s lacks the limits table as LimitsMarkdown renders it:\n%s", doc, table)
		}
	}
}

// TestCheckRefusesEndlessRuns: an open loop with neither a duration nor a
// request count is refused as bad input, before anything is sent.
func TestCheckRefusesEndlessRuns(t *testing.T) {
	cfg := validConfig()
	cfg.Duration = 0
	var fe *FieldError
	if err := Check(&cfg); !errors.As(err, &fe) || fe.Key != "duration" {
		t.Errorf("got %v, want a *FieldError about duration", err)
	}
	cfg.Workload.MaxRequests = 10
	if err := Check(&cfg); err != nil {
		t.Errorf("with max_requests: %v", err)
	}
}

// stuckProcess sends its next arrival at the same instant as the last, for
// ever: a rate no sender keeps up with (an azure trace scaled absurdly).
type stuckProcess struct{}

func (stuckProcess) Next(prev time.Duration) (time.Duration, bool) { return prev, true }

// TestPacerStopsWhenHopelesslyBehind: a schedule that never advances ends
// within the run's bound (duration + its overrun + the drain), instead of
// sending for ever.
func TestPacerStopsWhenHopelesslyBehind(t *testing.T) {
	cfg := &Config{Seed: 1, Duration: Duration(200 * time.Millisecond), Drain: Duration(100 * time.Millisecond), MaxInFlight: 1000}
	w := &Workload{Name: "stuck", Open: []*OpenLoop{{Model: "m", Proc: stuckProcess{}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	sum, err := Run(ctx, cfg, w, RunOptions{Target: nopTarget{}})
	el := time.Since(start)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if bound := cfg.Duration.D() + paceOverrun(cfg.Duration.D()) + cfg.Drain.D() + 5*time.Second; el > bound {
		t.Errorf("run of %v took %v, past %v", cfg.Duration.D(), el, bound)
	}
	if sum.Status != StatusCompleted || sum.Total.Offered == 0 {
		t.Errorf("status %s, offered %d", sum.Status, sum.Total.Offered)
	}
}
