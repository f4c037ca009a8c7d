// Package tomlstrict is the one strict TOML decoder of gpuorch: every file
// gpuorch reads (experiment spec, bench spec, pools, sim-server config,
// InfluxDB config) goes through it, so that every mistake in one reads the
// same way. An unknown key, a value of the wrong type and a bad value (a
// type's UnmarshalText refusing it, e.g. a bad duration) are each an *Error
// naming the file, the line and the dotted key; the first one in file order
// is reported. The keys a table knows come from the struct tags of the type
// it decodes into, and a near miss gets a suggestion ("did you mean ...").
//
// Decode covers a whole file. Readers with more structure (the experiment
// spec's [sweep] and [run], --set overrides) use the parts: Parse gives a
// Doc with the document's tree, Doc.Set applies an override, Doc.Decode
// decodes one table of the tree, Doc.Line finds the line of a key path and
// Doc.Errorf builds an error for one.
//
// Decoding is BurntSushi/toml's, whose messages the tests pin. Positions
// come from go-toml's parser (see lines.go).
package tomlstrict

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/gpuorch/gpuorch/internal/clip"
)

// Doc is a parsed TOML document.
type Doc struct {
	// File names the input in messages ("" for input read from bytes).
	File string
	// Tree is the document as BurntSushi/toml decodes it into a
	// map[string]any (arrays of tables are []map[string]any), with the
	// overrides applied. Callers may take tables out of it or change it.
	Tree map[string]any

	lines *lines
	set   map[string]string // joined path without Elem segments → the --set argument
}

// Parse parses src. A syntax error is an *Error with its line and the last
// key read; its Msg is the parser's message and its Err the toml.ParseError.
func Parse(file string, src []byte) (*Doc, error) {
	var tree map[string]any
	if _, err := toml.Decode(string(src), &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message, Err: err}
		}
		return nil, &Error{File: file, Msg: err.Error(), Err: err}
	}
	if tree == nil {
		tree = map[string]any{}
	}
	return &Doc{File: file, Tree: tree, lines: index(src), set: map[string]string{}}, nil
}

// Decode decodes src strictly into out, a pointer to a struct.
func Decode(file string, src []byte, out any) error {
	d, err := Parse(file, src)
	if err != nil {
		return err
	}
	return d.Decode(nil, d.Tree, out)
}

// Set applies a --set KEY=VALUE argument: KEY as ParseKey reads it; VALUE
// as a TOML value, or as a string when it is not one or when the key
// already holds a string. A key set this way is blamed on the argument in
// later errors.
func (d *Doc) Set(arg string) error {
	k, v, ok := strings.Cut(arg, "=")
	if !ok {
		return &Error{File: "--set " + clip.String(arg), Msg: "want KEY=VALUE"}
	}
	path, err := ParseKey(k)
	if err == nil {
		err = SetPath(d.Tree, path, func(old any) any { return overrideValue(v, old) })
	}
	if err != nil {
		return &Error{File: "--set " + clip.String(arg), Key: k, Msg: err.Error()}
	}
	if d.set == nil {
		d.set = map[string]string{}
	}
	d.set[join(StripElems(path))] = arg
	return nil
}

// Line returns the line that defines path, or, when the path is not in the
// file as such, the line of the same key in another element of its array,
// else of the nearest enclosing key or table; 0 when there is none (and on
// a nil Doc, e.g. for a spec that came from JSON).
func (d *Doc) Line(path []string) int {
	if d == nil {
		return 0
	}
	return d.lines.line(path)
}

// Errorf returns an *Error about path: at the --set argument that set it, or
// at its line in the file (line 1 when it has none, e.g. a missing key in
// a missing table).
func (d *Doc) Errorf(path []string, format string, args ...any) error {
	key := Dotted(StripElems(path))
	msg := fmt.Sprintf(format, args...)
	if o, ok := d.set[join(StripElems(path))]; ok {
		return &Error{File: "--set " + clip.String(o), Key: key, Msg: msg}
	}
	return &Error{File: d.File, Line: max(d.Line(path), 1), Key: key, Msg: msg}
}

