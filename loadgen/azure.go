package loadgen

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/gpuorch/gpuorch/internal/limitio"
)

// Azure Functions 2019 trace (Shahrad et al., ATC'20): one file per day,
// invocations_per_function_md.anon.dNN.csv, with columns
// HashOwner,HashApp,HashFunction,Trigger,1..1440 (invocations per minute).

// AzureMinutes is the number of per-minute columns of a trace day.
const AzureMinutes = 1440

// AzureFunction is one row of a trace day.
type AzureFunction struct {
	Owner, App, Function, Trigger string
	Counts                        Counts // AzureMinutes per-minute invocation counts
	Total                         uint64
	Line                          int // line in the file (1 = header)
}

// AzureTrace is one day of the trace.
type AzureTrace struct {
	File      string
	Functions []AzureFunction // in file order
}

// AzureTraceFile returns the path of day (1-14) in dir: the older
// ".svls." name when it exists (the original client prefers it), else the
// current one.
func AzureTraceFile(dir string, day int) string {
	old := filepath.Join(dir, fmt.Sprintf("invocations_per_function_md.svls.anon.d%02d.csv", day))
	if _, err := os.Stat(old); err == nil {
		return old
	}
	return filepath.Join(dir, fmt.Sprintf("invocations_per_function_md.anon.d%02d.csv", day))
}

// ReadAzureTraceDay reads day (1-14) from dir.
func ReadAzureTraceDay(dir string, day int) (*AzureTrace, error) {
	if day < 1 || day > 14 {
		return nil, fmt.Errorf("trace day %d: want 1 to 14", day)
	}
	return ReadAzureTrace(AzureTraceFile(dir, day))
}

// ReadAzureTrace reads one trace file, within limitio.Trace's limits. A row
// without exactly 4+1440 fields, or with a count that is not a non-negative
// integer, is an error naming the file and line.
func ReadAzureTrace(path string) (*AzureTrace, error) {
	return ReadAzureTraceContext(context.Background(), path)
}

// ReadAzureTraceContext is ReadAzureTrace that stops when ctx is done.
func ReadAzureTraceContext(ctx context.Context, path string) (*AzureTrace, error) {
	f, err := limitio.Open(ctx, path, limitio.Trace)
	if err != nil {
		return nil, fmt.Errorf("azure trace: %w", err)
	}
	defer f.Close()
	t, err := ParseAzureTrace(f, path)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// ParseAzureTrace parses a trace file's contents; name is used in errors.
func ParseAzureTrace(r io.Reader, name string) (*AzureTrace, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<20))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	t := &AzureTrace{File: name}
	first := true
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%s:%d: %v", name, pe.StartLine, pe.Err)
			}
			var le *limitio.Error
			if errors.As(err, &le) {
				return nil, err // names the file and the line
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		if first {
			first = false
			if len(rec) > 0 && rec[0] == "HashOwner" {
				continue // header
			}
		}
		if len(rec) != 4+AzureMinutes {
			return nil, fmt.Errorf("%s:%d: %d fields, want %d (HashOwner,HashApp,HashFunction,Trigger and 1440 per-minute counts)", name, line, len(rec), 4+AzureMinutes)
		}
		fn := AzureFunction{Owner: rec[0], App: rec[1], Function: rec[2], Trigger: rec[3], Counts: make(Counts, AzureMinutes), Line: line}
		for i, s := range rec[4:] {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: minute %d: %q is not a non-negative integer count", name, line, i+1, s)
			}
			fn.Counts[i] = uint32(v)
			fn.Total += v
		}
		t.Functions = append(t.Functions, fn)
	}
	if len(t.Functions) == 0 {
		return nil, fmt.Errorf("%s: no functions in the trace", name)
	}
	return t, nil
}

// ByPopularity returns the functions sorted by daily total, busiest first
// (ties in file order), as the original client orders them.
func (t *AzureTrace) ByPopularity() []*AzureFunction {
	out := make([]*AzureFunction, len(t.Functions))
	for i := range t.Functions {
		out[i] = &t.Functions[i]
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Total > out[j].Total })
	return out
}

// WriteAzureTrace writes t in the trace's CSV format (with the header).
func WriteAzureTrace(w io.Writer, fns []AzureFunction) error {
	bw := bufio.NewWriter(w)
	writeAzureHeader(bw)
	var buf []byte
	for i := range fns {
		buf = writeAzureRow(bw, &fns[i], buf)
	}
	return bw.Flush()
}

func writeAzureHeader(bw *bufio.Writer) {
	bw.WriteString("HashOwner,HashApp,HashFunction,Trigger")
	for m := 1; m <= AzureMinutes; m++ {
		bw.WriteByte(',')
		bw.WriteString(strconv.Itoa(m))
	}
	bw.WriteByte('\n')
}

func writeAzureRow(bw *bufio.Writer, f *AzureFunction, buf []byte) []byte {
	bw.WriteString(f.Owner + "," + f.App + "," + f.Function + "," + f.Trigger)
	for _, c := range f.Counts {
		buf = strconv.AppendUint(append(buf[:0], ','), uint64(c), 10)
		bw.Write(buf)
	}
	bw.WriteByte('\n')
	return buf
}

