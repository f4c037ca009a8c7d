package loadgen

// A scanner for the common shape of OpenAI stream chunks, so that reading a
// stream costs a pass over its bytes instead of a reflective decode per
// token (encoding/json was a third of the client's CPU per token at 500
// streams). It answers exactly what parseChunk would, or declines (ok =
// false) and leaves the chunk to parseChunk: on a type it does not expect,
// a duplicate or escaped key, an "error" member, or anything else unusual.
// FuzzScanChunk holds it to that.

// scanChunk reports whether b, one chunk, carries generated text and its
// usage, if any. ok is false when the caller must use parseChunk instead
// (which also reports malformed JSON).
func scanChunk(b []byte) (p parsedChunk, ok bool) {
	s := scanner{b: b}
	s.ws()
	if !s.eat('{') {
		return p, false
	}
	var seen [3]bool // choices, usage, error
	var usage chunkUsage
	haveUsage := false
	s.ws()
	if s.eat('}') {
		return s.end(p)
	}
	for {
		key, kok := s.key()
		if !kok {
			return p, false
		}
		switch {
		case foldEq(key, "choices"):
			if seen[0] {
				return p, false
			}
			seen[0] = true
			content, cok := s.choices()
			if !cok {
				return p, false
			}
			p.content = content
		case foldEq(key, "usage"):
			if seen[1] {
				return p, false
			}
			seen[1] = true
			if s.null() {
				break
			}
			if !s.usage(&usage) {
				return p, false
			}
			haveUsage = true
		case foldEq(key, "error"):
			if seen[2] {
				return p, false
			}
			seen[2] = true
			if !s.null() {
				return p, false // parseChunk words the server's error
			}
		default:
			if !s.skip(0) {
				return p, false
			}
		}
		s.ws()
		if s.eat('}') {
			break
		}
		if !s.eat(',') {
			return p, false
		}
	}
	if haveUsage {
		u := usage
		p.usage = &u
	}
	return s.end(p)
}

type scanner struct {
	b []byte
	i int
}