// Keys returns the keys of m, the table at path, in file order (then by
// name).
func (d *Doc) Keys(path []string, m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	line := func(k string) int { return d.Line(append(append([]string(nil), path...), k)) }
	sort.SliceStable(keys, func(i, j int) bool {
		if li, lj := line(keys[i]), line(keys[j]); li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	return keys
}

// Decode decodes tbl, the table at path (nil for the root), strictly into
// out, a pointer to a struct. The first problem in file order is returned:
// an unknown key, with a suggestion from out's struct tags (and alsoKnown,
// names the caller handles at the top of tbl itself), or a value out cannot
// take, as "KEY: MESSAGE".
func (d *Doc) Decode(path []string, tbl map[string]any, out any, alsoKnown ...string) error {
	unknown, err := DecodeTree(tbl, out)
	if err == nil && len(unknown) == 0 {
		return nil
	}
	// Decode each value on its own, in file order, to find the first one
	// at fault: BurntSushi's errors carry no usable position (the tree was
	// re-encoded) and its unknown keys none at all.
	typ := reflect.TypeOf(out).Elem()
	for _, lf := range d.leaves(path, tbl) {
		probe := reflect.New(typ).Interface()
		unk, perr := DecodeTree(buildTree(lf.rel, lf.val), probe)
		if len(unk) > 0 {
			rel := lf.rel[:prefixLen(lf.rel, len(shortest(unk)))]
			abs := append(append([]string(nil), path...), rel...)
			keys := StripElems(rel)
			known := KnownKeys(typ, keys[:len(keys)-1])
			if len(keys) == 1 {
				known = append(known, alsoKnown...)
			}
			return d.Errorf(abs, "unknown key %s%s", clip.Quote(Dotted(StripElems(abs))), Suggest(keys[len(keys)-1], known))
		}
		if perr != nil {
			return d.Errorf(lf.abs, "%s: %v", Dotted(StripElems(lf.abs)), perr)
		}
	}
	if err != nil {
		return d.Errorf(path, "%v", err)
	}
	abs := append(append([]string(nil), path...), unknown[0]...)
	return d.Errorf(abs, "unknown key %s", clip.Quote(Dotted(abs)))
}

// DecodeTree decodes a tree such as Doc.Tree holds into out (a pointer) with
// BurntSushi/toml's rules, by encoding it and decoding the result. It
// returns the keys out has no field for, in BurntSushi's order and without
// element indices, and a decoding error without a position (a position
// would be in the re-encoded text, not the user's file).
func DecodeTree(tree map[string]any, out any) (unknown [][]string, err error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(tree); err != nil {
		return nil, errors.New(cleanError(err))
	}
	md, err := toml.Decode(buf.String(), out)
	if err != nil {
		return nil, errors.New(cleanError(err))
	}
	for _, k := range md.Undecoded() {
		unknown = append(unknown, []string(k))
	}
	return unknown, nil
}

// DecodeValue is DecodeTree for a tree that holds only v, at path (keys
// only, no Elem segments): e.g. whether a swept value fits its key.
func DecodeValue(path []string, v any, out any) (unknown [][]string, err error) {
	return DecodeTree(buildTree(path, v), out)
}

var positionPrefix = regexp.MustCompile(`^toml: (line \d+ )?(\(last key "[^"]*"\): )?`)

func cleanError(err error) string {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe.Message
	}
	return positionPrefix.ReplaceAllString(err.Error(), "")
}

// leaf is a value of a table, or an empty table, with its path.
type leaf struct {
	rel []string // path inside the table decoded
	abs []string // path from the document root
	val any
}

// leaves lists the values under tbl (descending into tables and arrays of
// tables) in file order.
func (d *Doc) leaves(path []string, tbl map[string]any) []leaf {
	var out []leaf
	var walk func(rel []string, v any)
	walk = func(rel []string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) > 0 || len(rel) == 0 {
				for k, sub := range x {
					walk(append(append([]string(nil), rel...), k), sub)
				}
				return
			}
		case []map[string]any:
			for i, el := range x {
				walk(append(append([]string(nil), rel...), Elem(i)), el)
			}
			if len(x) > 0 {
				return
			}
		}
		out = append(out, leaf{rel: rel, abs: append(append([]string(nil), path...), rel...), val: v})
	}
	walk(nil, tbl)
	sort.SliceStable(out, func(i, j int) bool {
		if li, lj := d.Line(out[i].abs), d.Line(out[j].abs); li != lj {
			return li < lj
		}
		return join(out[i].rel) < join(out[j].rel)
	})
	return out
}

// buildTree returns a tree holding only v at path (an element segment makes
// a one-element array).
func buildTree(path []string, v any) map[string]any {
	root := map[string]any{}
	m := root
	for i := 0; i < len(path); i++ {
		k := path[i]
		if i+1 < len(path) {
			if _, ok := IsElem(path[i+1]); ok {
				if i+2 == len(path) {
					if el, ok := v.(map[string]any); ok {
						m[k] = []map[string]any{el}
					} else {
						m[k] = []any{v}
					}
					return root
				}
				n := map[string]any{}
				m[k] = []map[string]any{n}
				m = n
				i++
				continue
			}
		}
		if i == len(path)-1 {
			m[k] = v
			return root
		}
		n := map[string]any{}
		m[k] = n
		m = n
	}
	return root
}

func shortest(keys [][]string) []string {
	best := keys[0]
	for _, k := range keys[1:] {
		if len(k) < len(best) {
			best = k
		}
	}
	return best
}

// prefixLen is the length of the prefix of path that holds n key segments
// (Elem segments between them included).
func prefixLen(path []string, n int) int {
	for i, s := range path {
		if _, ok := IsElem(s); !ok {
			n--
			if n == 0 {
				return i + 1
			}
		}
	}
	return len(path)
}
