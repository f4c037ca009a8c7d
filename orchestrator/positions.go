package orchestrator

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// positions maps spec keys to the lines that define them. BurntSushi/toml
// keeps key positions private and merges the elements of an array of tables,
// so gpuorch scans the (already validated) source once itself. A path is a
// list of key segments in which "#n" stands for element n of an array
// (of tables, or of inline tables); table headers are recorded too.
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
