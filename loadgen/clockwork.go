package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Clockwork's client catalogue (OSDI'20, src/clockwork/workload). Behaviour
// follows the original as coded, with its bugs fixed; every fix is listed
// in the workload's Deviations and in docs/workloads.md.

// Deviations shared by several workloads.
const (
	devStreams   = "independent random stream per source (the original seeds every source with its id; example reuses seeds 0 and 1 for every model)"
	devIntended  = "latency is measured from each request's intended send time (the original measures from the actual send)"
	devBurst     = "bursty sources start at a uniformly random point of their burst/idle cycle (the original always starts in a burst: phase ≤ 1.2e-10)"
	devBurstIdle = "bursty closed loop: idle gaps are drawn from the idle distribution every cycle (the original uses the burst distribution after the first)"
	devClosedN   = "closed loop with a request count sends exactly that many requests, in flight included (the original sends concurrency + N and then keeps going)"
	devFloatSLO  = "SLO start and end factors are floats (the original parses them as integers)"
	devDuration  = "open-loop and trace workloads end after the run's duration (the original runs until killed)"
)

// Bounds of the Clockwork parameters that limits.go does not name.
const (
	MaxAzureWorkers    = 10_000
	MaxAzureLoadFactor = 10_000
	minSLOPeriod       = time.Millisecond
)

// Clockwork's model for the only model its code names.
const clockworkModel = "resnet50_v2"

