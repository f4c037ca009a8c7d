package clip

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStringAndQuote(t *testing.T) {
	long := strings.Repeat("a", 10<<20)
	cases := []struct {
		name, in, str, quote string
	}{
		{"short stays", "serving-quickstart", "serving-quickstart", `"serving-quickstart"`},
		{"at the limit stays", strings.Repeat("b", Max), strings.Repeat("b", Max), strconv.Quote(strings.Repeat("b", Max))},
		{"10 MB is cut", long, strings.Repeat("a", Max) + "… (10485760 bytes)", strconv.Quote(strings.Repeat("a", Max)+"…") + " (10485760 bytes)"},
		{"control characters quoted", "a\nb", "a\nb", `"a\nb"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := String(c.in); got != c.str {
				t.Errorf("String: got %.80q…, want %.80q…", got, c.str)
			}
			if got := Quote(c.in); got != c.quote {
				t.Errorf("Quote: got %.80q…, want %.80q…", got, c.quote)
			}
		})
	}
}

// A cut never splits a multi-byte character.
func TestCutsAtCharacterBoundaries(t *testing.T) {
	s := strings.Repeat("é", Max) // 2 bytes each
	for _, got := range []string{String(s), Quote(s), Message(strings.Repeat("€", MaxLine))} {
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8 after a cut: %.60q", got)
		}
	}
	if got := String(s); !strings.HasSuffix(got, "… (512 bytes)") || len(got) > Max+len("… (512 bytes)") {
		t.Fatalf("String = %q", got)
	}
}

func TestMessage(t *testing.T) {
	if got := Message("gpuorch: short"); got != "gpuorch: short" {
		t.Fatalf("a short message changed: %q", got)
	}
	line := "invalid value \"" + strings.Repeat("x", 1<<20) + "\" for flag -interval: parse error"
	got := Message(line)
	if len(got) > MaxLine+64 || !strings.HasPrefix(got, "invalid value \"xxx") || !strings.HasSuffix(got, "for flag -interval: parse error") || !strings.Contains(got, "bytes cut") {
		t.Fatalf("long line: %d bytes: %.100q … %.100q", len(got), got, got[max(0, len(got)-100):])
	}
	many := strings.Repeat("line\n", 1000) + "last"
	got = Message(many)
	if n := strings.Count(got, "\n"); n != MaxLines || !strings.HasSuffix(got, "… (801 more lines)") {
		t.Fatalf("many lines: %d newlines, ends %q", n, got[len(got)-30:])
	}
}
