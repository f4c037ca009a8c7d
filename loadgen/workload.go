package loadgen

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
)

// Arrival is one request the workload wants sent.
type Arrival struct {
	At        time.Duration // intended send time, offset from the run's start
	Seq       int64         // arrival number in the run, from 0
	Model     string
	Class     string  // e.g. "fg"/"bg"; "" when the workload has no classes
	SLOFactor float64 // SLO factor in force for this request (0 = none)
	closed    int32   // index+1 of the closed loop that sent it; 0 for open loop
}

// OpenLoop is one open-loop source: arrivals from Proc, independent of
// completions. Timers may change SLOFactor (and the process's rate) while the
// run goes on; the new value applies to arrivals emitted afterwards.
type OpenLoop struct {
	Model     string
	Class     string
	SLOFactor float64
	Proc      Process
	Start     time.Duration // first arrival is computed from here
	Stop      time.Duration // no arrivals at or after Stop (0 = until the run ends)
	Max       int64         // at most this many arrivals (0 = no limit)

	sent    int64
	foreign bool // another shard's (Workload.Shard, source split)
}

// ClosedLoop is a closed-loop client with Concurrency outstanding requests:
// each completion (success or failure) schedules the next request Think
// later, cycling round-robin over Models. The intended time of a closed-loop
// request is when it became eligible (completion + think), so its lateness
// shows how late the sender picked it up.
type ClosedLoop struct {
	Models      []string
	Class       string
	SLOFactor   float64
	Concurrency int
	Think       time.Duration
	Start       time.Duration // when the first Concurrency requests become eligible
	Max         int64         // exactly this many requests in total, in flight included (0 = no limit)
	// Gate, if set, moves a request's eligibility to the earliest allowed
	// time at or after it (e.g. the next burst of an on/off pattern).
	Gate func(at time.Duration) time.Duration

	issued, outstanding, queued int64
	next                        int
}

// TimerAction tells the scheduler what to do after a timer fired.
type TimerAction int

const (
	TimerContinue TimerAction = iota // fire again after Period (if Period > 0)
	TimerStop                        // never fire again
	TimerEndRun                      // end the whole run now (Clockwork's terminate predicate)
)

// Timer runs Fire at At and then every Period, on the intended timeline:
// now is the intended firing time, so periodic timers never drift. Fire may
// change sources' SLO factors and rates. Timers do not keep a run alive.
type Timer struct {
	At     time.Duration
	Period time.Duration
	Fire   func(now time.Duration) TimerAction
}

// Workload is a set of sources and timers merged into one arrival process.
// Built-in arrival kinds (poisson, fixed, gamma, closed) and Clockwork's
// catalogue both produce one; the same value drives a real run (Run) or a
// virtual-clock plan (Plan). A Workload is used once: sources keep state.
type Workload struct {
	Name   string
	Open   []*OpenLoop
	Closed []*ClosedLoop
	Timers []*Timer
	// MaxRequests ends the run after this many arrivals in total (0 = none).
	MaxRequests int64
	// DefaultSLO is the deadline used for requests without an SLO factor when
	// the workload reports SLOs (Clockwork's 100 ms default_slo); 0 = none.
	DefaultSLO time.Duration
	// Calibrate forces the batch-1 calibration even when no source has an
	// SLO factor at the start (a timer sets factors later).
	Calibrate bool
	// Deviations lists where the workload knowingly differs from the
	// original it imitates; copied into the Summary.
	Deviations []string
	// SweptClass names the class whose SLO factor the workload sweeps (e.g.
	// slo-exp-2's "fg"): only its arrivals define SLO steps and the factor
	// in force shown in interval snapshots. "" = all arrivals.
	SweptClass string

	// A sharded workload (Shard): shard shardI of shardK; with filterOpen
	// the scheduler keeps only open-loop arrivals n ≡ shardI (mod shardK).
	shardI, shardK int
	filterOpen     bool
}

// Models returns the distinct models the workload sends to, sorted.
func (w *Workload) Models() []string {
	seen := map[string]bool{}
	for _, o := range w.Open {
		seen[o.Model] = true
	}
	for _, c := range w.Closed {
		for _, m := range c.Models {
			seen[m] = true
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// WorkloadFactory builds a workload from a run's configuration. models is
// the target's model list (Config.Target.Models), never empty.
type WorkloadFactory func(cfg *Config, models []string) (*Workload, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]WorkloadFactory{}
	usages     = map[string]string{}
)

// RegisterWorkload makes a named workload available to Config.Workload.Arrival
// (e.g. Clockwork's catalogue). usage is a one-line description for help text.
func RegisterWorkload(name, usage string, f WorkloadFactory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("loadgen: workload registered twice: " + name)
	}
	registry[name], usages[name] = f, usage
}

// Workloads returns the registered workload names with their usage lines.
func Workloads() map[string]string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make(map[string]string, len(usages))
	for k, v := range usages {
		out[k] = v
	}
	return out
}

// BuildWorkload turns a configuration into a workload: one of the built-in
// arrival kinds, or a registered named workload. It checks the numbers of
// cfg against Limits first, and the workload built against MaxSources and
// MaxConcurrency; every error is of kind errkind.ErrInvalid.
func BuildWorkload(cfg *Config) (*Workload, error) {
	return buildWorkload(cfg, false)
}

