package orchestrator

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/deploy"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/internal/tomlstrict"
	"github.com/gpuorch/gpuorch/loadgen"
)

// SpecError is a problem in a spec: it names the file (or the --set
// argument), the line (0 when the key is absent from the file, e.g. a
// missing required key with no table to point at) and the key. It is the
// error of every strict TOML reader (internal/tomlstrict).
type SpecError = tomlstrict.Error

// NameRE is what experiment and workload names must match: they become
// directory names, job names and metric tags.
var NameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Protocols are the target protocols loadgen speaks.
var Protocols = []string{"http", "kserve", "openai", "openai-chat"}

// Defaults for [run].
const (
	DefaultDuration = 30 // seconds
	DefaultSeed     = 1
)

// LoadSpec reads and decodes a spec file; overrides are --set KEY=VALUE
// arguments applied on top (see ParseSpec).
func LoadSpec(path string, overrides []string) (*Spec, error) {
	src, err := limitio.ReadFile(path, limitio.Config.As("spec"))
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return ParseSpec(path, src, overrides)
}

// ParseSpec decodes a spec strictly: a syntax error, an unknown key, a value
// of the wrong type or a missing required key is a *SpecError naming file,
// line and key. Overrides ("target.url=http://127.0.0.1:8000",
// "workload[1].rate=50", "run.parallel=2") set spec keys before decoding;
// VALUE is read as a TOML value, or taken as a string when it is not one or
// when the key already holds a string.
func ParseSpec(file string, src []byte, overrides []string) (*Spec, error) {
	spec := &Spec{File: file, Source: src, Overrides: overrides}
	doc, err := tomlstrict.Parse(file, src)
	if err != nil {
		var se *SpecError
		if errors.As(err, &se) {
			se.Msg = "syntax error: " + se.Msg
		}
		return nil, err
	}
	for _, o := range overrides {
		if err := doc.Set(o); err != nil {
			return nil, err
		}
	}
	d := &decoder{doc}
	raw := doc.Tree
	if ws, ok := raw["workload"].([]map[string]any); ok {
		for _, w := range ws {
			if a, ok := w["args"].([]any); ok {
				normalizeArgs(a)
			}
		}
	}
	if sw, ok := raw["sweep"]; ok {
		params, err := d.sweep(sw)
		if err != nil {
			return nil, err
		}
		spec.Sweep = params
		delete(raw, "sweep")
	}
	if err := d.decodeSpec(raw, spec); err != nil {
		return nil, err
	}
	spec.raw = raw
	spec.doc = doc
	if err := d.validate(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// decoder is the spec's document, with the spec's own rules on top.
type decoder struct{ *tomlstrict.Doc }

// keyErr is Errorf for a dotted key.
func (d *decoder) keyErr(key, format string, args ...any) error {
	return d.Errorf(strings.Split(key, "."), format, args...)
}

// specFields maps the top-level keys of a spec (besides [sweep]) to Spec fields.
func specFields() map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	t := reflect.TypeFor[Spec]()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := tomlstrict.KeyName(f); tag != "" && tag != "-" {
			out[tag] = f
		}
	}
	return out
}

// decodeSpec decodes the top-level tables one by one (arrays of tables one
// element at a time), so that every error knows which element it is in.
func (d *decoder) decodeSpec(raw map[string]any, spec *Spec) error {
	fields := specFields()
	rv := reflect.ValueOf(spec).Elem()
	// Tables can be split across the file ([target] … [target.headers]), so
	// decode them all and report the error that comes first in the file.
	var first error
	firstLine := 0
	note := func(err error) {
		var se *SpecError
		line := 1 << 30
		if errors.As(err, &se) && se.Line > 0 {
			line = se.Line
		}
		if first == nil || line < firstLine {
			first, firstLine = err, line
		}
	}
	for _, k := range d.Keys(nil, raw) {
		if err := d.decodeSection(raw, k, fields, rv); err != nil {
			note(err)
		}
	}
	return first
}

