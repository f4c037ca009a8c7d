package results

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AppendLine appends p in InfluxDB line protocol (nanosecond precision,
// tags sorted by key, fields sorted by key) followed by '\n'.
func AppendLine(b []byte, p Point) ([]byte, error) {
	if p.Measurement == "" {
		return b, fmt.Errorf("point has no measurement")
	}
	if p.Measurement[0] == '#' {
		// A line starting with '#' is a comment to every reader.
		return b, fmt.Errorf("measurement %q starts with '#'", p.Measurement)
	}
	if len(p.Fields) == 0 {
		return b, fmt.Errorf("point %q has no fields", p.Measurement)
	}
	b = appendElem(b, p.Measurement, ", ")
	for _, k := range sortedKeys(p.Tags) {
		v := p.Tags[k]
		if k == "" || v == "" { // line protocol cannot carry empty tag keys or values
			continue
		}
		b = append(b, ',')
		b = appendElem(b, k, ",= ")
		b = append(b, '=')
		b = appendElem(b, v, ",= ")
	}
	sep := byte(' ')
	for _, k := range sortedKeys(p.Fields) {
		if k == "" {
			return b, fmt.Errorf("point %q has a field with an empty key", p.Measurement)
		}
		b = append(b, sep)
		sep = ','
		b = appendElem(b, k, ",= ")
		b = append(b, '=')
		var err error
		if b, err = appendFieldValue(b, p.Fields[k]); err != nil {
			return b, fmt.Errorf("field %q of %q: %w", k, p.Measurement, err)
		}
	}
	if !p.Time.IsZero() {
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Time.UnixNano(), 10)
	}
	return append(b, '\n'), nil
}

func appendFieldValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return b, fmt.Errorf("non-finite float %v", x)
		}
		return strconv.AppendFloat(b, x, 'g', -1, 64), nil
	case float32:
		return appendFieldValue(b, float64(x))
	case int:
		return append(strconv.AppendInt(b, int64(x), 10), 'i'), nil
	case int64:
		return append(strconv.AppendInt(b, x, 10), 'i'), nil
	case uint64:
		return append(strconv.AppendUint(b, x, 10), 'u'), nil
	case time.Duration:
		return append(strconv.AppendInt(b, int64(x), 10), 'i'), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case string:
		b = append(b, '"')
		b = appendEscaped(b, x, `"\`)
		return append(b, '"'), nil
	default:
		return b, fmt.Errorf("unsupported field type %T", v)
	}
}

// appendEscaped backslash-escapes the characters in special; newlines, which
// line protocol cannot carry in any element, become spaces.
func appendEscaped(b []byte, s, special string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\n' || c == '\r' {
			b = append(b, ' ')
			continue
		}
		if strings.IndexByte(special, c) >= 0 {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return b
}

// appendElem escapes a measurement, tag key, tag value or field key: the
// characters in special get a backslash. A literal backslash is kept as is,
// except where a reader would take it for an escape — before a special
// character, before another backslash, or at the end — where it is doubled.
// (InfluxDB's own escaping cannot represent those cases at all.)
func appendElem(b []byte, s, special string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\n' || c == '\r' {
			c = ' '
		}
		if c == '\\' {
			next := byte(0)
			if i+1 < len(s) {
				next = s[i+1]
				if next == '\n' || next == '\r' {
					next = ' '
				}
			}
			if i+1 == len(s) || next == '\\' || strings.IndexByte(special, next) >= 0 {
				b = append(b, '\\')
			}
		} else if strings.IndexByte(special, c) >= 0 {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ParseLine parses one line of line protocol as AppendLine writes it — the
// exact inverse of AppendLine — and also accepts what other writers commonly
// produce (no timestamp, boolean spellings t/T/True/TRUE, a trailing "\r").
// Integers come back as int64, unsigned as uint64, floats as float64; the
// time is UTC, or zero when the line has no timestamp. Comment lines ('#')
// and blank lines are errors here; line readers skip them first.
func ParseLine(line []byte) (Point, error) {
	line = trimEOL(line)
	p, i, err := parseHead(line)
	if err != nil {
		return p, err
	}
	return p, parseBody(line, i, &p)
}

// parseHead parses the measurement and tags of a line (without its end of
// line) and returns the index of the space before the fields. Readers that
// filter on tags call it first and parse the fields only of lines they keep.
func parseHead(line []byte) (Point, int, error) {
	var p Point
	if len(line) == 0 {
		return p, 0, fmt.Errorf("empty line")
	}
	if line[0] == '#' {
		return p, 0, fmt.Errorf("comment line")
	}
	if i := lineBreak(line); i >= 0 {
		return p, 0, fmt.Errorf("line break at byte %d inside a line", i)
	}
	// Measurement: up to an unescaped ',' or ' '.
	meas, i := scanElem(line, 0, ", ", ", ")
	if meas == "" {
		return p, 0, fmt.Errorf("missing measurement")
	}
	p.Measurement = meas
	if i >= len(line) {
		return p, 0, fmt.Errorf("no fields")
	}
	// Tags.
	for line[i] == ',' {
		var k, v string
		if k, i = scanElem(line, i+1, ",= ", ",= "); i >= len(line) || line[i] != '=' {
			return p, 0, fmt.Errorf("tag at byte %d: want key=value", i)
		}
		v, i = scanElem(line, i+1, ",= ", ", ")
		if k == "" || v == "" {
			return p, 0, fmt.Errorf("tag at byte %d: empty key or value", i)
		}
		if p.Tags == nil {
			p.Tags = make(map[string]string, 10)
		}
		if _, dup := p.Tags[k]; dup {
			return p, 0, fmt.Errorf("duplicate tag %q", k)
		}
		p.Tags[k] = v
		if i >= len(line) {
			return p, 0, fmt.Errorf("no fields")
		}
	}
	if line[i] != ' ' {
		return p, 0, fmt.Errorf("byte %d: want ' ' before fields", i)
	}
	return p, i, nil
}

// lineBreak is the index of the first '\r' or '\n' in line, or -1: two
// vectorised searches, several times faster than bytes.IndexAny on a long
// line (profiled with BenchmarkCheckLine).
func lineBreak(line []byte) int {
	i, j := bytes.IndexByte(line, '\r'), bytes.IndexByte(line, '\n')
	if i < 0 || (j >= 0 && j < i) {
		return j
	}
	return i
}

// parseBody parses the fields and timestamp of a line into p, starting at
// the space that parseHead stopped at.
func parseBody(line []byte, i int, p *Point) error {
	// Sized for the common case (every '=' a field) so the map never grows.
	p.Fields = make(map[string]any, bytes.Count(line[i:], []byte{'='}))
	for {
		var k string
		var err error
		if k, i = scanElem(line, i+1, ",= ", ",= "); i >= len(line) || line[i] != '=' {
			return fmt.Errorf("field at byte %d: want key=value", i)
		}
		if k == "" {
			return fmt.Errorf("field at byte %d: empty key", i)
		}
		var v any
		if v, i, err = scanFieldValue(line, i+1); err != nil {
			return fmt.Errorf("field %q: %w", k, err)
		}
		if _, dup := p.Fields[k]; dup {
			return fmt.Errorf("duplicate field %q", k)
		}
		p.Fields[k] = v
		if i >= len(line) || line[i] == ' ' {
			break
		}
		// scanFieldValue stops only at ',' or ' ' or the end.
	}
	if i < len(line) {
		ts := line[i+1:]
		n, err := strconv.ParseInt(string(ts), 10, 64)
		if err != nil {
			return fmt.Errorf("timestamp %q: want integer nanoseconds", ts)
		}
		p.Time = time.Unix(0, n).UTC()
	}
	return nil
}

func trimEOL(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

// scanElem reads an escaped element from line[i:] up to the first unescaped
// byte in stop (or the end), returning it unescaped and the index where it
// stopped. A backslash escapes the bytes in esc and itself; before anything
// else it is literal.
func scanElem(line []byte, i int, esc, stop string) (string, int) {
	start := i
	plain := true
	for ; i < len(line); i++ {
		c := line[i]
		if c == '\\' && i+1 < len(line) && (line[i+1] == '\\' || strings.IndexByte(esc, line[i+1]) >= 0) {
			plain = false
			i++
			continue
		}
		if strings.IndexByte(stop, c) >= 0 {
			break
		}
	}
	if plain {
		return string(line[start:i]), i
	}
	out := make([]byte, 0, i-start)
	for j := start; j < i; j++ {
		c := line[j]
		if c == '\\' && j+1 < i && (line[j+1] == '\\' || strings.IndexByte(esc, line[j+1]) >= 0) {
			j++
			c = line[j]
		}
		out = append(out, c)
	}
	return string(out), i
}

// scanFieldValue reads a field value at line[i:] and returns it with the
// index of the byte after it (',' or ' ' or the end).
func scanFieldValue(line []byte, i int) (any, int, error) {
	if i >= len(line) {
		return nil, i, fmt.Errorf("missing value")
	}
	if line[i] == '"' {
		var out []byte
		for j := i + 1; j < len(line); j++ {
			c := line[j]
			if c == '\\' && j+1 < len(line) && (line[j+1] == '"' || line[j+1] == '\\') {
				j++
				out = append(out, line[j])
				continue
			}
			if c == '"' {
				j++
				if j < len(line) && line[j] != ',' && line[j] != ' ' {
					return nil, j, fmt.Errorf("unexpected %q after string at byte %d", line[j], j)
				}
				return string(out), j, nil
			}
			out = append(out, c)
		}
		return nil, len(line), fmt.Errorf("unterminated string")
	}
	j := i
	for j < len(line) && line[j] != ',' && line[j] != ' ' {
		j++
	}
	if j == i {
		return nil, j, fmt.Errorf("missing value")
	}
	s := string(line[i:j])
	switch last := s[len(s)-1]; {
	case s == "t" || s == "T" || s == "true" || s == "True" || s == "TRUE":
		return true, j, nil
	case s == "f" || s == "F" || s == "false" || s == "False" || s == "FALSE":
		return false, j, nil
	case last == 'i':
		v, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
		if err != nil {
			return nil, j, fmt.Errorf("bad integer %q", s)
		}
		return v, j, nil
	case last == 'u':
		v, err := strconv.ParseUint(s[:len(s)-1], 10, 64)
		if err != nil {
			return nil, j, fmt.Errorf("bad unsigned integer %q", s)
		}
		return v, j, nil
	default:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || !isFloatSyntax(s) {
			return nil, j, fmt.Errorf("bad value %q", s)
		}
		return v, j, nil
	}
}

// isFloatSyntax rejects what ParseFloat accepts but line protocol does not:
// "inf", "nan", hex floats and '_' separators.
func isFloatSyntax(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9', c == '.', c == '-', c == '+', c == 'e', c == 'E':
		default:
			return false
		}
	}
	return true
}

// checkLine reports whether line (without its end of line) is line
// protocol as ParseLine reads it, without building the point: what a reader
// does with lines it skips, so that garbage is noticed whatever the query.
// It checks the syntax only: a duplicate tag or field, or a number out of
// range, is found by ParseLine.
func checkLine(line []byte) error {
	if len(line) == 0 {
		return fmt.Errorf("empty line")
	}
	if line[0] == '#' {
		return fmt.Errorf("comment line")
	}
	if i := lineBreak(line); i >= 0 {
		return fmt.Errorf("line break at byte %d inside a line", i)
	}
	i := skipElem(line, 0, commaSpace, commaSpace)
	if i == 0 {
		return fmt.Errorf("missing measurement")
	}
	if i >= len(line) {
		return fmt.Errorf("no fields")
	}
	for line[i] == ',' {
		k := skipElem(line, i+1, commaEqSpace, commaEqSpace)
		if k >= len(line) || line[k] != '=' {
			return fmt.Errorf("tag at byte %d: want key=value", k)
		}
		v := skipElem(line, k+1, commaEqSpace, commaSpace)
		if k == i+1 || v == k+1 {
			return fmt.Errorf("tag at byte %d: empty key or value", v)
		}
		if i = v; i >= len(line) {
			return fmt.Errorf("no fields")
		}
	}
	if line[i] != ' ' {
		return fmt.Errorf("byte %d: want ' ' before fields", i)
	}
	return checkBody(line, i)
}

// checkBody is checkLine for the fields and timestamp, from the space
// parseHead stopped at.
func checkBody(line []byte, i int) error {
	for {
		k := skipElem(line, i+1, commaEqSpace, commaEqSpace)
		if k >= len(line) || line[k] != '=' {
			return fmt.Errorf("field at byte %d: want key=value", k)
		}
		if k == i+1 {
			return fmt.Errorf("field at byte %d: empty key", k)
		}
		j, err := skipFieldValue(line, k+1)
		if err != nil {
			return fmt.Errorf("field %q: %w", line[i+1:k], err)
		}
		i = j
		if i >= len(line) || line[i] == ' ' {
			break
		}
	}
	if i < len(line) && !isInteger(line[i+1:], true) {
		return fmt.Errorf("timestamp %q: want integer nanoseconds", line[i+1:])
	}
	return nil
}

// byteSet classifies bytes for the checks' inner loops: 1 for the bytes
// of the set, 2 for a backslash, 0 for the rest — one table lookup per
// byte in the common case, instead of a search of a short string.
type byteSet [256]uint8

func newByteSet(s string) *byteSet {
	var b byteSet
	for i := 0; i < len(s); i++ {
		b[s[i]] = 1
	}
	b['\\'] = 2
	return &b
}

var (
	commaSpace   = newByteSet(", ")
	commaEqSpace = newByteSet(",= ")
)

// skipElem is scanElem without the element: the index where it stops at
// a byte of stop; a backslash escapes a following byte of esc or another
// backslash.
func skipElem(line []byte, i int, esc, stop *byteSet) int {
	for ; i < len(line); i++ {
		switch stop[line[i]] {
		case 0:
		case 1:
			return i
		default: // a backslash
			if i+1 < len(line) && (line[i+1] == '\\' || esc[line[i+1]] == 1) {
				i++
			}
		}
	}
	return i
}

// skipFieldValue is scanFieldValue without the value (and its range).
func skipFieldValue(line []byte, i int) (int, error) {
	if i >= len(line) {
		return i, fmt.Errorf("missing value")
	}
	if line[i] == '"' {
		for j := i + 1; j < len(line); j++ {
			c := line[j]
			if c == '\\' && j+1 < len(line) && (line[j+1] == '"' || line[j+1] == '\\') {
				j++
				continue
			}
			if c == '"' {
				j++
				if j < len(line) && line[j] != ',' && line[j] != ' ' {
					return j, fmt.Errorf("unexpected %q after string at byte %d", line[j], j)
				}
				return j, nil
			}
		}
		return len(line), fmt.Errorf("unterminated string")
	}
	j := i
	for j < len(line) && line[j] != ',' && line[j] != ' ' {
		j++
	}
	v := line[i:j]
	switch {
	case len(v) == 0:
		return j, fmt.Errorf("missing value")
	case isBool(v):
		return j, nil
	case v[len(v)-1] == 'i':
		if !isInteger(v[:len(v)-1], true) {
			return j, fmt.Errorf("bad integer %q", v)
		}
	case v[len(v)-1] == 'u':
		if !isInteger(v[:len(v)-1], false) {
			return j, fmt.Errorf("bad unsigned integer %q", v)
		}
	case !isDecimalFloat(v):
		return j, fmt.Errorf("bad value %q", v)
	}
	return j, nil
}

func isBool(v []byte) bool {
	switch string(v) { // no allocation: the compiler compares in place
	case "t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE":
		return true
	}
	return false
}

// isInteger checks what strconv.ParseInt (signed) or ParseUint accepts in
// base 10: an optional sign (signed only), then digits.
func isInteger(v []byte, signed bool) bool {
	if signed && len(v) > 0 && (v[0] == '+' || v[0] == '-') {
		v = v[1:]
	}
	if len(v) == 0 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isDecimalFloat checks what strconv.ParseFloat accepts of isFloatSyntax's
// characters: [+-] digits [. digits] [e [+-] digits], with a digit before
// or after the point.
func isDecimalFloat(v []byte) bool {
	i := 0
	if i < len(v) && (v[i] == '+' || v[i] == '-') {
		i++
	}
	digits := 0
	for ; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
		digits++
	}
	if i < len(v) && v[i] == '.' {
		for i++; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		if i < len(v) && (v[i] == '+' || v[i] == '-') {
			i++
		}
		exp := 0
		for ; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(v)
}