// end accepts only trailing whitespace.
func (s *scanner) end(p parsedChunk) (parsedChunk, bool) {
	s.ws()
	return p, s.i == len(s.b)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// null consumes a null literal (after whitespace) if one is next.
func (s *scanner) null() bool {
	s.ws()
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// key reads `"name"` and the colon after it. Keys with escapes or
// non-ASCII bytes are declined: encoding/json unescapes and folds them.
func (s *scanner) key() ([]byte, bool) {
	s.ws()
	if !s.eat('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == '"' {
			k := s.b[start:s.i]
			s.i++
			s.ws()
			return k, s.eat(':')
		}
		if c == '\\' || c < 0x20 || c >= 0x80 {
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// foldEq is ASCII case-insensitive equality, as encoding/json matches keys.
func foldEq(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// str reads a string (after whitespace) and reports whether it is
// non-empty; null counts as empty.
func (s *scanner) str() (nonEmpty, ok bool) {
	if s.null() {
		return false, true
	}
	s.ws()
	if !s.eat('"') {
		return false, false
	}
	start := s.i
	if !s.strBody() {
		return false, false
	}
	return s.i-start > 1, true
}

// strBody consumes a string's contents and closing quote, checking escapes.
func (s *scanner) strBody() bool {
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			s.i++
			if s.i >= len(s.b) {
				return false
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				if len(s.b)-s.i < 5 {
					return false
				}
				for _, h := range s.b[s.i+1 : s.i+5] {
					if !isHex(h) {
						return false
					}
				}
				s.i += 5
			default:
				return false
			}
		default:
			s.i++
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// choices reads the choices array (or null) and reports whether any choice
// carries text.
func (s *scanner) choices() (content, ok bool) {
	if s.null() {
		return false, true
	}
	s.ws()
	if !s.eat('[') {
		return false, false
	}
	s.ws()
	if s.eat(']') {
		return false, true
	}
	for {
		c, cok := s.choice()
		if !cok {
			return false, false
		}
		content = content || c
		s.ws()
		if s.eat(']') {
			return content, true
		}
		if !s.eat(',') {
			return false, false
		}
	}
}

// choice reads one choice object (or null).
func (s *scanner) choice() (content, ok bool) {
	if s.null() {
		return false, true
	}
	s.ws()
	if !s.eat('{') {
		return false, false
	}
	var seen [3]bool // text, delta, message
	s.ws()
	if s.eat('}') {
		return false, true
	}
	for {
		key, kok := s.key()
		if !kok {
			return false, false
		}
		var c bool
		switch {
		case foldEq(key, "text"):
			if seen[0] {
				return false, false
			}
			seen[0] = true
			c, ok = s.str()
		case foldEq(key, "delta"):
			if seen[1] {
				return false, false
			}
			seen[1] = true
			c, ok = s.message(true)
		case foldEq(key, "message"):
			if seen[2] {
				return false, false
			}
			seen[2] = true
			c, ok = s.message(false)
		default:
			ok = s.skip(0)
		}
		if !ok {
			return false, false
		}
		content = content || c
		s.ws()
		if s.eat('}') {
			return content, true
		}
		if !s.eat(',') {
			return false, false
		}
	}
}

// message reads a delta (content, reasoning_content) or message (content)
// object, or null.
func (s *scanner) message(delta bool) (content, ok bool) {
	if s.null() {
		return false, true
	}
	s.ws()
	if !s.eat('{') {
		return false, false
	}
	var seen [2]bool
	s.ws()
	if s.eat('}') {
		return false, true
	}
	for {
		key, kok := s.key()
		if !kok {
			return false, false
		}
		var c bool
		switch {
		case foldEq(key, "content"):
			if seen[0] {
				return false, false
			}
			seen[0] = true
			c, ok = s.str()
		case delta && foldEq(key, "reasoning_content"):
			if seen[1] {
				return false, false
			}
			seen[1] = true
			c, ok = s.str()
		default:
			ok = s.skip(0)
		}
		if !ok {
			return false, false
		}
		content = content || c
		s.ws()
		if s.eat('}') {
			return content, true
		}
		if !s.eat(',') {
			return false, false
		}
	}
}

// usage reads the usage object's token counts.
func (s *scanner) usage(u *chunkUsage) bool {
	s.ws()
	if !s.eat('{') {
		return false
	}
	var seen [2]bool
	s.ws()
	if s.eat('}') {
		return true
	}
	for {
		key, kok := s.key()
		if !kok {
			return false
		}
		ok := true
		switch {
		case foldEq(key, "prompt_tokens"):
			if seen[0] {
				return false
			}
			seen[0] = true
			ok = s.count(&u.PromptTokens)
		case foldEq(key, "completion_tokens"):
			if seen[1] {
				return false
			}
			seen[1] = true
			ok = s.count(&u.CompletionTokens)
		default:
			ok = s.skip(0)
		}
		if !ok {
			return false
		}
		s.ws()
		if s.eat('}') {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

// count reads a small integer (or null, leaving dst); fractions, exponents
// and anything that might overflow are declined.
func (s *scanner) count(dst *int) bool {
	if s.null() {
		return true
	}
	s.ws()
	neg := s.eat('-')
	start := s.i
	n := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		n = n*10 + int(s.b[s.i]-'0')
		s.i++
	}
	digits := s.i - start
	if digits == 0 || digits > 15 || (digits > 1 && s.b[start] == '0') {
		return false
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return false
	}
	if neg {
		n = -n
	}
	*dst = n
	return true
}

// skip consumes any JSON value, checking its syntax.
func (s *scanner) skip(depth int) bool {
	if depth > 64 {
		return false
	}
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		s.i++
		return s.strBody()
	case c == '{':
		s.i++
		s.ws()
		if s.eat('}') {
			return true
		}
		for {
			s.ws()
			if !s.eat('"') || !s.strBody() {
				return false
			}
			s.ws()
			if !s.eat(':') || !s.skip(depth+1) {
				return false
			}
			s.ws()
			if s.eat('}') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case c == '[':
		s.i++
		s.ws()
		if s.eat(']') {
			return true
		}
		for {
			if !s.skip(depth + 1) {
				return false
			}
			s.ws()
			if s.eat(']') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return s.number()
	}
	return false
}

func (s *scanner) lit(w string) bool {
	if len(s.b)-s.i >= len(w) && string(s.b[s.i:s.i+len(w)]) == w {
		s.i += len(w)
		return true
	}
	return false
}

// number consumes a JSON number (RFC 8259 grammar).
func (s *scanner) number() bool {
	s.eat('-')
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.eat('0') {
		// no more integer digits after a leading zero
	} else if digits() == 0 {
		return false
	}
	if s.eat('.') && digits() == 0 {
		return false
	}
	if s.eat('e') || s.eat('E') {
		if !s.eat('+') {
			s.eat('-')
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