// decodeSection decodes one top-level key of the spec into its field.
func (d *decoder) decodeSection(raw map[string]any, k string, fields map[string]reflect.StructField, rv reflect.Value) error {
	f, ok := fields[k]
	if !ok {
		names := append(mapKeys(fields), "sweep")
		return d.Errorf([]string{k}, "unknown key %q%s", tomlstrict.Dotted([]string{k}), tomlstrict.Suggest(k, names))
	}
	fv := rv.FieldByIndex(f.Index)
	val := raw[k]
	if fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct {
		elems, ok := val.([]map[string]any)
		if !ok {
			return d.Errorf([]string{k}, "%q must be an array of tables: write [[%s]] before each one", k, k)
		}
		sl := reflect.MakeSlice(fv.Type(), len(elems), len(elems))
		for i, el := range elems {
			if err := d.Decode([]string{k, tomlstrict.Elem(i)}, el, sl.Index(i).Addr().Interface()); err != nil {
				return err
			}
		}
		fv.Set(sl)
		return nil
	}
	tbl, ok := val.(map[string]any)
	if !ok {
		return d.Errorf([]string{k}, "%q must be a table: write [%s] and its keys below it", k, k)
	}
	var alsoKnown []string
	if k == "run" {
		var err error
		if tbl, err = d.splitRun(tbl, rv.Addr().Interface().(*Spec)); err != nil {
			return err
		}
		alsoKnown = manifestRunKeys()
	}
	target := fv
	if fv.Kind() == reflect.Pointer {
		fv.Set(reflect.New(fv.Type().Elem()))
		target = fv.Elem()
	}
	return d.Decode([]string{k}, tbl, target.Addr().Interface(), alsoKnown...)
}