var clockworkCatalogue = []*ClockworkSpec{
	{
		Name:    "example",
		Summary: "every zoo model gets five sources: fixed rate 5 r/s, Poisson 10 r/s, bursty Poisson 10 r/s (bursts ~10 s, idle ~20 s), closed loop of 1, bursty closed loop of 1",
		Options: []string{"zoo", "pattern"}, OpenEnded: true, Closed: true,
		build: buildExample,
	},
	{
		Name:    "fill_memory",
		Summary: "411 resnet50_v2 copies, Poisson: copy 0 at 1000 r/s, copies 1-10 at 10 r/s, copies 11-410 at 1 r/s (1500 r/s)",
		Options: []string{"pattern"}, OpenEnded: true,
		build: buildFillMemory,
	},
	{
		Name:    "spam",
		Summary: "100 copies of the model, each a closed loop of concurrency 100 (10,000 outstanding)",
		Params:  []ClockworkParam{pStr("modelname", clockworkModel, "model to copy")},
		Options: []string{"pattern"}, OpenEnded: true, Closed: true,
		build: func(a *cwArgs) (*Workload, error) { return closedCopies(a, a.str("modelname"), 100, 100), nil },
	},
	{
		Name:    "single-spam",
		Summary: "100 resnet50_v2 copies, each a closed loop of concurrency 1000 (the help text says 1 copy)",
		Options: []string{"pattern"}, OpenEnded: true, Closed: true,
		build: func(a *cwArgs) (*Workload, error) { return closedCopies(a, clockworkModel, 100, 1000), nil },
	},
	{
		Name:    "simple",
		Summary: "2 resnet50_v2 copies, each a closed loop of concurrency 1",
		Options: []string{"pattern"}, OpenEnded: true, Closed: true,
		build: func(a *cwArgs) (*Workload, error) { return closedCopies(a, clockworkModel, 2, 1), nil },
	},
	{
		Name:    "simple-slo-factor",
		Summary: "3 resnet50_v2 copies, closed loops of 1; every 10 s the SLO factors change: m0 4 then ×1.25, m1 4 then +1, m2 toggles 10 ↔ 1",
		Options: []string{"pattern"}, OpenEnded: true, Closed: true,
		build: buildSimpleSLOFactor,
	},
	{
		Name:    "simple-parametric",
		Summary: "model copies split into contiguous groups, one closed-loop client per group, each sending a fixed number of requests; ends when all are done",
		Params: []ClockworkParam{
			pInt("models", "", 1, MaxSources, "number of model copies"),
			pInt("clients", "", 1, MaxSources, "number of clients among which the models are partitioned"),
			pInt("concurrency", "", 1, MaxConcurrency, "concurrent requests per client"),
			pInt("requests", "", 1, MaxRequests, "total requests per client (for termination)"),
		},
		Options: []string{"pattern"}, Closed: true,
		build: buildSimpleParametric,
	},
	{
		Name:    "poisson-open-loop",
		Summary: "copies of resnet50_v2, each Poisson at rate/num_models",
		Params: []ClockworkParam{
			pInt("num_models", "", 1, MaxSources, "number of model copies"),
			pFloat("rate", "", 0, MaxRate, "total requests/s, split across all models"),
		},
		Options: []string{"pattern"}, OpenEnded: true,
		build: func(a *cwArgs) (*Workload, error) {
			return openCopies(a, clockworkModel, a.int("num_models"), "poisson", a.float("rate"), ""), nil
		},
	},
	{
		Name:    "slo-exp-1",
		Summary: "open-loop copies at rate/copies; the SLO factor starts at slo-start and changes by slo-op slo-factor every period seconds; the run ends when it exceeds slo-end",
		Params:  sloExpParams(""),
		Options: []string{"pattern"},
		build:   buildSLOExp1,
	},
	{
		Name:    "slo-exp-2",
		Summary: "foreground (fg): slo-exp-1 on copies-fg copies; background (bg): copies-bg further copies, closed loops of concurrency-bg with a fixed SLO factor slo-bg, starting after 10 s",
		Params: append(sloExpParams("-fg"),
			pInt("copies-bg", "", 0, MaxSources, "number of BG models (closed loop)"),
			pInt("concurrency-bg", "", 1, MaxConcurrency, "concurrency of each BG model's closed loop"),
			pFloat("slo-bg", "", 0, MaxSLOFactor, "SLO factor of BG models (ideally relaxed)"),
		),
		Options: []string{"pattern"},
		build:   buildSLOExp2,
	},
	{
		Name:    "comparison_experiment",
		Summary: "num_models resnet50_v2 copies, each Poisson at total_requests/num_models",
		Params: []ClockworkParam{
			pInt("num_models", "15", 1, MaxSources, "the number of models"),
			pFloat("total_requests", "1000", 0, MaxRate, "total requests/s across all models"),
		},
		Options: []string{"pattern"}, OpenEnded: true,
		build: func(a *cwArgs) (*Workload, error) {
			return openCopies(a, clockworkModel, a.int("num_models"), "poisson", a.float("total_requests"), ""), nil
		},
	},
	{
		Name:    "comparison_experiment2",
		Summary: "closed-loop version of comparison_experiment: num_models copies, each a closed loop of concurrency",
		Params: []ClockworkParam{
			pInt("num_models", "15", 1, MaxSources, "the number of models"),
			pInt("concurrency", "16", 1, MaxConcurrency, "closed-loop concurrency per model"),
		},
		Options: []string{"pattern"}, OpenEnded: true, Closed: true,
		build: func(a *cwArgs) (*Workload, error) {
			return closedCopies(a, clockworkModel, a.int("num_models"), a.int("concurrency")), nil
		},
	},
	{
		Name:    "azure",
		Summary: "replay an Azure Functions 2019 trace: functions sorted by popularity, mapped in contiguous blocks onto model copies, per-minute rates scaled by load_factor×0.125×num_workers",
		Params: []ClockworkParam{
			pInt("num_workers", "1", 1, MaxAzureWorkers, "the number of workers you're using"),
			pBool("use_all_models", "1", "load all zoo models (1) or just resnet50_v2 (0)"),
			pFloat("load_factor", "1.0", 0, MaxAzureLoadFactor, "approximate load relative to the system's capacity (0.5 = half, 2.0 = overload ×2)"),
			{Name: "memory_load_factor", Type: "int", Default: "4", Help: "copies per model: 1 ≈ 200, 2 ≈ 800, 3 ≈ 1800, 4 ≈ 4000 models", min: 1, hasMin: true, max: 4},
			pInt("interval", "60", 1, 86400, "seconds of replay per trace minute (60 = real time; smaller compresses time)"),
			pInt("trace", "1", 1, 14, "trace day to replay, 1 to 14"),
			pBool("randomise", "0", "start each function at a random minute of the trace"),
		},
		Options: []string{"zoo", "pattern", "trace_dir", "placement"}, OpenEnded: true,
		build: buildAzure,
	},
	{
		Name:    "bursty_experiment",
		Summary: "300 s lead-in, then 1000 r/s spread over k models with one more model every second (k = 1 … num_models); plus a resnet50_v2 copy at a constant 200 r/s",
		Params: []ClockworkParam{
			pInt("num_models", "3600", 1, MaxSources, "number of 'major' workload models"),
		},
		Options: []string{"pattern"}, OpenEnded: true,
		build: buildBursty,
	},
}

