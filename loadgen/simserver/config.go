package simserver

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/duration"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/tomlstrict"
)

// Duration is gpuorch's duration type, text ("3ms", "1.5s") in TOML.
type Duration = duration.Duration

// Config is the whole simulated server: server settings and the models.
// The TOML form is documented in docs/sim-server.md.
type Config struct {
	Server ServerConfig `toml:"server"`
	DNN    []DNNModel   `toml:"dnn"`
	LLM    []LLMModel   `toml:"llm"`
}

// ServerConfig holds settings shared by all models.
type ServerConfig struct {
	// Listen is the address for `gpuorch sim-server` (the package itself
	// serves on whatever listener it is given).
	Listen string `toml:"listen"`
	// Workers > 0 makes all DNN models share that many simulated GPUs
	// (Clockwork-like: one queue per model, a free GPU takes a batch from the
	// model whose oldest request is oldest). 0 gives every DNN model its own
	// executor(s) (see DNNModel.Instances).
	Workers int `toml:"workers"`
	// FailRate is the fraction of inference requests answered 500 at once.
	FailRate float64 `toml:"fail_rate"`
	// HangRate is the fraction of inference requests never answered until
	// the client gives up (or the server shuts down).
	HangRate float64 `toml:"hang_rate"`
	// Seed seeds the fail/hang draws, so runs are repeatable.
	Seed uint64 `toml:"seed"`
	// TruthRecords > 0 records the ground truth of every streamed request
	// (when each chunk was written; GET /truth) and keeps up to that many
	// records until they are drained. 0 (the default) records nothing.
	TruthRecords int `toml:"truth_records"`
}

// DNNModel is a Clockwork-style DNN: one inference per request, batched.
// Latency of a batch of b requests: B1 × (1 + BatchAlpha × (b−1)).
type DNNModel struct {
	Name string `toml:"name"`
	// Copies ≥ 1 serves NAME-0 … NAME-(Copies−1) (NAME alone answers as
	// NAME-0); 0 serves one model named exactly NAME.
	Copies int `toml:"copies"`
	// B1 is the batch-1 execution latency (default 3ms, resnet50_v2 on a V100).
	B1 Duration `toml:"b1"`
	// MaxBatch is the largest batch (default 16).
	MaxBatch int `toml:"max_batch"`
	// BatchAlpha is the extra latency of each further request in a batch,
	// as a fraction of B1 (default 0.25; 0 = batching is free).
	BatchAlpha *float64 `toml:"batch_alpha"`
	// Instances is the number of batches one model may run at once when
	// Server.Workers is 0 (default 1).
	Instances int `toml:"instances"`
	// Drop enables deadline-based dropping for requests that carry
	// X-Request-Deadline-Ms (default true).
	Drop *bool `toml:"drop"`
	// Jitter spreads execution times uniformly over ×(1 ± Jitter), from a
	// seeded RNG (default 0: every batch of b takes exactly its latency).
	// Deadline decisions use the nominal latency.
	Jitter float64 `toml:"jitter"`
	// OutputShape is the per-item output tensor shape (default [10]); the
	// response's shape is [batch dimension of the input, OutputShape...].
	OutputShape []int `toml:"output_shape"`
}

// LLMModel is a token-generating model: TTFT = queueing + TTFTBase +
// PrefillPerToken × prompt tokens; then one token per decode step of
// TPOT × (1 + BatchSlowdown × (running requests − 1)).
type LLMModel struct {
	Name   string `toml:"name"`
	Copies int    `toml:"copies"`
	// PrefillPerToken is the prefill time per prompt token (default 0.5ms).
	PrefillPerToken Duration `toml:"prefill_per_token"`
	// TTFTBase is a fixed time added to every prefill (default 0).
	TTFTBase Duration `toml:"ttft_base"`
	// TPOT is the decode time per output token (default 10ms).
	TPOT Duration `toml:"tpot"`
	// Concurrency is the number of requests generating at once; more queue
	// FIFO (default 64).
	Concurrency int `toml:"concurrency"`
	// BatchSlowdown slows every decode step by this fraction per other
	// running request (default 0: a step takes TPOT whatever the load).
	BatchSlowdown float64 `toml:"batch_slowdown"`
	// MaxTokens is the output length when the request sets none (default 64).
	MaxTokens int `toml:"max_tokens"`
	// EOSAfter, when > 0, ends generation after that many tokens ("stop"),
	// unless the request sets ignore_eos. 0: generate until max_tokens.
	EOSAfter int `toml:"eos_after"`
}

