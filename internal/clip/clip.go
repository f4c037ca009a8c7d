// Package clip shortens user values that messages echo: a name, key, path
// or value read from a file, a flag or an argument can be megabytes long,
// and an error that repeats it in full buries its own point (and a
// terminal). Every message that echoes a user string goes through String
// or Quote; the CLI passes its final message through Message as a safety
// net for any echo that did not.
package clip

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Max is the most bytes of a value String and Quote keep.
const Max = 256

// String returns s, or, when s is longer than Max bytes, its first Max
// bytes (whole characters) followed by "… (N bytes)".
func String(s string) string {
	if len(s) <= Max {
		return s
	}
	return head(s, Max) + fmt.Sprintf("… (%d bytes)", len(s))
}

// Quote is %q of s, shortened like String: "abc…" (N bytes).
func Quote(s string) string {
	if len(s) <= Max {
		return strconv.Quote(s)
	}
	return strconv.Quote(head(s, Max)+"…") + fmt.Sprintf(" (%d bytes)", len(s))
}

// head is the longest prefix of s of at most n bytes that does not split a
// UTF-8 sequence.
func head(s string, n int) string {
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// tail is the longest suffix of s of at most n bytes that starts at a
// character boundary.
func tail(s string, n int) string {
	i := len(s) - n
	for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}

// Message limits a whole message: lines longer than MaxLine keep their
// beginning and end around "… (N bytes cut) …", and after MaxLines lines
// the rest is counted, not shown.
func Message(msg string) string {
	if len(msg) <= MaxLine && !strings.Contains(msg, "\n") {
		return msg
	}
	lines := strings.Split(msg, "\n")
	var b strings.Builder
	for i, l := range lines {
		if i == MaxLines {
			fmt.Fprintf(&b, "\n… (%d more lines)", len(lines)-i)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		if len(l) > MaxLine {
			h, t := head(l, MaxLine/2), tail(l, MaxLine/4)
			fmt.Fprintf(&b, "%s… (%d bytes cut) …%s", h, len(l)-len(h)-len(t), t)
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// Limits of Message.
const (
	MaxLine  = 4096
	MaxLines = 200
)