func sloExpParams(sfx string) []ClockworkParam {
	return []ClockworkParam{
		pStr("model", "", "model name (e.g. resnet50_v2)"),
		pInt("copies"+sfx, "", 0, MaxSources, "number of model instances"),
		pEnum("dist"+sfx, "", "arrival distribution", "poisson", "fixed-rate"),
		pFloat("rate"+sfx, "", 0, MaxRate, "total arrival rate (requests/s)"),
		pFloat("slo-start"+sfx, "", 0, MaxSLOFactor, "starting SLO multiplier"),
		pFloat("slo-end"+sfx, "", 0, MaxSLOFactor, "ending SLO multiplier"),
		pFloat("slo-factor"+sfx, "", 0, MaxSLOFactor, "amount by which the SLO multiplier changes"),
		pEnum("slo-op"+sfx, "", "operator for changing the SLO multiplier", "add", "mul"),
		pFloat("period"+sfx, "", 0, MaxDuration.Seconds(), "seconds before changing the SLO multiplier"),
	}
}

// openCopies is n copies of model, each an open loop (poisson or
// fixed-rate) at total/n, id = seed = i (+ idBase).
func openCopies(a *cwArgs, model string, n int, dist string, total float64, class string) *Workload {
	w := &Workload{Deviations: []string{devStreams, devIntended, devDuration}}
	w.Open = openSources(a, model, 0, n, dist, total, class)
	return w
}

func openSources(a *cwArgs, model string, first, n int, dist string, total float64, class string) []*OpenLoop {
	if n <= 0 {
		return nil
	}
	per := total / float64(n)
	out := make([]*OpenLoop, n)
	for i := range out {
		id := first + i
		var p Process
		if dist == "fixed-rate" {
			p = NewFixed(per)
		} else {
			p = NewPoisson(per, NewRNG(a.seed, uint64(id)))
		}
		out[i] = &OpenLoop{Model: a.name(model, id, id), Class: class, Proc: p}
	}
	return out
}

func closedCopies(a *cwArgs, model string, n, conc int) *Workload {
	w := &Workload{Deviations: []string{devIntended, devDuration}}
	for i := 0; i < n; i++ {
		w.Closed = append(w.Closed, &ClosedLoop{Models: []string{a.name(model, i, i)}, Concurrency: conc})
	}
	return w
}

func buildExample(a *cwArgs) (*Workload, error) {
	zoo, err := a.zooOr(SyntheticZoo(DefaultZooSize))
	if err != nil {
		return nil, err
	}
	if n := 5 * len(zoo); n > MaxSources {
		return nil, a.usageErr("a zoo of %d models gives %d sources (five per model), more than the %d a workload may have", len(zoo), n, MaxSources)
	}
	w := &Workload{Deviations: []string{devStreams, devIntended, devBurst, devBurstIdle, devDuration}}
	for i, m := range zoo {
		name := a.name(m, 0, i)
		// Five sources per model; stream 5i+k keeps them independent.
		rng := func(k int) *rand.Rand { return NewRNG(a.seed, uint64(5*i+k)) }
		w.Open = append(w.Open,
			&OpenLoop{Model: name, Class: "fixed", Proc: NewFixed(5)},
			&OpenLoop{Model: name, Class: "poisson", Proc: NewPoisson(10, rng(1))},
			&OpenLoop{Model: name, Class: "bursty", Proc: NewBurstyPoisson(10, 10*time.Second, 20*time.Second, rng(2))},
		)
		w.Closed = append(w.Closed,
			&ClosedLoop{Models: []string{name}, Class: "closed", Concurrency: 1},
			&ClosedLoop{Models: []string{name}, Class: "bursty-closed", Concurrency: 1,
				Gate: NewOnOff(10*time.Second, 20*time.Second, rng(4)).Gate},
		)
	}
	return w, nil
}