// AzureGenOptions shapes a generated trace day.
type AzureGenOptions struct {
	Functions int     // rows (default 200; at most MaxAzureFunctions)
	Seed      int64   // same seed, same file
	Day       int     // 1-14; shifts the daily phase slightly
	MeanRate  float64 // median function's mean invocations per minute (default 0.5; at most MaxAzureMeanRate)
	Sigma     float64 // log-normal spread of popularity (default 2.5: ~5 orders of magnitude; at most MaxAzureSigma)
}

// Bounds of a generated trace (AzureGenOptions).
const (
	MaxAzureMeanRate = 50000 // invocations per minute, the cap of any one function
	MaxAzureSigma    = 10
)

// Validate checks the options' ranges (0 is the default everywhere); the
// error is a *FieldError keyed by the option's flag name.
func (o AzureGenOptions) Validate() error {
	bad := func(key string, v float64, want string) error {
		return &FieldError{Key: key, Value: FormatNumber(v), Want: want}
	}
	switch {
	case o.Functions < 0 || o.Functions > MaxAzureFunctions:
		return bad("functions", float64(o.Functions), fmt.Sprintf("want 1 to %d functions a day", MaxAzureFunctions))
	case o.Day < 0 || o.Day > 14:
		return bad("days", float64(o.Day), "want 1 to 14")
	case math.IsNaN(o.MeanRate) || math.IsInf(o.MeanRate, 0) || o.MeanRate < 0 || o.MeanRate > MaxAzureMeanRate:
		return bad("mean-rate", o.MeanRate, fmt.Sprintf("want a number above 0 and at most %d invocations per minute", MaxAzureMeanRate))
	case math.IsNaN(o.Sigma) || math.IsInf(o.Sigma, 0) || o.Sigma < 0 || o.Sigma > MaxAzureSigma:
		return bad("sigma", o.Sigma, fmt.Sprintf("want a number above 0 and at most %d", MaxAzureSigma))
	}
	return nil
}

var azureTriggers = []string{"http", "timer", "queue", "event", "storage", "orchestration", "others"}

// GenerateAzureTrace makes a synthetic day in the Azure format with the
// trace's broad features: heavy-tailed (log-normal) popularity, a diurnal
// cycle (peak in the afternoon, trough at night) with per-function
// amplitude, timer-triggered functions firing on fixed periods, and
// occasional bursts. Counts are Poisson around the shaped rate. Options out
// of range are taken as the defaults; GenerateAzureTraceDays refuses them.
func GenerateAzureTrace(o AzureGenOptions) []AzureFunction {
	var out []AzureFunction
	_ = generateAzure(context.Background(), o, func(f *AzureFunction) error {
		out = append(out, *f)
		return nil
	})
	return out
}

// generateAzure makes the functions of a day one at a time, handing each to
// each (which must not keep it), so a day of any size takes the memory of
// one row; it stops with ctx's error when ctx is done.
func generateAzure(ctx context.Context, o AzureGenOptions, each func(*AzureFunction) error) error {
	if o.Validate() != nil {
		o.Functions, o.MeanRate, o.Sigma = min(max(o.Functions, 0), MaxAzureFunctions), 0, 0
	}
	if o.Functions <= 0 {
		o.Functions = 200
	}
	if o.MeanRate <= 0 {
		o.MeanRate = 0.5
	}
	if o.Sigma <= 0 {
		o.Sigma = 2.5
	}
	rng := NewRNG(o.Seed, uint64(o.Day))
	hash := func() string {
		const hex = "0123456789abcdef"
		b := make([]byte, 64)
		for i := range b {
			b[i] = hex[rng.IntN(16)]
		}
		return string(b)
	}
	owner, app := hash(), hash()
	for i := 0; i < o.Functions; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if rng.IntN(4) == 0 {
			owner = hash()
		}
		if rng.IntN(2) == 0 {
			app = hash()
		}
		mean := o.MeanRate * math.Exp(rng.NormFloat64()*o.Sigma)
		mean = math.Min(mean, MaxAzureMeanRate)
		trig := azureTriggers[rng.IntN(len(azureTriggers))]
		f := AzureFunction{Owner: owner, App: app, Function: hash(), Trigger: trig, Counts: make(Counts, AzureMinutes)}
		amp := 0.2 + 0.6*rng.Float64()
		phase := 2*math.Pi*(float64(o.Day)/14)*0.1 + 0.5*rng.NormFloat64()
		period := []int{1, 5, 10, 15, 30, 60}[rng.IntN(6)]
		burstP := 0.002 + 0.01*rng.Float64()
		for m := 0; m < AzureMinutes; m++ {
			// Diurnal: trough around 04:00, peak around 16:00.
			day := 1 + amp*math.Sin(2*math.Pi*(float64(m)/AzureMinutes-0.417)+phase)
			var c uint64
			if trig == "timer" {
				if m%period == 0 {
					c = uint64(math.Round(mean * float64(period)))
				}
			} else {
				lam := mean * day
				if rng.Float64() < burstP {
					lam *= 5 + 20*rng.Float64()
				}
				c = poissonDraw(rng, lam)
			}
			f.Counts[m] = uint32(min(c, math.MaxUint32))
			f.Total += c
		}
		if err := each(&f); err != nil {
			return err
		}
	}
	return nil
}

