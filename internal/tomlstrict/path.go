package tomlstrict

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/gpuorch/gpuorch/internal/clip"
)

// A key path is a list of key segments from the document root, in which
// Elem(i) stands for element i of an array (of tables, or of inline tables):
// []string{"workload", Elem(1), "rate"} is rate in the second [[workload]].

// Elem is the path segment of element i of an array.
func Elem(i int) string { return "#" + strconv.Itoa(i) }

// IsElem reports whether seg is an Elem segment, and which element.
func IsElem(seg string) (int, bool) {
	if len(seg) < 2 || seg[0] != '#' {
		return 0, false
	}
	i, err := strconv.Atoi(seg[1:])
	return i, err == nil && i >= 0
}

// StripElems returns path without its Elem segments: the key as a user
// would write it ("workload.rate").
func StripElems(path []string) []string {
	out := make([]string, 0, len(path))
	for _, s := range path {
		if _, ok := IsElem(s); !ok {
			out = append(out, s)
		}
	}
	return out
}

// Dotted writes a path as a dotted key, quoting segments that need it.
func Dotted(path []string) string {
	parts := make([]string, len(path))
	for i, s := range path {
		if s == "" || strings.ContainsAny(s, ". \"'[]=#") {
			s = strconv.Quote(s)
		}
		parts[i] = s
	}
	return strings.Join(parts, ".")
}

const sep = "\x1f"

func join(path []string) string { return strings.Join(path, sep) }

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ParseKey reads a key as --set takes it: "a.b", "workload[1].rate"
// (element 1), or with a quoted segment, "target.headers.\"X-Trace\"".
func ParseKey(k string) ([]string, error) {
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
				return nil, fmt.Errorf("bad key character %s", clip.Quote(k[:1]))
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
				return nil, fmt.Errorf("bad element index %s", clip.Quote(k[1:end]))
			}
			out = append(out, Elem(i))
			k = k[end+1:]
		}
		if k == "" {
			break
		}
		if k[0] != '.' {
			return nil, fmt.Errorf("bad key character %s", clip.Quote(k[:1]))
		}
		k = k[1:]
		if k == "" {
			return nil, errors.New("key ends with a dot")
		}
	}
	return out, nil
}

// SetPath sets path in tree to val(old), creating tables on the way. A path
// through an array of tables without an element index sets the key in
// every element.
func SetPath(tree map[string]any, path []string, val func(old any) any) error {
	if len(path) == 0 {
		return errors.New("empty key")
	}
	if _, ok := IsElem(path[0]); ok {
		return errors.New("element index without a key")
	}
	k := path[0]
	rest := path[1:]
	if len(rest) == 0 {
		tree[k] = val(tree[k])
		return nil
	}
	i, indexed := IsElem(rest[0])
	switch c := tree[k].(type) {
	case nil:
		if indexed {
			return fmt.Errorf("%q has no elements", k)
		}
		n := map[string]any{}
		tree[k] = n
		return SetPath(n, rest, val)
	case map[string]any:
		if indexed {
			return fmt.Errorf("%s is a table, not an array", clip.Quote(k))
		}
		return SetPath(c, rest, val)
	case []map[string]any:
		if indexed {
			if i >= len(c) {
				return fmt.Errorf("%s has %d elements; index %d is out of range", clip.Quote(k), len(c), i)
			}
			if len(rest) == 1 {
				return errors.New("cannot replace a whole element")
			}
			return SetPath(c[i], rest[1:], val)
		}
		if len(c) == 0 {
			return fmt.Errorf("%q has no elements", k)
		}
		for _, el := range c {
			if err := SetPath(el, rest, val); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("%s is a value, not a table", clip.Quote(k))
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