func buildFillMemory(a *cwArgs) (*Workload, error) {
	w := &Workload{Deviations: []string{devStreams, devIntended, devDuration,
		"fill_memory: 411 open-loop copies as coded (the help text says 500 copies, 100 closed + 400 open)"}}
	for i := 0; i < 411; i++ {
		rate := 1.0
		switch {
		case i == 0:
			rate = 1000
		case i <= 10:
			rate = 10
		}
		w.Open = append(w.Open, &OpenLoop{Model: a.name(clockworkModel, i, i), Proc: NewPoisson(rate, NewRNG(a.seed, uint64(i)))})
	}
	return w, nil
}

func buildSimpleSLOFactor(a *cwArgs) (*Workload, error) {
	w := closedCopies(a, clockworkModel, 3, 1)
	w.Deviations = append(w.Deviations, "simple-slo-factor: model 2 toggles 10 ↔ 1 (the original's `current = 10 ? 1 : 10` sets 1 and stays there)")
	updates := []struct {
		init float64
		f    func(float64) float64
	}{
		{4, func(c float64) float64 { return c * 1.25 }},
		{4, func(c float64) float64 { return c + 1 }},
		{10, func(c float64) float64 {
			if c == 10 {
				return 1
			}
			return 10
		}},
	}
	for i, u := range updates {
		cl, f := w.Closed[i], u.f
		cl.SLOFactor = u.init
		w.Timers = append(w.Timers, &Timer{At: 10 * time.Second, Period: 10 * time.Second, Fire: func(time.Duration) TimerAction {
			cl.SLOFactor = f(cl.SLOFactor)
			return TimerContinue
		}})
	}
	return w, nil
}

func buildSimpleParametric(a *cwArgs) (*Workload, error) {
	m, c, conc, n := a.int("models"), a.int("clients"), a.int("concurrency"), a.int("requests")
	w := &Workload{Deviations: []string{devIntended, devClosedN}}
	g := (m + c - 1) / c
	for i := 0; i < c; i++ {
		lo, hi := i*g, min((i+1)*g, m)
		if lo >= hi {
			// ceil(M/C) groups can run out before the last clients; the
			// original gives those clients no models.
			w.Deviations = append(w.Deviations, fmt.Sprintf("simple-parametric: clients %d-%d have no models (groups of %d) and are not started", i, c-1, g))
			break
		}
		models := make([]string, 0, hi-lo)
		for j := lo; j < hi; j++ {
			models = append(models, a.name(clockworkModel, j, j))
		}
		w.Closed = append(w.Closed, &ClosedLoop{Models: models, Class: "", Concurrency: conc, Max: int64(n)})
	}
	return w, nil
}

// sloSchedule is the SLO factor sequence of slo-exp: start, then op(factor)
// every period, ending when it exceeds end.
type sloSchedule struct {
	start, end, f float64
	mul           bool
	period        time.Duration
}

func (s sloSchedule) next(c float64) float64 {
	if s.mul {
		return c * s.f
	}
	return c + s.f
}

// terminates reports whether the factor ever exceeds end.
func (s sloSchedule) terminates() bool {
	if s.start > s.end {
		return true
	}
	if s.mul {
		return s.f > 1 && s.start > 0
	}
	return s.f > 0
}

func (a *cwArgs) sloSchedule(sfx string) (sloSchedule, error) {
	s := sloSchedule{
		start: a.float("slo-start" + sfx), end: a.float("slo-end" + sfx), f: a.float("slo-factor" + sfx),
		mul: a.str("slo-op"+sfx) == "mul", period: time.Duration(a.float("period"+sfx) * float64(time.Second)),
	}
	if s.start <= 0 {
		return s, a.usageErr("slo-start%s must be > 0 (a factor of 0 means no SLO factor)", sfx)
	}
	if s.period < minSLOPeriod {
		return s, a.usageErr("period%s must be at least %v (seconds, e.g. 0.5)", sfx, minSLOPeriod)
	}
	if !s.terminates() && a.dur <= 0 {
		return s, a.usageErr("with slo-op %s and slo-factor %g the factor never exceeds slo-end %g, so the run would never end: give a duration", a.str("slo-op"+sfx), s.f, s.end)
	}
	return s, nil
}

// sweepTimer applies the schedule to the sources: Clockwork's AdjustSLO with
// its terminate predicate (factor > end ends the whole run).
func sweepTimer(s sloSchedule, srcs []*OpenLoop) *Timer {
	cur := s.start
	// The sweep ends at a known time; stopping the sources there too makes
	// the workload visibly finite (a run needs no duration).
	_, end := s.Steps(1 << 20)
	for _, o := range srcs {
		o.SLOFactor = cur
		if end > 0 {
			o.Stop = end
		}
	}
	return &Timer{At: s.period, Period: s.period, Fire: func(time.Duration) TimerAction {
		cur = s.next(cur)
		if cur > s.end {
			return TimerEndRun
		}
		for _, o := range srcs {
			o.SLOFactor = cur
		}
		return TimerContinue
	}}
}

