package loadgen

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ClockworkParam is one parameter of a Clockwork workload, in the client's
// positional order.
type ClockworkParam struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`              // "int", "float", "bool" (0/1), "string", "enum"
	Default string   `json:"default,omitempty"` // "" = required
	Choices []string `json:"choices,omitempty"` // for "enum"
	Help    string   `json:"help"`
	min     float64  // values below are rejected
	hasMin  bool
	max     float64 // values above are rejected (0: no maximum)
}

// ClockworkSpec describes one workload of the catalogue. Everything shown to
// users (usage line, `gpuorch loadgen workloads`, docs) is generated from it.
type ClockworkSpec struct {
	Name      string           `json:"name"`
	Summary   string           `json:"summary"`
	Params    []ClockworkParam `json:"params,omitempty"`
	Options   []string         `json:"options,omitempty"` // named options it reads (see ClockworkOptions)
	OpenEnded bool             `json:"open_ended"`        // never ends by itself: needs a duration
	Closed    bool             `json:"closed_loop"`       // has closed-loop clients
	build     func(p *cwArgs) (*Workload, error)
}

// Usage is the workload's usage line: required parameters bare, optional
// ones in brackets, as in the client's help.
func (s *ClockworkSpec) Usage() string {
	var b strings.Builder
	b.WriteString(s.Name)
	for _, p := range s.Params {
		if p.Default == "" {
			b.WriteString(" " + p.Name)
		} else {
			b.WriteString(" [" + p.Name + "]")
		}
	}
	return b.String()
}

// ClockworkOption is a named setting that is not one of Clockwork's
// positional parameters (the original took these from the environment or
// hard-coded them). Given as NAME=VALUE after the positional parameters, or
// in workload.params.
type ClockworkOption struct {
	Name    string `json:"name"`
	Default string `json:"default"`
	Help    string `json:"help"`
}

// ClockworkOptions lists the named options common to the catalogue.
var ClockworkOptions = []ClockworkOption{
	{"pattern", "{model}-{copy}", "target model name of a copy: {model} = zoo model, {copy} = copy number of that model, {index} = position in the workload's model list"},
	{"zoo", "61 (example, azure) / resnet50_v2", "the model zoo: a count N (synthetic names model00 … model(N-1)) or a comma-separated list; --model flags / target.models also set it"},
	{"trace_dir", "$AZURE_TRACE_DIR", "azure: directory with invocations_per_function_md.anon.dNN.csv"},
	{"placement", "shuffle", "azure: order of model copies before functions are mapped in blocks: shuffle (seeded) or contiguous (the original's effective order)"},
}

// DefaultZooSize is the number of models in Clockwork's sample zoo, used by
// example and azure (use_all_models=1) when no zoo is given.
const DefaultZooSize = 61

// ClockworkDefaultSLO is Clockwork's default_slo: the deadline of requests
// that carry no SLO factor.
const ClockworkDefaultSLO = 100 * time.Millisecond

// SyntheticZoo returns n model names model00 … (zero-padded to the width of
// n-1), the stand-in for a CLOCKWORK_MODEL_DIR zoo.
func SyntheticZoo(n int) []string {
	w := len(strconv.Itoa(max(n-1, 0)))
	w = max(w, 2)
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("model%0*d", w, i)
	}
	return out
}

// cwArgs holds the parsed parameters and options of one invocation.
type cwArgs struct {
	spec    *ClockworkSpec
	vals    map[string]string
	opts    map[string]string
	seed    int64
	zoo     []string // from the target's models; nil = workload default
	dur     time.Duration
	env     func(string) string
	pattern string
	check   bool // Check: validate without reading files
}

func (a *cwArgs) usageErr(format string, args ...any) error {
	return fmt.Errorf("%s (usage: %s)", fmt.Sprintf(format, args...), a.spec.Usage())
}

func (a *cwArgs) str(name string) string { return a.vals[name] }

func (a *cwArgs) int(name string) int {
	v, _ := strconv.Atoi(a.vals[name])
	return v
}

func (a *cwArgs) float(name string) float64 {
	v, _ := strconv.ParseFloat(a.vals[name], 64)
	return v
}

func (a *cwArgs) bool(name string) bool { return parseBool01(a.vals[name]) }

func parseBool01(s string) bool {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// name returns the target name of copy c of zoo model m, which is the
// idx-th model of the workload.
func (a *cwArgs) name(m string, c, idx int) string {
	r := strings.NewReplacer("{model}", m, "{copy}", strconv.Itoa(c), "{index}", strconv.Itoa(idx))
	return r.Replace(a.pattern)
}

// copies returns the names of n copies of model m, numbered from first.
func (a *cwArgs) copies(m string, first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = a.name(m, first+i, first+i)
	}
	return out
}

// zooOr returns the zoo given by the user, or def.
func (a *cwArgs) zooOr(def []string) ([]string, error) {
	if z := a.opts["zoo"]; z != "" {
		if n, err := strconv.Atoi(z); err == nil {
			if n < 1 || n > MaxSources {
				return nil, a.usageErr("zoo=%d: want 1 to %d models", n, MaxSources)
			}
			return SyntheticZoo(n), nil
		}
		var out []string
		for _, m := range strings.Split(z, ",") {
			if m = strings.TrimSpace(m); m != "" {
				out = append(out, m)
			}
		}
		if len(out) == 0 {
			return nil, a.usageErr("zoo=%q: no model names", z)
		}
		sort.Strings(out) // Clockwork iterates its zoo alphabetically
		return out, nil
	}
	if len(a.zoo) > 0 {
		z := append([]string(nil), a.zoo...)
		sort.Strings(z)
		return z, nil
	}
	return def, nil
}

// ParseClockwork builds the named Clockwork workload from its positional
// parameters (the client's order; NAME=VALUE arguments after them are named
// parameters or options) and named params. models is the zoo given by the
// target's model list (nil = the workload's default); seed seeds every
// source (source i gets stream i, Clockwork's seed = id); duration is the
// run's length (0 = until the workload ends). Errors carry the usage line.
func ParseClockwork(name string, args []string, params map[string]string, models []string, seed int64, duration time.Duration) (*Workload, error) {
	spec := LookupClockwork(name)
	if spec == nil {
		return nil, fmt.Errorf("unknown Clockwork workload %q (see `gpuorch loadgen workloads`)", name)
	}
	w, err := parseClockwork(spec, args, params, models, seed, duration, false)
	if err != nil {
		return nil, err
	}
	if err := w.checkSize(); err != nil {
		return nil, err
	}
	return w, nil
}

// clockworkZoo is the zoo given by a target's models ("" dropped).
func clockworkZoo(models []string) []string {
	var zoo []string
	for _, m := range models {
		if m != "" {
			zoo = append(zoo, m)
		}
	}
	return zoo
}

func parseClockwork(spec *ClockworkSpec, args []string, params map[string]string, models []string, seed int64, duration time.Duration, check bool) (*Workload, error) {
	name := spec.Name
	a := &cwArgs{spec: spec, vals: map[string]string{}, opts: map[string]string{}, seed: seed, zoo: models, dur: duration, env: os.Getenv, check: check}
	var pos []string
	named := map[string]string{}
	for _, s := range args {
		if strings.HasPrefix(s, "--") {
			return nil, a.usageErr("%q after the workload: flags go before the workload name", s)
		}
		if k, v, ok := strings.Cut(s, "="); ok && k != "" && !strings.ContainsAny(k, " /:") {
			named[k] = v
			continue
		}
		if len(named) > 0 {
			return nil, a.usageErr("positional parameter %q after a NAME=VALUE argument", s)
		}
		pos = append(pos, s)
	}
	for k, v := range params {
		named[k] = v
	}
	if len(pos) > len(spec.Params) {
		return nil, a.usageErr("%s takes at most %d parameters, got %d", name, len(spec.Params), len(pos))
	}
	for i, v := range pos {
		a.vals[spec.Params[i].Name] = v
	}
	isOpt := map[string]bool{}
	for _, o := range ClockworkOptions {
		isOpt[o.Name] = true
	}
	for k, v := range named {
		norm := strings.ReplaceAll(k, "_", "-")
		found := false
		for _, p := range spec.Params {
			if p.Name == k || p.Name == norm || strings.ReplaceAll(p.Name, "-", "_") == k {
				if old, dup := a.vals[p.Name]; dup && old != v {
					return nil, a.usageErr("%s given twice (%q and %q)", p.Name, old, v)
				}
				a.vals[p.Name], found = v, true
				break
			}
		}
		if !found {
			if !isOpt[k] {
				return nil, a.usageErr("unknown parameter %q for %s", k, name)
			}
			a.opts[k] = v
		}
	}
	var missing []string
	for _, p := range spec.Params {
		v, ok := a.vals[p.Name]
		if !ok {
			if p.Default == "" {
				missing = append(missing, p.Name)
				continue
			}
			v = p.Default
			a.vals[p.Name] = v
		}
		if err := checkParam(p, v); err != nil {
			return nil, a.usageErr("%s: %v", p.Name, err)
		}
	}
	if len(missing) > 0 {
		return nil, a.usageErr("%s needs %d parameters, missing %s", name, len(spec.Params), strings.Join(missing, ", "))
	}
	a.pattern = a.opts["pattern"]
	if a.pattern == "" {
		a.pattern = "{model}-{copy}"
	}
	if !strings.Contains(a.pattern, "{copy}") && !strings.Contains(a.pattern, "{index}") {
		return nil, a.usageErr("pattern=%q must contain {copy} or {index} so that copies have distinct names", a.pattern)
	}
	w, err := spec.build(a)
	if err != nil {
		return nil, err
	}
	w.Name = name
	if w.DefaultSLO == 0 {
		w.DefaultSLO = ClockworkDefaultSLO
	}
	if spec.OpenEnded && duration <= 0 && w.MaxRequests == 0 {
		return nil, fmt.Errorf("%s never ends by itself (the original runs until killed): give a duration (--duration, or duration in the spec)", name)
	}
	return w, nil
}

func checkParam(p ClockworkParam, v string) error {
	var num float64
	switch p.Type {
	case "int":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		num = float64(n)
	case "float":
		f, err := strconv.ParseFloat(v, 64)
		if (err != nil && !errors.Is(err, strconv.ErrRange)) || math.IsNaN(f) {
			return fmt.Errorf("%q is not a number", v)
		}
		if math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a finite number", v)
		}
		num = f
	case "bool":
		switch strings.ToLower(v) {
		case "0", "1", "true", "false":
		default:
			return fmt.Errorf("%q is not a boolean (0 or 1)", v)
		}
		return nil
	case "enum":
		for _, c := range p.Choices {
			if v == c {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(p.Choices, ", "))
	default:
		if v == "" {
			return fmt.Errorf("empty")
		}
		return nil
	}
	if p.hasMin && num < p.min {
		return fmt.Errorf("%s is below the minimum %s", v, FormatNumber(p.min))
	}
	if p.max > 0 && num > p.max {
		return fmt.Errorf("%s is above the maximum %s", v, FormatNumber(p.max))
	}
	return nil
}

// LookupClockwork returns the catalogue entry of a workload, or nil.
func LookupClockwork(name string) *ClockworkSpec {
	for _, s := range clockworkCatalogue {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// ClockworkCatalogue returns the catalogue in the client's order.
func ClockworkCatalogue() []*ClockworkSpec { return clockworkCatalogue }

// Range is the parameter's accepted range ("1 to 100000"), "" when it has
// none.
func (p ClockworkParam) Range() string {
	switch {
	case p.hasMin && p.max > 0:
		return FormatNumber(p.min) + " to " + FormatNumber(p.max)
	case p.hasMin:
		return "≥ " + FormatNumber(p.min)
	}
	return ""
}

// MarshalJSON adds the range to the catalogue's JSON.
func (p ClockworkParam) MarshalJSON() ([]byte, error) {
	type plain ClockworkParam
	out := struct {
		plain
		Min *float64 `json:"min,omitempty"`
		Max *float64 `json:"max,omitempty"`
	}{plain: plain(p)}
	if p.hasMin {
		out.Min = &p.min
	}
	if p.max > 0 {
		out.Max = &p.max
	}
	return json.Marshal(out)
}

// Parameter constructors for the catalogue table: every number has a
// minimum and a maximum (the limits of limits.go).
func pInt(name, def string, min, max float64, help string) ClockworkParam {
	return ClockworkParam{Name: name, Type: "int", Default: def, Help: help, min: min, hasMin: true, max: max}
}

func pFloat(name, def string, min, max float64, help string) ClockworkParam {
	return ClockworkParam{Name: name, Type: "float", Default: def, Help: help, min: min, hasMin: true, max: max}
}

func pBool(name, def, help string) ClockworkParam {
	return ClockworkParam{Name: name, Type: "bool", Default: def, Help: help}
}

func pStr(name, def, help string) ClockworkParam {
	return ClockworkParam{Name: name, Type: "string", Default: def, Help: help}
}

func pEnum(name, def, help string, choices ...string) ClockworkParam {
	return ClockworkParam{Name: name, Type: "enum", Default: def, Help: help, Choices: choices}
}

// init makes every catalogue workload available as
// workload.arrival (and positionally on `gpuorch loadgen run`).
func init() {
	for _, s := range clockworkCatalogue {
		s := s
		RegisterWorkload(s.Name, s.Usage(), func(cfg *Config, models []string) (*Workload, error) {
			return ParseClockwork(s.Name, cfg.Workload.Args, cfg.Workload.ParamStrings(), clockworkZoo(models), cfg.Seed, cfg.Duration.D())
		})
	}
}
