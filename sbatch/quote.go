package sbatch

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Quote returns s as one shell word that bash reads back byte for byte:
// single-quoted, with each ' written as '\”. Words made only of characters
// no shell treats specially are returned bare, for readable scripts.
func Quote(s string) string {
	if s != "" && isShellSafe(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// CommandLine is a command line for a user to paste into a shell: each word
// quoted with Quote, so that nothing in a path or a name ($(…) in
// GPUORCH_HOME, a space, a quote) runs or splits. Every "run this" hint
// gpuorch prints is built with it.
func CommandLine(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}

// isShellSafe reports whether s can appear unquoted as a shell word (and not
// as the first word of an assignment or a glob or a tilde expansion).
func isShellSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-_./,:@%+", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// checkText rejects strings that cannot be carried safely inside a script
// line: invalid UTF-8, NUL and other control characters (a newline would end
// a #SBATCH comment and start a command).
func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s: not valid UTF-8: %q", field, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%s: control character %q not allowed in %q", field, r, s)
		}
	}
	return nil
}

// directiveSafe are the characters sbatch's #SBATCH tokenizer passes through
// unchanged outside quotes. Everything else (space, quotes, backslash, '#',
// which starts a comment) needs quoting.
func directiveSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-_./,:=@%+[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// quoteDirective renders a #SBATCH option value the way sbatch's own
// tokenizer reads it back: sbatch splits the rest of an #SBATCH line on
// blanks, honours "..." and '...' quotes, treats a backslash as escaping the
// next character (inside quotes too) and an unquoted '#' as the start of a
// comment. So a value with any such character is wrapped in double quotes
// with '"' and '\' backslash-escaped. The line itself is a bash comment, so
// none of this is ever seen by the shell; control characters are rejected
// before this is called.
func quoteDirective(s string) string {
	if s != "" && directiveSafe(s) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// ValidName reports whether s is a shell variable name.
func ValidName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}