// Steps returns the factors of an SLO schedule and how long the run lasts
// (0 = never ends).
func (s sloSchedule) Steps(limit int) (factors []float64, end time.Duration) {
	cur := s.start
	for i := 0; i < limit; i++ {
		if cur > s.end {
			return factors, time.Duration(i) * s.period
		}
		factors = append(factors, cur)
		cur = s.next(cur)
	}
	return factors, 0
}

func buildSLOExp1(a *cwArgs) (*Workload, error) {
	s, err := a.sloSchedule("")
	if err != nil {
		return nil, err
	}
	w := &Workload{Deviations: []string{devStreams, devIntended, devFloatSLO}}
	w.Open = openSources(a, a.str("model"), 0, a.int("copies"), a.str("dist"), a.float("rate"), "")
	if len(w.Open) == 0 {
		return nil, a.usageErr("copies must be ≥ 1")
	}
	w.Timers = append(w.Timers, sweepTimer(s, w.Open))
	return w, nil
}

func buildSLOExp2(a *cwArgs) (*Workload, error) {
	s, err := a.sloSchedule("-fg")
	if err != nil {
		return nil, err
	}
	cfg, cbg := a.int("copies-fg"), a.int("copies-bg")
	if cfg == 0 && a.dur <= 0 {
		return nil, a.usageErr("with copies-fg 0 nothing ends the run (the original runs forever): give a duration")
	}
	if cfg+cbg == 0 {
		return nil, a.usageErr("copies-fg + copies-bg must be ≥ 1")
	}
	w := &Workload{Deviations: []string{devStreams, devIntended, devFloatSLO}, SweptClass: "fg"}
	model := a.str("model")
	w.Open = openSources(a, model, 0, cfg, a.str("dist-fg"), a.float("rate-fg"), "fg")
	if cfg > 0 {
		w.Timers = append(w.Timers, sweepTimer(s, w.Open))
	}
	for i := 0; i < cbg; i++ {
		id := cfg + i
		w.Closed = append(w.Closed, &ClosedLoop{
			Models: []string{a.name(model, id, id)}, Class: "bg", SLOFactor: a.float("slo-bg"),
			Concurrency: a.int("concurrency-bg"), Start: 10 * time.Second,
		})
	}
	if a.float("slo-bg") == 0 {
		w.Calibrate = true
	}
	return w, nil
}

// bursty_experiment: the ramp of bursty_experiment2(1, 1, M, 1 s, 300,
// 1000 r/s) as a rate series per model, computed rather than stored (3600
// models × 3900 intervals would be 100 MB).
type burstyRamp struct {
	model, models, leadIn int
	total                 float64 // units per minute spread over the active models
}

func (r burstyRamp) Len() int { return r.leadIn + r.models }

func (r burstyRamp) PerMinute(k int) float64 {
	step := k - r.leadIn + 1 // number of active models
	if step < 1 || r.model >= step {
		return 0
	}
	per := math.Floor(r.total / float64(step))
	if float64(r.model) < r.total-per*float64(step) {
		per++
	}
	return per
}

func buildBursty(a *cwArgs) (*Workload, error) {
	m := a.int("num_models")
	w := &Workload{Deviations: []string{devStreams, devIntended, devDuration,
		"bursty_experiment: rate vectors have 300 + num_models entries (the original writes one past the end)"}}
	for i := 0; i < m; i++ {
		ramp := burstyRamp{model: i, models: m, leadIn: 300, total: 60000}
		w.Open = append(w.Open, &OpenLoop{Model: a.name(clockworkModel, i, i), Class: "ramp",
			Proc: NewTraceReplay(ramp, 1, time.Second, 0, NewRNG(a.seed, uint64(i)))})
	}
	w.Open = append(w.Open, &OpenLoop{Model: a.name(clockworkModel, m, m), Class: "hipri",
		Proc: NewPoisson(200, NewRNG(a.seed, uint64(m)))})
	return w, nil
}
