package orchestrator

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/gpuorch/gpuorch/loadgen"
)

// SpecError is a problem in a spec: it names the file, the line (0 when the
// key is absent from the file, e.g. a missing required key with no table to
// point at) and the key.
type SpecError struct {
	File string
	Line int
	Key  string // dotted spec key, e.g. "workload.rate"; "" for syntax errors
	Msg  string
}

func (e *SpecError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

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
	src, err := os.ReadFile(path)
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
	text := string(src)
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &SpecError{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: "syntax error: " + pe.Message}
		}
		return nil, &SpecError{File: file, Msg: err.Error()}
	}
	if raw == nil {
		raw = map[string]any{}
	}
	spec.pos = scanPositions(text)
	d := &decoder{file: file, pos: spec.pos, overridden: map[string]string{}}

	for _, o := range overrides {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			return nil, &SpecError{File: "--set " + o, Msg: "want KEY=VALUE"}
		}
		path, err := parseKeyPath(k)
		if err != nil {
			return nil, &SpecError{File: "--set " + o, Key: k, Msg: err.Error()}
		}
		if err := setPath(raw, path, func(old any) any { return overrideValue(v, old) }); err != nil {
			return nil, &SpecError{File: "--set " + o, Key: k, Msg: err.Error()}
		}
		d.overridden[joinPath(stripIndices(path))] = o
	}

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
	if err := d.validate(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// decoder carries what error messages need.
type decoder struct {
	file       string
	pos        *positions
	overridden map[string]string // joined key path (no indices) → the --set argument
}

// errAt builds a SpecError for a key path (segments, "#n" for elements).
func (d *decoder) errAt(path []string, format string, args ...any) error {
	key := dotted(stripIndices(path))
	if o, ok := d.overridden[joinPath(stripIndices(path))]; ok {
		return &SpecError{File: "--set " + o, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	line := d.pos.line(path)
	if line == 0 {
		line = 1
	}
	return &SpecError{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

func dotted(p []string) string {
	parts := make([]string, len(p))
	for i, s := range p {
		if s == "" || strings.ContainsAny(s, ". \"'[]=#") {
			s = strconv.Quote(s)
		}
		parts[i] = s
	}
	return strings.Join(parts, ".")
}

// specFields maps the top-level keys of a spec (besides [sweep]) to Spec fields.
func specFields() map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	t := reflect.TypeFor[Spec]()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := tomlName(f); tag != "" && tag != "-" {
			out[tag] = f
		}
	}
	return out
}

func tomlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if tag == "" {
		return f.Name
	}
	return tag
}

// decodeSpec decodes the top-level tables one by one (arrays of tables one
// element at a time), so that every error knows which element it is in.
func (d *decoder) decodeSpec(raw map[string]any, spec *Spec) error {
	fields := specFields()
	keys := d.sortedKeys(nil, raw)
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
	for _, k := range keys {
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
		return d.errAt([]string{k}, "unknown key %q%s", dotted([]string{k}), suggest(k, names))
	}
	fv := rv.FieldByIndex(f.Index)
	val := raw[k]
	if fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct {
		elems, ok := val.([]map[string]any)
		if !ok {
			return d.errAt([]string{k}, "%q must be an array of tables: write [[%s]] before each one", k, k)
		}
		sl := reflect.MakeSlice(fv.Type(), len(elems), len(elems))
		for i, el := range elems {
			if err := d.decodeTable([]string{k, indexSeg(i)}, el, sl.Index(i).Addr().Interface()); err != nil {
				return err
			}
		}
		fv.Set(sl)
		return nil
	}
	tbl, ok := val.(map[string]any)
	if !ok {
		return d.errAt([]string{k}, "%q must be a table: write [%s] and its keys below it", k, k)
	}
	if k == "run" {
		var err error
		if tbl, err = d.splitRun(tbl, rv.Addr().Interface().(*Spec)); err != nil {
			return err
		}
	}
	target := fv
	if fv.Kind() == reflect.Pointer {
		fv.Set(reflect.New(fv.Type().Elem()))
		target = fv.Elem()
	}
	return d.decodeTable([]string{k}, tbl, target.Addr().Interface())
}

// decodeTable decodes tbl strictly into out (a pointer to a struct). On a
// type error it narrows the error down to the first offending leaf in file
// order, so the message names that key and its line.
func (d *decoder) decodeTable(prefix []string, tbl map[string]any, out any) error {
	md, err := decodeTree(tbl, out)
	if err != nil {
		for _, leaf := range d.leaves(prefix, tbl) {
			fresh := reflect.New(reflect.TypeOf(out).Elem()).Interface()
			if _, lerr := decodeTree(buildTree(leaf.rel, leaf.val), fresh); lerr != nil {
				return d.errAt(leaf.abs, "%s: %s", dotted(stripIndices(leaf.abs)), cleanTOMLError(lerr))
			}
		}
		return d.errAt(prefix, "%s", cleanTOMLError(err))
	}
	if und := md.Undecoded(); len(und) > 0 {
		// Report the first unknown key in file order.
		best, bestLine := []string(nil), 0
		for _, k := range und {
			abs := append(append([]string(nil), prefix...), resolveUndecoded(tbl, k)...)
			if l := d.pos.line(abs); best == nil || (l > 0 && l < bestLine) {
				best, bestLine = abs, l
			}
		}
		known := knownKeys(reflect.TypeOf(out).Elem(), stripIndices(best[len(prefix):]))
		if len(prefix) == 1 && prefix[0] == "run" && len(best) == 2 {
			known = append(known, manifestRunKeys()...)
		}
		last := best[len(best)-1]
		return d.errAt(best, "unknown key %q%s", dotted(stripIndices(best)), suggest(last, known))
	}
	return nil
}

// splitRun moves the manifest settings of [run] that RunSpec does not hold
// itself (drain, max_in_flight, …) into Run.Load, checking each against
// loadgen.Config, and returns the rest of the table for RunSpec.
func (d *decoder) splitRun(tbl map[string]any, spec *Spec) (map[string]any, error) {
	own := knownKeys(reflect.TypeFor[RunSpec](), []string{"x"})
	rest := map[string]any{}
	for k, v := range tbl {
		if contains(own, k) || !contains(manifestRunKeys(), k) {
			rest[k] = v
			continue
		}
		var cfg loadgen.Config
		if _, err := decodeTree(map[string]any{k: v}, &cfg); err != nil {
			return nil, d.errAt([]string{"run", k}, "run.%s: %s", k, cleanTOMLError(err))
		}
		if k == "pacer_priority" && !contains(loadgen.PacerPriorities, cfg.PacerPriority) {
			return nil, d.errAt([]string{"run", k}, "run.pacer_priority %q: want one of %s", cfg.PacerPriority, strings.Join(loadgen.PacerPriorities, ", "))
		}
		if spec.Run.Load == nil {
			spec.Run.Load = map[string]any{}
		}
		spec.Run.Load[k] = v
	}
	return rest, nil
}

// resolveUndecoded maps an undecoded key (no element indices) back onto the
// tree, choosing the first element of any array that holds the key.
func resolveUndecoded(tree map[string]any, key toml.Key) []string {
	var out []string
	var cur any = tree
	for _, seg := range key {
		switch c := cur.(type) {
		case map[string]any:
			out = append(out, seg)
			cur = c[seg]
		case []map[string]any:
			found := false
			for i, el := range c {
				if v, ok := el[seg]; ok {
					out = append(out, indexSeg(i), seg)
					cur, found = v, true
					break
				}
			}
			if !found {
				out = append(out, seg)
				cur = nil
			}
		default:
			out = append(out, seg)
			cur = nil
		}
	}
	return out
}

// knownKeys lists the TOML keys of the struct reached by path from t.
func knownKeys(t reflect.Type, path []string) []string {
	for len(path) > 1 {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := fieldByTOML(t, path[0])
		if !ok {
			return nil
		}
		t = f.Type
		path = path[1:]
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Tag.Get("toml") == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, knownKeys(f.Type, []string{"x"})...) // flattened, as the decoder does
			continue
		}
		if n := tomlName(f); n != "" && n != "-" {
			out = append(out, n)
		}
	}
	return out
}