// Check checks cfg as a task would before it sends anything — Validate,
// then the workload built, its size, and that it ends — without reading any file (an
// azure workload's trace is read by the task): what a spec reader calls
// for each planned task. The error is the one the task would refuse with,
// of kind errkind.ErrInvalid; a *FieldError when one key is at fault.
func Check(cfg *Config) error {
	_, err := CheckSources(cfg)
	return err
}

// CheckSources is Check, and says how many sources the workload has (for
// bounding the work of checking many tasks).
func CheckSources(cfg *Config) (int, error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	w, err := buildWorkload(cfg, true)
	if err != nil {
		return 0, err
	}
	if cfg.Duration.D() <= 0 && w.MaxRequests <= 0 && len(w.Open) > 0 && !finiteOpen(w) {
		return 0, &FieldError{Key: "duration", Value: "0s", Want: "an open-loop workload without max_requests never ends by itself: give a duration, 1ms to " + FormatDuration(MaxDuration)}
	}
	return len(w.Open) + len(w.Closed), nil
}

func buildWorkload(cfg *Config, check bool) (*Workload, error) {
	if err := cfg.validateNumbers(); err != nil {
		return nil, err
	}
	w, err := buildWorkloadUnchecked(cfg, check)
	if err != nil {
		if errors.Is(err, errkind.ErrInvalid) {
			return nil, err
		}
		return nil, errkind.Invalid(err)
	}
	if err := w.checkSize(); err != nil {
		return nil, err
	}
	return w, nil
}

func buildWorkloadUnchecked(cfg *Config, check bool) (*Workload, error) {
	wc := cfg.Workload
	models := cfg.Target.Models
	if len(models) == 0 {
		models = []string{""}
	}
	switch wc.Arrival {
	case "poisson", "fixed", "constant", "gamma":
		if !(wc.Rate > 0) {
			return nil, &FieldError{Key: "workload.rate", Value: FormatNumber(wc.Rate), Want: fmt.Sprintf("workload %s needs a positive rate: want %s to %s requests/s", clip.Quote(wc.Arrival), FormatNumber(MinRate), FormatNumber(MaxRate))}
		}
		w := &Workload{Name: nameOr(wc.Name, wc.Arrival), MaxRequests: wc.MaxRequests}
		per := wc.Rate / float64(len(models))
		for i, m := range models {
			rng := NewRNG(cfg.Seed, uint64(i))
			var p Process
			switch wc.Arrival {
			case "poisson":
				p = NewPoisson(per, rng)
			case "fixed", "constant":
				p = NewFixed(per)
			case "gamma":
				b := wc.Burstiness
				if b == 0 {
					b = 1
				}
				g, err := NewGamma(per, b, rng)
				if err != nil {
					return nil, err
				}
				p = g
			}
			w.Open = append(w.Open, &OpenLoop{Model: m, Proc: p, SLOFactor: cfg.SLO.Factor})
		}
		return w, nil
	case "closed":
		if wc.Concurrency <= 0 {
			return nil, &FieldError{Key: "workload.concurrency", Value: strconv.Itoa(wc.Concurrency), Want: fmt.Sprintf("a closed-loop workload needs concurrency from 1 to %d", MaxConcurrency)}
		}
		return &Workload{
			Name:        nameOr(wc.Name, "closed"),
			MaxRequests: wc.MaxRequests,
			Closed: []*ClosedLoop{{
				Models: models, Concurrency: wc.Concurrency, Think: wc.ThinkTime.D(),
				Max: wc.MaxRequests, SLOFactor: cfg.SLO.Factor,
			}},
		}, nil
	case "":
		return nil, &FieldError{Key: "workload.arrival", Value: `""`, Want: fmt.Sprintf("no workload arrival kind given (want poisson, fixed, gamma, closed%s)", registeredList())}
	}
	if spec := LookupClockwork(wc.Arrival); spec != nil {
		w, err := parseClockwork(spec, cfg.Workload.Args, cfg.Workload.ParamStrings(), clockworkZoo(models), cfg.Seed, cfg.Duration.D(), check)
		if err != nil {
			return nil, fmt.Errorf("workload %s: %w", wc.Arrival, err)
		}
		return w, nil
	}
	registryMu.RLock()
	f := registry[wc.Arrival]
	registryMu.RUnlock()
	if f == nil {
		return nil, &FieldError{Key: "workload.arrival", Value: clip.Quote(wc.Arrival), Want: fmt.Sprintf("unknown workload (want poisson, fixed, gamma, closed%s)", registeredList())}
	}
	w, err := f(cfg, models)
	if err != nil {
		return nil, fmt.Errorf("workload %s: %w", wc.Arrival, err)
	}
	if w.Name == "" {
		w.Name = nameOr(wc.Name, wc.Arrival)
	}
	if w.MaxRequests == 0 {
		w.MaxRequests = wc.MaxRequests
	}
	return w, nil
}

func nameOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Arrivals lists what a workload's arrival may be: the built-in kinds, then
// the registered workloads by name.
func Arrivals() []string {
	names := []string{"poisson", "fixed", "gamma", "closed"}
	for n := range Workloads() {
		names = append(names, n)
	}
	sort.Strings(names[4:])
	return names
}

func registeredList() string {
	names := make([]string, 0)
	for n := range Workloads() {
		names = append(names, n)
	}
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	s := ""
	for _, n := range names {
		s += ", " + n
	}
	return s
}