// splitRun moves the manifest settings of [run] that RunSpec does not hold
// itself (drain, max_in_flight, …) into Run.Load, checking each against
// loadgen.Config, and returns the rest of the table for RunSpec.
func (d *decoder) splitRun(tbl map[string]any, spec *Spec) (map[string]any, error) {
	own := tomlstrict.KnownKeys(reflect.TypeFor[RunSpec](), nil)
	rest := map[string]any{}
	for k, v := range tbl {
		if contains(own, k) || !contains(manifestRunKeys(), k) {
			rest[k] = v
			continue
		}
		var cfg loadgen.Config
		if _, err := tomlstrict.DecodeTree(map[string]any{k: v}, &cfg); err != nil {
			return nil, d.Errorf([]string{"run", k}, "run.%s: %v", k, err)
		}
		if k == "pacer_priority" && !contains(loadgen.PacerPriorities, cfg.PacerPriority) {
			return nil, d.Errorf([]string{"run", k}, "run.pacer_priority %q: want one of %s", cfg.PacerPriority, strings.Join(loadgen.PacerPriorities, ", "))
		}
		if spec.Run.Load == nil {
			spec.Run.Load = map[string]any{}
		}
		spec.Run.Load[k] = v
	}
	return rest, nil
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// manifestRunKeys are the top-level settings of a task manifest
// (loadgen.Config) that are not tables: seed, duration, interval, drain,
// max_in_flight, and whatever loadgen adds. They are set in [run] and can be
// swept as "KEY" or "run.KEY".
func manifestRunKeys() []string {
	var out []string
	t := reflect.TypeFor[loadgen.Config]()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := tomlstrict.KeyName(f)
		switch name {
		case "", "-", "experiment", "task", "tags", "shards", "shards_per_node": // RunSpec's own
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Struct || ft.Kind() == reflect.Map {
			continue
		}
		out = append(out, name)
	}
	return out
}

// sweepRoots are the spec tables whose keys can be swept.
var sweepRoots = map[string]bool{"target": true, "workload": true, "slo": true}

// sweep flattens the [sweep] table into parameters in file order. Keys may be
// quoted ("workload.rate" = […]) or nested (workload.rate = […]).
func (d *decoder) sweep(sw any) ([]SweepParam, error) {
	tbl, ok := sw.(map[string]any)
	if !ok {
		return nil, d.Errorf([]string{"sweep"}, "sweep must be a table: [sweep] with KEY = [values…] below it")
	}
	type ent struct {
		file []string // path in the file, under sweep
		key  []string // the spec key swept
		val  any
	}
	var ents []ent
	var walk func(file, key []string, m map[string]any)
	walk = func(file, key []string, m map[string]any) {
		for k, v := range m {
			f := append(append([]string(nil), file...), k)
			kk := append(append([]string(nil), key...), strings.Split(k, ".")...)
			if sub, ok := v.(map[string]any); ok {
				walk(f, kk, sub)
				continue
			}
			ents = append(ents, ent{file: f, key: kk, val: v})
		}
	}
	walk([]string{"sweep"}, nil, tbl)
	sort.SliceStable(ents, func(i, j int) bool {
		li, lj := d.Line(ents[i].file), d.Line(ents[j].file)
		if li != lj {
			return li < lj
		}
		return slices.Compare(ents[i].key, ents[j].key) < 0
	})
	seen := map[string]bool{}
	var out []SweepParam
	for _, e := range ents {
		key := strings.Join(e.key, ".")
		// "a,b" = [[a1, b1], [a2, b2]] sweeps keys together (zipped).
		parts := strings.Split(key, ",")
		for j, k := range parts {
			k = strings.TrimSpace(k)
			if r, ok := strings.CutPrefix(k, "run."); ok && contains(manifestRunKeys(), r) {
				k = r
			}
			switch k {
			case "shards", "run.shards", "run.shards_per_node":
				return nil, d.Errorf(e.file, "run.%s cannot be swept: every task of an experiment runs as the same number of shards (one Slurm job shape); make one experiment per shard count", strings.TrimPrefix(k, "run."))
			}
			if !sweepable(k) {
				return nil, d.Errorf(e.file, "sweep key %q: only keys of target, workload and slo, and the manifest settings of [run] (%s) can be swept", k, strings.Join(manifestRunKeys(), ", "))
			}
			if seen[k] {
				return nil, d.Errorf(e.file, "sweep key %q appears twice", k)
			}
			seen[k] = true
			parts[j] = k
		}
		key = strings.Join(parts, ",")
		vals, ok := asList(e.val)
		if !ok {
			return nil, d.Errorf(e.file, "sweep %q: want a list of values, e.g. %s = [1, 2, 4]", key, strconv.Quote(key))
		}
		if len(vals) == 0 {
			return nil, d.Errorf(e.file, "sweep %q: empty list (it would give no tasks)", key)
		}
		p := SweepParam{Key: key, Values: vals, Line: d.Line(e.file)}
		if len(parts) > 1 {
			p.Keys = parts
		}
		for i, v := range vals {
			if len(parts) > 1 {
				if tuple, ok := v.([]any); !ok || len(tuple) != len(parts) {
					return nil, d.Errorf(append(append([]string(nil), e.file...), tomlstrict.Elem(i)), "sweep %q value #%d (%s): want a list of %d values, one per key", key, i+1, formatValue(v), len(parts))
				}
			}
			for j, k := range parts {
				cv := p.component(v, j)
				if k == "workload.args" {
					if a, ok := cv.([]any); ok {
						normalizeArgs(a)
					}
				}
				// Check each value against the manifest type now, so a bad
				// key or value is reported at its [sweep] line.
				path := strings.Split(k, ".")
				var cfg loadgen.Config
				unknown, err := tomlstrict.DecodeValue(path, cv, &cfg)
				if err != nil {
					return nil, d.Errorf(append(append([]string(nil), e.file...), tomlstrict.Elem(i)), "sweep %q value #%d (%s): %v", k, i+1, formatValue(cv), err)
				}
				if len(unknown) > 0 {
					known := tomlstrict.KnownKeys(reflect.TypeFor[loadgen.Config](), path[:len(path)-1])
					return nil, d.Errorf(e.file, "sweep key %q: unknown key %q%s", k, k, tomlstrict.Suggest(path[len(path)-1], known))
				}
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func sweepable(key string) bool {
	if contains(manifestRunKeys(), key) {
		return true
	}
	root, _, ok := strings.Cut(key, ".")
	return ok && sweepRoots[root]
}

func asList(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = e
		}
		return out, true
	}
	return nil, false
}

// validate checks what types cannot: required keys, names, enumerations,
// URLs, ranges. It fills in defaults.
func (d *decoder) validate(s *Spec) error {
	if _, ok := s.raw["experiment"]; !ok {
		return &SpecError{File: d.File, Line: 1, Key: "experiment", Msg: `missing required table [experiment] (with name = "…")`}
	}
	if s.Experiment.Name == "" {
		return d.Errorf([]string{"experiment"}, `missing required key "experiment.name"`)
	}
	if !NameRE.MatchString(s.Experiment.Name) {
		return d.Errorf([]string{"experiment", "name"}, "experiment.name %s: want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 characters", clip.Quote(s.Experiment.Name))
	}
	if len(s.Workloads) == 0 && s.Training == nil {
		return &SpecError{File: d.File, Line: 1, Key: "workload", Msg: `missing required [[workload]] (e.g. [[workload]] arrival = "poisson" rate = 100) or [training]`}
	}
	names := map[string]bool{}
	arrivals := map[string]int{}
	for _, w := range s.Workloads {
		arrivals[w.Arrival]++
	}
	for i := range s.Workloads {
		w := &s.Workloads[i]
		p := []string{"workload", tomlstrict.Elem(i)}
		if w.Arrival == "" {
			return d.Errorf(p, `missing required key "workload.arrival" (e.g. "poisson", "fixed", "gamma", "closed", or a Clockwork workload such as "slo-exp-1")`)
		}
		if w.Name == "" {
			w.Name = defaultWorkloadName(w.Arrival, i, arrivals[w.Arrival])
		} else if !NameRE.MatchString(w.Name) {
			return d.Errorf(append(p, "name"), "workload.name %s: want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", clip.Quote(w.Name))
		}
		if names[w.Name] {
			return d.Errorf(append(p, "name"), "workload.name %q is used twice; give each [[workload]] its own name", w.Name)
		}
		names[w.Name] = true
	}
	if len(s.Workloads) > 0 {
		t := s.Target
		if s.Deployment != nil {
			if t.URL != "" {
				return d.Errorf([]string{"target", "url"}, "target.url: a [deployment]'s replicas publish their own addresses and gpuorch spreads the load over them; remove target.url")
			}
			t.URL = deploy.TargetURL
		}
		if err := validateTarget(t, d.keyErr); err != nil {
			return err
		}
	}
	if s.Run.Duration < 0 {
		return d.Errorf([]string{"run", "duration"}, "run.duration must not be negative")
	}
	if s.Run.Duration == 0 {
		if _, set := lookup(s.raw, "run", "duration"); set {
			return d.Errorf([]string{"run", "duration"}, `run.duration = "0s": a task needs a duration, from 1ms to %s (leave it out for the default %ds)`, loadgen.FormatDuration(loadgen.MaxDuration), DefaultDuration)
		}
		s.Run.Duration = loadgen.Duration(DefaultDuration * 1e9)
	}
	if s.Run.Interval < 0 {
		return d.Errorf([]string{"run", "interval"}, "run.interval must not be negative")
	}
	for _, l := range specLimits {
		if v := l.get(s); v < l.min || v > l.max {
			return d.Errorf(strings.Split(l.key, "."), "%s = %s: want %s", l.key, l.format(v), l.want())
		}
	}
	if s.Run.Seed == 0 {
		if _, set := lookup(s.raw, "run", "seed"); !set {
			s.Run.Seed = DefaultSeed
		}
	}
	if s.Run.Executor == "" {
		s.Run.Executor = "local"
	} else if !knownExecutor(s.Run.Executor) {
		return d.Errorf([]string{"run", "executor"}, "run.executor %q: want one of %s", s.Run.Executor, strings.Join(executorChoices(), ", "))
	}
	if s.Run.Parallel == 0 {
		s.Run.Parallel = 1
	}
	if s.Run.Shards > 1 && s.Slice != nil {
		return d.Errorf([]string{"run", "shards"}, "run.shards and [slice] together: a GPU slice is for a model server, the shards of a task are load generators; run the server in its own job")
	}
	if s.Run.Shards > 1 && s.Deployment != nil {
		return d.Errorf([]string{"run", "shards"}, "run.shards and [deployment] together: a deployment's autoscaler judges one load generator's intervals; send the load from one process, or run the replicas as a fixed deployment and shard a task that targets them")
	}
	if s.Run.ShardsPerNode > 1 && s.Run.ShardsPerNode > s.Run.Shards {
		return d.Errorf([]string{"run", "shards_per_node"}, "run.shards_per_node = %d but run.shards = %d: want at most as many shards per node as shards", s.Run.ShardsPerNode, max(s.Run.Shards, 1))
	}
	if n := s.Run.ShardNodes(); s.Run.Shards > 1 && s.Slurm.Nodes > 0 && s.Slurm.Nodes != n {
		return d.Errorf([]string{"slurm", "nodes"}, "slurm.nodes = %d but run.shards = %d at run.shards_per_node = %d take %d nodes (leave slurm.nodes out)", s.Slurm.Nodes, s.Run.Shards, max(s.Run.ShardsPerNode, 1), n)
	}
	if s.Output.InfluxDB != nil && s.Output.InfluxDB.URL == "" {
		return d.Errorf([]string{"output", "influxdb"}, `missing required key "output.influxdb.url"`)
	}
	if s.Slice != nil {
		if err := d.resolveSlice(s); err != nil {
			return err
		}
	}
	if s.Deployment != nil {
		return d.resolveDeployment(s)
	}
	return nil
}

// Bounds of the spec's own numbers (the tasks' are loadgen.Limits).
const (
	MaxParallel    = 1024
	MaxTaskTimeout = loadgen.MaxDuration + 24*time.Hour
	MaxSlurmNodes  = 100_000
	MaxSlurmCPUs   = 100_000
)

// specLimit is the range of one number of [run] or [slurm] that no task
// sees; 0 is always allowed (the default).
type specLimit struct {
	key      string
	min, max float64 // nanoseconds for durations; min applies to values other than 0
	duration bool
	zero     string
	get      func(*Spec) float64
}

func (l specLimit) format(v float64) string {
	if l.duration {
		return loadgen.FormatDuration(time.Duration(v))
	}
	return loadgen.FormatNumber(v)
}

func (l specLimit) want() string {
	return l.format(l.min) + " to " + l.format(l.max) + " (or 0: " + l.zero + ")"
}

var specLimits = []specLimit{
	{key: "run.parallel", min: 1, max: MaxParallel, zero: "1", get: func(s *Spec) float64 { return float64(s.Run.Parallel) }},
	{key: "run.task_timeout", min: float64(time.Millisecond), max: float64(MaxTaskTimeout), duration: true, zero: "none", get: func(s *Spec) float64 { return float64(s.Run.TaskTimeout) }},
	{key: "run.shards", min: 1, max: loadgen.MaxShards, zero: "one process per task", get: func(s *Spec) float64 { return float64(s.Run.Shards) }},
	{key: "run.shards_per_node", min: 1, max: loadgen.MaxShards, zero: "one shard per node", get: func(s *Spec) float64 { return float64(s.Run.ShardsPerNode) }},
	{key: "slurm.throttle", min: 1, max: MaxTasks, zero: "none", get: func(s *Spec) float64 { return float64(s.Slurm.Throttle) }},
	{key: "slurm.nodes", min: 1, max: MaxSlurmNodes, zero: "Slurm's default", get: func(s *Spec) float64 { return float64(s.Slurm.Nodes) }},
	{key: "slurm.cpus_per_task", min: 1, max: MaxSlurmCPUs, zero: "Slurm's default", get: func(s *Spec) float64 { return float64(s.Slurm.CPUsPerTask) }},
}

func init() {
	// 0 is the default, so a value below min is refused only when set.
	for i := range specLimits {
		l := specLimits[i]
		get := l.get
		specLimits[i].get = func(s *Spec) float64 {
			if v := get(s); v != 0 {
				return v
			}
			return l.min
		}
	}
}

// SpecLimitsMarkdown renders the ranges of [run] and [slurm] as the
// Markdown table docs/spec.md carries.
func SpecLimitsMarkdown() string {
	var b strings.Builder
	b.WriteString("| spec key | range | 0 or unset |\n|---|---|---|\n")
	for _, l := range specLimits {
		fmt.Fprintf(&b, "| `%s` | %s to %s | %s |\n", l.key, l.format(l.min), l.format(l.max), l.zero)
	}
	return b.String()
}

// validateTarget checks a target; errAt builds the error for a dotted key
// (a task's swept keys are blamed on their [sweep] line).
func validateTarget(t loadgen.TargetConfig, errAt func(key, format string, args ...any) error) error {
	if t.URL == "" {
		return errAt("target", `missing required key "target.url" (e.g. url = "http://127.0.0.1:8000"; override with --set target.url=…)`)
	}
	u, err := url.Parse(t.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errAt("target.url", "target.url %q: want an http:// or https:// URL with a host", t.URL)
	}
	if t.Protocol != "" && !contains(Protocols, t.Protocol) {
		return errAt("target.protocol", "target.protocol %q: want one of %s", t.Protocol, strings.Join(Protocols, ", "))
	}
	return nil
}

func knownExecutor(name string) bool {
	return contains(executorChoices(), name)
}

// executorChoices are the registered executors plus "slurm", which is always
// a valid spec value even in a build without it (NewExecutor says so).
func executorChoices() []string {
	names := ExecutorNames()
	if !contains(names, "slurm") {
		names = append(names, "slurm")
	}
	sort.Strings(names)
	return names
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func lookup(tree map[string]any, path ...string) (any, bool) {
	var cur any = tree
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[k]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

var nonName = regexp.MustCompile(`[^a-z0-9._-]+`)

func defaultWorkloadName(arrival string, i, n int) string {
	name := strings.Trim(nonName.ReplaceAllString(strings.ToLower(arrival), "-"), "-._")
	if name == "" {
		name = "w"
	}
	if len(name) > 50 {
		name = name[:50]
	}
	if n > 1 {
		name += "-" + strconv.Itoa(i)
	}
	return name
}

// normalizeArgs turns numbers and booleans in a workload's positional args
// into the strings the Clockwork client would have seen, so that
// args = ["resnet50_v2", 4, "poisson", 100] works as written.
func normalizeArgs(a []any) {
	for i, v := range a {
		switch x := v.(type) {
		case int64:
			a[i] = strconv.FormatInt(x, 10)
		case float64:
			a[i] = strconv.FormatFloat(x, 'g', -1, 64)
		case bool:
			a[i] = strconv.FormatBool(x)
		}
	}
}