func fieldByTOML(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if tomlName(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// decodeTree decodes a generic tree into out by re-encoding it, which gives
// BurntSushi/toml's own type rules and MetaData.Undecoded for free.
func decodeTree(tree map[string]any, out any) (toml.MetaData, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(tree); err != nil {
		return toml.MetaData{}, err
	}
	return toml.Decode(buf.String(), out)
}

var tomlErrPrefix = regexp.MustCompile(`^toml: (line \d+ )?(\(last key "[^"]*"\): )?`)

// cleanTOMLError drops BurntSushi's position prefix, which refers to the
// re-encoded document rather than the user's file.
func cleanTOMLError(err error) string {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe.Message
	}
	return tomlErrPrefix.ReplaceAllString(err.Error(), "")
}

type leaf struct {
	rel []string // path inside the table
	abs []string // path from the spec root
	val any
}

// leaves lists the scalar and array values under tbl in file order.
func (d *decoder) leaves(prefix []string, tbl map[string]any) []leaf {
	var out []leaf
	var walk func(rel []string, m map[string]any)
	walk = func(rel []string, m map[string]any) {
		for k, v := range m {
			r := append(append([]string(nil), rel...), k)
			if sub, ok := v.(map[string]any); ok {
				walk(r, sub)
				continue
			}
			out = append(out, leaf{rel: r, abs: append(append([]string(nil), prefix...), r...), val: v})
		}
	}
	walk(nil, tbl)
	sort.SliceStable(out, func(i, j int) bool {
		li, lj := d.pos.line(out[i].abs), d.pos.line(out[j].abs)
		if li != lj {
			return li < lj
		}
		return joinPath(out[i].rel) < joinPath(out[j].rel)
	})
	return out
}

func buildTree(path []string, v any) map[string]any {
	root := map[string]any{}
	m := root
	for _, k := range path[:len(path)-1] {
		n := map[string]any{}
		m[k] = n
		m = n
	}
	m[path[len(path)-1]] = v
	return root
}

// sortedKeys returns m's keys in file order (then by name).
func (d *decoder) sortedKeys(prefix []string, m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.SliceStable(keys, func(i, j int) bool {
		li := d.pos.line(append(append([]string(nil), prefix...), keys[i]))
		lj := d.pos.line(append(append([]string(nil), prefix...), keys[j]))
		if li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	return keys
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// suggest returns ` (did you mean "x"?)` for the closest known name, if close.
func suggest(got string, known []string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		if dd := editDistance(strings.ToLower(got), k); dd < bestD {
			best, bestD = k, dd
		}
	}
	if best != "" && bestD <= max(2, len(got)/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// parseKeyPath reads "a.b", "workload[1].rate" into segments ("#1" for
// element 1). Segments are bare keys; a quoted segment may be "…".
func parseKeyPath(k string) ([]string, error) {
	k = strings.TrimSpace(k)
	if k == "" {
		return nil, errors.New("empty key")
	}
	var out []string
	for len(k) > 0 {
		var seg string
		if k[0] == '"' {
			end := strings.IndexByte(k[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote in key")
			}
			seg, k = k[1:1+end], k[2+end:]
		} else {
			n := 0
			for n < len(k) && isBare(k[n]) {
				n++
			}
			if n == 0 {
				return nil, fmt.Errorf("bad key character %q", k[:1])
			}
			seg, k = k[:n], k[n:]
		}
		out = append(out, seg)
		for strings.HasPrefix(k, "[") {
			end := strings.IndexByte(k, ']')
			if end < 0 {
				return nil, errors.New("unterminated [ in key")
			}
			i, err := strconv.Atoi(k[1:end])
			if err != nil || i < 0 {
				return nil, fmt.Errorf("bad element index %q", k[1:end])
			}
			out = append(out, indexSeg(i))
			k = k[end+1:]
		}
		if k == "" {
			break
		}
		if k[0] != '.' {
			return nil, fmt.Errorf("bad key character %q", k[:1])
		}
		k = k[1:]
		if k == "" {
			return nil, errors.New("key ends with a dot")
		}
	}
	return out, nil
}

// setPath sets path in tree to val(old). A path through an array of tables
// without an element index sets the key in every element.
func setPath(tree map[string]any, path []string, val func(old any) any) error {
	if len(path) == 0 {
		return errors.New("empty key")
	}
	if isIndexSeg(path[0]) {
		return errors.New("element index without a key")
	}
	k := path[0]
	rest := path[1:]
	if len(rest) == 0 {
		tree[k] = val(tree[k])
		return nil
	}
	switch c := tree[k].(type) {
	case nil:
		if isIndexSeg(rest[0]) {
			return fmt.Errorf("%q has no elements", k)
		}
		n := map[string]any{}
		tree[k] = n
		return setPath(n, rest, val)
	case map[string]any:
		if isIndexSeg(rest[0]) {
			return fmt.Errorf("%q is a table, not an array", k)
		}
		return setPath(c, rest, val)
	case []map[string]any:
		if isIndexSeg(rest[0]) {
			i, _ := strconv.Atoi(rest[0][1:])
			if i >= len(c) {
				return fmt.Errorf("%q has %d elements; index %d is out of range", k, len(c), i)
			}
			if len(rest) == 1 {
				return errors.New("cannot replace a whole element")
			}
			return setPath(c[i], rest[1:], val)
		}
		if len(c) == 0 {
			return fmt.Errorf("%q has no elements", k)
		}
		for _, el := range c {
			if err := setPath(el, rest, val); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("%q is a value, not a table", k)
	}
}

// overrideValue reads a --set value: as TOML when it parses as one and the
// key does not already hold a string, else as a plain string.
func overrideValue(v string, old any) any {
	if _, isStr := old.(string); isStr {
		return v
	}
	var m map[string]any
	if _, err := toml.Decode("v = "+v, &m); err == nil {
		return m["v"]
	}
	return v
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
		name := tomlName(f)
		switch name {
		case "", "-", "experiment", "task", "tags":
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
		return nil, d.errAt([]string{"sweep"}, "sweep must be a table: [sweep] with KEY = [values…] below it")
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
		li, lj := d.pos.line(ents[i].file), d.pos.line(ents[j].file)
		if li != lj {
			return li < lj
		}
		return joinPath(ents[i].key) < joinPath(ents[j].key)
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
			if !sweepable(k) {
				return nil, d.errAt(e.file, "sweep key %q: only keys of target, workload and slo, and the manifest settings of [run] (%s) can be swept", k, strings.Join(manifestRunKeys(), ", "))
			}
			if seen[k] {
				return nil, d.errAt(e.file, "sweep key %q appears twice", k)
			}
			seen[k] = true
			parts[j] = k
		}
		key = strings.Join(parts, ",")
		vals, ok := asList(e.val)
		if !ok {
			return nil, d.errAt(e.file, "sweep %q: want a list of values, e.g. %s = [1, 2, 4]", key, strconv.Quote(key))
		}
		if len(vals) == 0 {
			return nil, d.errAt(e.file, "sweep %q: empty list (it would give no tasks)", key)
		}
		p := SweepParam{Key: key, Values: vals, Line: d.pos.line(e.file)}
		if len(parts) > 1 {
			p.Keys = parts
		}
		for i, v := range vals {
			if len(parts) > 1 {
				if tuple, ok := v.([]any); !ok || len(tuple) != len(parts) {
					return nil, d.errAt(append(append([]string(nil), e.file...), indexSeg(i)), "sweep %q value #%d (%s): want a list of %d values, one per key", key, i+1, formatValue(v), len(parts))
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
				md, err := decodeTree(buildTree(path, cv), &cfg)
				if err != nil {
					return nil, d.errAt(append(append([]string(nil), e.file...), indexSeg(i)), "sweep %q value #%d (%s): %s", k, i+1, formatValue(cv), cleanTOMLError(err))
				}
				if und := md.Undecoded(); len(und) > 0 {
					known := knownKeys(reflect.TypeFor[loadgen.Config](), path)
					return nil, d.errAt(e.file, "sweep key %q: unknown key %q%s", k, k, suggest(path[len(path)-1], known))
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
		return &SpecError{File: d.file, Line: 1, Key: "experiment", Msg: `missing required table [experiment] (with name = "…")`}
	}
	if s.Experiment.Name == "" {
		return d.errAt([]string{"experiment"}, `missing required key "experiment.name"`)
	}
	if !NameRE.MatchString(s.Experiment.Name) {
		return d.errAt([]string{"experiment", "name"}, "experiment.name %q: want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 characters", s.Experiment.Name)
	}
	if len(s.Workloads) == 0 && s.Training == nil {
		return &SpecError{File: d.file, Line: 1, Key: "workload", Msg: `missing required [[workload]] (e.g. [[workload]] arrival = "poisson" rate = 100) or [training]`}
	}
	names := map[string]bool{}
	arrivals := map[string]int{}
	for _, w := range s.Workloads {
		arrivals[w.Arrival]++
	}
	for i := range s.Workloads {
		w := &s.Workloads[i]
		p := []string{"workload", indexSeg(i)}
		if w.Arrival == "" {
			return d.errAt(p, `missing required key "workload.arrival" (e.g. "poisson", "fixed", "gamma", "closed", or a Clockwork workload such as "slo-exp-1")`)
		}
		if w.Name == "" {
			w.Name = defaultWorkloadName(w.Arrival, i, arrivals[w.Arrival])
		} else if !NameRE.MatchString(w.Name) {
			return d.errAt(append(p, "name"), "workload.name %q: want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", w.Name)
		}
		if names[w.Name] {
			return d.errAt(append(p, "name"), "workload.name %q is used twice; give each [[workload]] its own name", w.Name)
		}
		names[w.Name] = true
	}
	if len(s.Workloads) > 0 {
		if err := d.validateTarget(s.Target, nil); err != nil {
			return err
		}
	}
	if s.Run.Duration < 0 {
		return d.errAt([]string{"run", "duration"}, "run.duration must not be negative")
	}
	if s.Run.Duration == 0 {
		s.Run.Duration = loadgen.Duration(DefaultDuration * 1e9)
	}
	if s.Run.Interval < 0 {
		return d.errAt([]string{"run", "interval"}, "run.interval must not be negative")
	}
	if s.Run.Seed == 0 {
		if _, set := lookup(s.raw, "run", "seed"); !set {
			s.Run.Seed = DefaultSeed
		}
	}
	if s.Run.Executor == "" {
		s.Run.Executor = "local"
	} else if !knownExecutor(s.Run.Executor) {
		return d.errAt([]string{"run", "executor"}, "run.executor %q: want one of %s", s.Run.Executor, strings.Join(executorChoices(), ", "))
	}
	if s.Run.Parallel < 0 {
		return d.errAt([]string{"run", "parallel"}, "run.parallel must be at least 1")
	}
	if s.Run.Parallel == 0 {
		s.Run.Parallel = 1
	}
	if s.Slurm.Throttle < 0 {
		return d.errAt([]string{"slurm", "throttle"}, "slurm.throttle must not be negative")
	}
	if s.Output.InfluxDB != nil && s.Output.InfluxDB.URL == "" {
		return d.errAt([]string{"output", "influxdb"}, `missing required key "output.influxdb.url"`)
	}
	if s.Slice != nil {
		return d.resolveSlice(s)
	}
	return nil
}

// validateTarget checks a target; at maps a key to the path whose line an
// error should name (a task's swept keys map to their [sweep] line).
func (d *decoder) validateTarget(t loadgen.TargetConfig, at func(key string) []string) error {
	if at == nil {
		at = func(key string) []string { return strings.Split(key, ".") }
	}
	if t.URL == "" {
		return d.errAt(at("target"), `missing required key "target.url" (e.g. url = "http://127.0.0.1:8000"; override with --set target.url=…)`)
	}
	u, err := url.Parse(t.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return d.errAt(at("target.url"), "target.url %q: want an http:// or https:// URL with a host", t.URL)
	}
	if t.Protocol != "" && !contains(Protocols, t.Protocol) {
		return d.errAt(at("target.protocol"), "target.protocol %q: want one of %s", t.Protocol, strings.Join(Protocols, ", "))
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