// Defaults used when a field is zero (see the field comments).
const (
	DefaultB1              = 3 * time.Millisecond
	DefaultMaxBatch        = 16
	DefaultBatchAlpha      = 0.25
	DefaultPrefillPerToken = 500 * time.Microsecond
	DefaultTPOT            = 10 * time.Millisecond
	DefaultConcurrency     = 64
	DefaultMaxTokens       = 64
	DefaultListen          = "127.0.0.1:8000"
)

// DefaultModels is what the server serves when no model is configured:
// 16 copies of resnet50_v2 and one LLM named sim-llm.
func DefaultModels() Config {
	return Config{
		DNN: []DNNModel{{Name: "resnet50_v2", Copies: 16}},
		LLM: []LLMModel{{Name: "sim-llm"}},
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$`)

func (m *DNNModel) setDefaults() {
	if m.B1 == 0 {
		m.B1 = Duration(DefaultB1)
	}
	if m.MaxBatch == 0 {
		m.MaxBatch = DefaultMaxBatch
	}
	if m.BatchAlpha == nil {
		a := DefaultBatchAlpha
		m.BatchAlpha = &a
	}
	if m.Instances == 0 {
		m.Instances = 1
	}
	if m.Drop == nil {
		t := true
		m.Drop = &t
	}
	if len(m.OutputShape) == 0 {
		m.OutputShape = []int{10}
	}
}

func (m *LLMModel) setDefaults() {
	if m.PrefillPerToken == 0 {
		m.PrefillPerToken = Duration(DefaultPrefillPerToken)
	}
	if m.TPOT == 0 {
		m.TPOT = Duration(DefaultTPOT)
	}
	if m.Concurrency == 0 {
		m.Concurrency = DefaultConcurrency
	}
	if m.MaxTokens == 0 {
		m.MaxTokens = DefaultMaxTokens
	}
}

// Validate fills defaults in place and checks every field; the error names
// the model and the field.
func (c *Config) Validate() error {
	var errs []error
	if c.Server.Workers < 0 {
		errs = append(errs, fmt.Errorf("server.workers = %d: must be ≥ 0", c.Server.Workers))
	}
	if c.Server.FailRate < 0 || c.Server.FailRate > 1 {
		errs = append(errs, fmt.Errorf("server.fail_rate = %g: must be in [0, 1]", c.Server.FailRate))
	}
	if c.Server.HangRate < 0 || c.Server.HangRate > 1 {
		errs = append(errs, fmt.Errorf("server.hang_rate = %g: must be in [0, 1]", c.Server.HangRate))
	}
	if c.Server.TruthRecords < 0 || c.Server.TruthRecords > 100_000_000 {
		errs = append(errs, fmt.Errorf("server.truth_records = %d: must be in [0, 100000000]", c.Server.TruthRecords))
	}
	if c.Server.FailRate+c.Server.HangRate > 1 {
		errs = append(errs, fmt.Errorf("server.fail_rate + server.hang_rate = %g: must be ≤ 1", c.Server.FailRate+c.Server.HangRate))
	}
	checkName := func(kind string, i int, name string, copies int) {
		if !nameRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s[%d]: name %q: want 1–200 of letters, digits and . _ : / - (starting with a letter or digit)", kind, i, name))
		}
		if copies < 0 || copies > 1_000_000 {
			errs = append(errs, fmt.Errorf("%s %q: copies = %d: must be in [0, 1000000]", kind, name, copies))
		}
	}
	for i := range c.DNN {
		m := &c.DNN[i]
		m.setDefaults()
		checkName("dnn", i, m.Name, m.Copies)
		if m.MaxBatch < 1 || m.MaxBatch > 4096 {
			errs = append(errs, fmt.Errorf("dnn %q: max_batch = %d: must be in [1, 4096]", m.Name, m.MaxBatch))
		}
		if *m.BatchAlpha < 0 {
			errs = append(errs, fmt.Errorf("dnn %q: batch_alpha = %g: must be ≥ 0", m.Name, *m.BatchAlpha))
		}
		if m.Jitter < 0 || m.Jitter >= 1 {
			errs = append(errs, fmt.Errorf("dnn %q: jitter = %g: must be in [0, 1)", m.Name, m.Jitter))
		}
		if m.Instances < 1 {
			errs = append(errs, fmt.Errorf("dnn %q: instances = %d: must be ≥ 1", m.Name, m.Instances))
		}
		n := 1
		for _, d := range m.OutputShape {
			if d < 1 {
				errs = append(errs, fmt.Errorf("dnn %q: output_shape %v: dimensions must be ≥ 1", m.Name, m.OutputShape))
				break
			}
			n *= d
			if n > 1<<20 {
				errs = append(errs, fmt.Errorf("dnn %q: output_shape %v: more than 2^20 elements", m.Name, m.OutputShape))
				break
			}
		}
	}
	for i := range c.LLM {
		m := &c.LLM[i]
		m.setDefaults()
		checkName("llm", i, m.Name, m.Copies)
		if m.Concurrency < 1 {
			errs = append(errs, fmt.Errorf("llm %q: concurrency = %d: must be ≥ 1", m.Name, m.Concurrency))
		}
		if m.BatchSlowdown < 0 {
			errs = append(errs, fmt.Errorf("llm %q: batch_slowdown = %g: must be ≥ 0", m.Name, m.BatchSlowdown))
		}
		if m.MaxTokens < 1 {
			errs = append(errs, fmt.Errorf("llm %q: max_tokens = %d: must be ≥ 1", m.Name, m.MaxTokens))
		}
		if m.EOSAfter < 0 {
			errs = append(errs, fmt.Errorf("llm %q: eos_after = %d: must be ≥ 0", m.Name, m.EOSAfter))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// LoadFile reads a TOML config strictly: a syntax error, an unknown key, a
// wrong type or a bad value is an error naming the file, the line and the
// key.
func LoadFile(path string) (Config, error) {
	data, err := limitio.ReadFile(path, limitio.Config.As("sim-server config"))
	if err != nil {
		return Config{}, fmt.Errorf("read sim-server config: %w", err)
	}
	return parse(path, data)
}

// Parse decodes a TOML config (see LoadFile). Errors start with "LINE: ".
func Parse(data []byte) (Config, error) { return parse("", data) }

func parse(file string, data []byte) (Config, error) {
	doc, err := tomlstrict.Parse(file, data)
	if err != nil {
		return Config{}, err
	}
	var c Config
	if err := doc.Decode(nil, doc.Tree, &c); err != nil {
		return Config{}, err
	}
	// A time cannot be negative; say where one is.
	for i, m := range c.DNN {
		if m.B1 < 0 {
			return Config{}, doc.Errorf([]string{"dnn", tomlstrict.Elem(i), "b1"}, "dnn.b1: negative duration %q", m.B1)
		}
	}
	for i, m := range c.LLM {
		for _, f := range []struct {
			key string
			d   Duration
		}{{"prefill_per_token", m.PrefillPerToken}, {"ttft_base", m.TTFTBase}, {"tpot", m.TPOT}} {
			if f.d < 0 {
				return Config{}, doc.Errorf([]string{"llm", tomlstrict.Elem(i), f.key}, "llm.%s: negative duration %q", f.key, f.d)
			}
		}
	}
	return c, nil
}

// ParseModelFlag parses the command-line model form
//
//	NAME[:KEY=VALUE]...    e.g. resnet50_v2:copies=4000:b1=3ms:max_batch=8
//
// (commas work as separators too). KEYs are the TOML keys of the kind
// ("dnn" or "llm"); output_shape is written 3x224x224.
func ParseModelFlag(kind, s string) (dnn *DNNModel, llm *LLMModel, err error) {
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ',' })
	if len(parts) == 0 || strings.Contains(parts[0], "=") {
		return nil, nil, fmt.Errorf("--%s %q: want NAME[:key=value]... (e.g. %s)", kind, s, flagExample(kind))
	}
	switch kind {
	case "dnn":
		dnn = &DNNModel{Name: parts[0]}
	case "llm":
		llm = &LLMModel{Name: parts[0]}
	default:
		return nil, nil, fmt.Errorf("unknown model kind %q (want dnn or llm)", kind)
	}
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, nil, fmt.Errorf("--%s %q: %q is not key=value", kind, s, kv)
		}
		k = strings.TrimSpace(k)
		v = strings.TrimSpace(v)
		var ferr error
		if dnn != nil {
			ferr = setDNN(dnn, k, v)
		} else {
			ferr = setLLM(llm, k, v)
		}
		if ferr != nil {
			return nil, nil, fmt.Errorf("--%s %q: %s: %w", kind, s, k, ferr)
		}
	}
	return dnn, llm, nil
}

func flagExample(kind string) string {
	if kind == "llm" {
		return "sim-llm:prefill_per_token=1ms:tpot=10ms:concurrency=8"
	}
	return "resnet50_v2:copies=4000:b1=3ms:max_batch=16"
}

func parseDur(v string, dst *Duration) error {
	var d Duration
	if err := d.UnmarshalText([]byte(v)); err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("negative duration %q", v)
	}
	*dst = d
	return nil
}

func parseInt(v string, dst *int) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%q is not an integer", v)
	}
	*dst = n
	return nil
}

func parseFloat(v string, dst *float64) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", v)
	}
	*dst = f
	return nil
}

func setDNN(m *DNNModel, k, v string) error {
	switch k {
	case "copies":
		return parseInt(v, &m.Copies)
	case "b1":
		return parseDur(v, &m.B1)
	case "max_batch":
		return parseInt(v, &m.MaxBatch)
	case "batch_alpha", "alpha":
		var f float64
		if err := parseFloat(v, &f); err != nil {
			return err
		}
		m.BatchAlpha = &f
	case "instances":
		return parseInt(v, &m.Instances)
	case "jitter":
		return parseFloat(v, &m.Jitter)
	case "drop":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		m.Drop = &b
	case "output_shape":
		m.OutputShape = nil
		for _, d := range strings.Split(v, "x") {
			var n int
			if err := parseInt(d, &n); err != nil {
				return err
			}
			m.OutputShape = append(m.OutputShape, n)
		}
	default:
		return unknownFlagKey[DNNModel](k)
	}
	return nil
}

func setLLM(m *LLMModel, k, v string) error {
	switch k {
	case "copies":
		return parseInt(v, &m.Copies)
	case "prefill_per_token", "prefill":
		return parseDur(v, &m.PrefillPerToken)
	case "ttft_base":
		return parseDur(v, &m.TTFTBase)
	case "tpot":
		return parseDur(v, &m.TPOT)
	case "concurrency":
		return parseInt(v, &m.Concurrency)
	case "batch_slowdown":
		return parseFloat(v, &m.BatchSlowdown)
	case "max_tokens":
		return parseInt(v, &m.MaxTokens)
	case "eos_after":
		return parseInt(v, &m.EOSAfter)
	default:
		return unknownFlagKey[LLMModel](k)
	}
}

// unknownFlagKey says which keys a model of type M takes after its name:
// its TOML keys.
func unknownFlagKey[M any](k string) error {
	var known []string
	for _, n := range tomlstrict.KnownKeys(reflect.TypeFor[M](), nil) {
		if n != "name" {
			known = append(known, n)
		}
	}
	return fmt.Errorf("unknown key%s (known: %s)", tomlstrict.Suggest(k, known), strings.Join(known, ", "))
}
