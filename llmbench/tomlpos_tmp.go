package llmbench

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// Temporary: the strict TOML helpers the bench spec used in orchestrator, until it moves to internal/tomlstrict.
// decoder carries what error messages need.
type decoder struct {
	file       string
	pos        *positions
	overridden map[string]string // joined key path (no indices) → the --set argument
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

type positions struct {
	lines map[string]int // joined path → line
	order []string       // joined paths in file order
	first map[string]int // joined path without indices → line of its first occurrence
}

const pathSep = "\x1f"

func joinPath(p []string) string { return strings.Join(p, pathSep) }

// line returns the line of path; if the exact path (with array indices) is
// unknown it falls back to the first line of the same key in any element,
// then to the nearest enclosing key or table. 0 means not found.
func (ps *positions) line(path []string) int {
	if ps == nil {
		return 0
	}
	for n := len(path); n > 0; n-- {
		p := path[:n]
		if l, ok := ps.lines[joinPath(p)]; ok {
			return l
		}
		if l, ok := ps.first[joinPath(stripIndices(p))]; ok {
			return l
		}
	}
	return 0
}

func stripIndices(p []string) []string {
	out := make([]string, 0, len(p))
	for _, s := range p {
		if !isIndexSeg(s) {
			out = append(out, s)
		}
	}
	return out
}

func isIndexSeg(s string) bool {
	if len(s) < 2 || s[0] != '#' {
		return false
	}
	_, err := strconv.Atoi(s[1:])
	return err == nil
}

func indexSeg(i int) string { return "#" + strconv.Itoa(i) }

// scanPositions records the line of every key, table header and array
// element in src. It expects TOML that the parser has accepted; on anything
// else it stops early rather than fail, since positions only improve
// messages.
func scanPositions(src string) *positions {
	s := &scanner{src: src, line: 1, ps: &positions{lines: map[string]int{}}, arrays: map[string]int{}}
	s.run()
	return s.ps
}

type scanner struct {
	src    string
	i      int
	line   int
	ps     *positions
	cur    []string       // current table path
	arrays map[string]int // array-of-tables path (joined, resolved) → element count
}

func (s *scanner) record(path []string, line int) {
	s.ps.add(path, line)
}

func (ps *positions) add(path []string, line int) {
	k := joinPath(path)
	if _, ok := ps.lines[k]; !ok {
		ps.order = append(ps.order, k)
	}
	ps.lines[k] = line
	if ps.first == nil {
		ps.first = map[string]int{}
	}
	if sk := joinPath(stripIndices(path)); ps.first[sk] == 0 {
		ps.first[sk] = line
	}
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }

func (s *scanner) peek(off int) byte {
	if s.i+off < len(s.src) {
		return s.src[s.i+off]
	}
	return 0
}

func (s *scanner) advance() {
	if s.i < len(s.src) {
		if s.src[s.i] == '\n' {
			s.line++
		}
		s.i++
	}
}

// skipSpace skips blanks, and with nl also newlines and comments.
func (s *scanner) skipSpace(nl bool) {
	for !s.eof() {
		c := s.src[s.i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			s.advance()
		case nl && c == '\n':
			s.advance()
		case nl && c == '#':
			s.skipLine()
		default:
			return
		}
	}
}

func (s *scanner) skipLine() {
	for !s.eof() && s.src[s.i] != '\n' {
		s.advance()
	}
}

func (s *scanner) run() {
	for guard := 0; !s.eof() && guard <= len(s.src); guard++ {
		start := s.i
		s.skipSpace(true)
		if s.eof() {
			return
		}
		line := s.line
		if s.peek(0) == '[' {
			array := s.peek(1) == '['
			s.advance()
			if array {
				s.advance()
			}
			s.skipSpace(false)
			key, ok := s.key()
			if !ok {
				return
			}
			s.cur = s.resolve(key, array)
			s.record(s.cur, line)
			s.skipLine()
		} else {
			key, ok := s.key()
			if !ok || s.peek(0) != '=' {
				return
			}
			s.advance()
			path := append(append([]string(nil), s.cur...), key...)
			s.record(path, line)
			s.value(path)
			s.skipLine()
		}
		if s.i == start {
			return
		}
	}
}

// resolve turns a header key into a path with the current element index of
// every array of tables along it; for [[a.b]] it starts a new element.
func (s *scanner) resolve(key []string, array bool) []string {
	var out []string
	for n, seg := range key {
		out = append(out, seg)
		k := joinPath(out)
		if n == len(key)-1 && array {
			s.arrays[k]++
			out = append(out, indexSeg(s.arrays[k]-1))
			continue
		}
		if c := s.arrays[k]; c > 0 {
			out = append(out, indexSeg(c-1))
		}
	}
	return out
}

// key reads a dotted key and the blanks after it.
func (s *scanner) key() ([]string, bool) {
	var segs []string
	for {
		s.skipSpace(false)
		if s.eof() {
			return nil, false
		}
		var seg string
		switch c := s.src[s.i]; c {
		case '"':
			str, ok := s.basicString()
			if !ok {
				return nil, false
			}
			seg = str
		case '\'':
			str, ok := s.literalString()
			if !ok {
				return nil, false
			}
			seg = str
		default:
			st := s.i
			for !s.eof() && isBare(s.src[s.i]) {
				s.i++
			}
			if s.i == st {
				return nil, false
			}
			seg = s.src[st:s.i]
		}
		segs = append(segs, seg)
		s.skipSpace(false)
		if s.peek(0) != '.' {
			if s.peek(0) == ']' {
				for s.peek(0) == ']' {
					s.advance()
				}
			}
			return segs, true
		}
		s.advance()
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value skips one value, recording keys of inline tables and elements of
// arrays under path.
func (s *scanner) value(path []string) {
	s.skipSpace(false)
	if s.eof() {
		return
	}
	switch s.src[s.i] {
	case '"':
		if strings.HasPrefix(s.src[s.i:], `"""`) {
			s.multiline(`"""`, true)
		} else {
			s.basicString()
		}
	case '\'':
		if strings.HasPrefix(s.src[s.i:], `'''`) {
			s.multiline(`'''`, false)
		} else {
			s.literalString()
		}
	case '[':
		s.advance()
		for n := 0; ; n++ {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			if s.src[s.i] == ']' {
				s.advance()
				return
			}
			el := append(append([]string(nil), path...), indexSeg(n))
			s.record(el, s.line)
			before := s.i
			s.value(el)
			s.skipSpace(true)
			if s.peek(0) == ',' {
				s.advance()
			} else if s.i == before {
				return
			}
		}
	case '{':
		s.advance()
		for {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			if s.src[s.i] == '}' {
				s.advance()
				return
			}
			line := s.line
			key, ok := s.key()
			if !ok || s.peek(0) != '=' {
				return
			}
			s.advance()
			kp := append(append([]string(nil), path...), key...)
			s.record(kp, line)
			s.value(kp)
			s.skipSpace(true)
			if s.peek(0) == ',' {
				s.advance()
			}
		}
	default:
		for !s.eof() {
			switch s.src[s.i] {
			case ',', ']', '}', '#', '\n':
				return
			}
			s.advance()
		}
	}
}

func (s *scanner) multiline(delim string, escapes bool) {
	s.i += len(delim)
	for !s.eof() {
		if escapes && s.src[s.i] == '\\' {
			s.advance()
			s.advance()
			continue
		}
		if strings.HasPrefix(s.src[s.i:], delim) {
			s.i += len(delim)
			// Up to two quotes may directly precede the closing delimiter.
			for k := 0; k < 2 && s.peek(0) == delim[0]; k++ {
				s.i++
			}
			return
		}
		s.advance()
	}
}

func (s *scanner) literalString() (string, bool) {
	s.advance()
	st := s.i
	for !s.eof() && s.src[s.i] != '\'' && s.src[s.i] != '\n' {
		s.i++
	}
	if s.eof() || s.src[s.i] != '\'' {
		return "", false
	}
	out := s.src[st:s.i]
	s.i++
	return out, true
}

func (s *scanner) basicString() (string, bool) {
	s.advance()
	var b strings.Builder
	for !s.eof() {
		c := s.src[s.i]
		switch c {
		case '"':
			s.i++
			return b.String(), true
		case '\n':
			return "", false
		case '\\':
			s.i++
			if s.eof() {
				return "", false
			}
			e := s.src[s.i]
			s.i++
			switch e {
			case 'b':
				b.WriteByte('\b')
			case 't':
				b.WriteByte('\t')
			case 'n':
				b.WriteByte('\n')
			case 'f':
				b.WriteByte('\f')
			case 'r':
				b.WriteByte('\r')
			case 'e':
				b.WriteByte(0x1b)
			case 'u', 'U', 'x':
				n := map[byte]int{'u': 4, 'U': 8, 'x': 2}[e]
				if s.i+n > len(s.src) {
					return "", false
				}
				v, err := strconv.ParseUint(s.src[s.i:s.i+n], 16, 32)
				if err != nil {
					return "", false
				}
				s.i += n
				r := rune(v)
				if !utf8.ValidRune(r) {
					r = utf8.RuneError
				}
				b.WriteRune(r)
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
			s.i++
		}
	}
	return "", false
}