// poissonDraw returns a Poisson(lam) variate (inversion for small means,
// normal approximation above 60).
func poissonDraw(rng interface {
	Float64() float64
	NormFloat64() float64
}, lam float64) uint64 {
	if lam <= 0 {
		return 0
	}
	if lam > 60 {
		v := math.Round(lam + math.Sqrt(lam)*rng.NormFloat64())
		if v < 0 {
			return 0
		}
		return uint64(v)
	}
	l, k, p := math.Exp(-lam), uint64(0), 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// Copies per zoo model for memory_load_factor 1-4 (the original's table).
var (
	azureCopiesAll    = [5]int{0, 3, 13, 29, 66}
	azureCopiesSingle = [5]int{0, 200, 800, 1800, 3600}
)

// AzureScale is the trace scale: load_factor × 0.125 × workers (the
// original assumes the full trace is about eight workers' capacity).
func AzureScale(load float64, workers int) float64 { return load * 0.125 * float64(workers) }

func buildAzure(a *cwArgs) (*Workload, error) {
	workers, useAll, load := a.int("num_workers"), a.bool("use_all_models"), a.float("load_factor")
	mem, interval, day, randomise := a.int("memory_load_factor"), a.int("interval"), a.int("trace"), a.bool("randomise")
	if mem < 1 || mem > 4 {
		return nil, a.usageErr("memory_load_factor %d: want 1, 2, 3 or 4", mem)
	}
	if day < 1 || day > 14 {
		return nil, a.usageErr("trace %d: want 1 to 14", day)
	}
	placementOpt := a.opts["placement"]
	if placementOpt != "" && placementOpt != "shuffle" && placementOpt != "contiguous" {
		return nil, a.usageErr("placement=%q: want shuffle or contiguous", placementOpt)
	}
	var zoo []string
	var copies int
	if useAll {
		var err error
		if zoo, err = a.zooOr(SyntheticZoo(DefaultZooSize)); err != nil {
			return nil, err
		}
		copies = azureCopiesAll[mem]
	} else {
		zoo, copies = []string{clockworkModel}, azureCopiesSingle[mem]
	}
	if n := len(zoo) * copies; n > MaxSources {
		return nil, a.usageErr("%d zoo models × %d copies is %d models, more than the %d a workload may have", len(zoo), copies, n, MaxSources)
	}
	if a.check {
		return &Workload{}, nil // the task reads the trace
	}
	dir := a.opts["trace_dir"]
	if dir == "" {
		dir = a.env("AZURE_TRACE_DIR")
	}
	if dir == "" {
		return nil, errors.New("azure needs the Azure Functions trace: set AZURE_TRACE_DIR or trace_dir=DIR (make one with `gpuorch loadgen azure-trace generate`)")
	}
	placement := a.opts["placement"]
	if placement == "" {
		placement = "shuffle"
	}
	if placement != "shuffle" && placement != "contiguous" {
		return nil, a.usageErr("placement=%q: want shuffle or contiguous", placement)
	}
	trace, err := ReadAzureTraceDay(dir, day)
	if err != nil {
		return nil, err
	}
	if n := len(trace.Functions); n > MaxSources {
		return nil, fmt.Errorf("%s: %d functions, more than the %d sources a workload may have", trace.File, n, MaxSources)
	}
	models := make([]string, 0, len(zoo)*copies)
	for _, m := range zoo {
		for c := 0; c < copies; c++ {
			models = append(models, a.name(m, c, len(models)))
		}
	}
	if len(models) > 3100 {
		slog.Warn("azure: more than 3100 models may not fit in GPU memory", "models", len(models))
	}
	w := &Workload{Deviations: []string{devStreams, devIntended, devDuration,
		"azure: memory_load_factor outside 1-4 is rejected (the original leaves copies_per_model uninitialised)"}}
	if placement == "shuffle" {
		rng := NewRNG(a.seed, 1<<40)
		rng.Shuffle(len(models), func(i, j int) { models[i], models[j] = models[j], models[i] })
		w.Deviations = append(w.Deviations, "azure: model copies are shuffled (seeded) before functions are mapped to them; placement=contiguous gives the original's effective order")
	}
	if randomise {
		w.Deviations = append(w.Deviations, "azure: randomise starts each function at a uniformly random minute and offset (the original starts every function at minute 735-736)")
	}
	fns := trace.ByPopularity()
	scale := AzureScale(load, workers)
	iv := time.Duration(interval) * time.Second
	for i, fn := range fns {
		rng := NewRNG(a.seed, uint64(i))
		var start time.Duration
		if randomise {
			start = time.Duration(rng.IntN(AzureMinutes))*iv + time.Duration(rng.Int64N(int64(iv)))
		}
		model := models[len(models)*i/len(fns)]
		w.Open = append(w.Open, &OpenLoop{Model: model, Proc: NewTraceReplay(fn.Counts, scale, iv, start, rng)})
	}
	return w, nil
}
