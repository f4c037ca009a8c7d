package tomlstrict

import (
	"fmt"
	"reflect"
	"strings"
)

// KeyName is the TOML key of a struct field as BurntSushi/toml reads it:
// the tag's name, else the field's name; "" for an unexported field and
// "-" for a field the decoder skips.
func KeyName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if tag == "" {
		return f.Name
	}
	return tag
}

// KnownKeys lists the keys of the table at path (nil for the top) in a
// value of type t: the names of the struct's fields there, embedded
// structs flattened as the decoder does. Pointers, slices (arrays of
// tables) and maps (a path segment then names an entry) are followed;
// anything else knows no keys.
func KnownKeys(t reflect.Type, path []string) []string {
	t = indirect(t)
	for _, seg := range path {
		switch t.Kind() {
		case reflect.Struct:
			f, ok := fieldByKey(t, seg)
			if !ok {
				return nil
			}
			t = indirect(f.Type)
		case reflect.Map:
			t = indirect(t.Elem())
		default:
			return nil
		}
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Tag.Get("toml") == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, KnownKeys(f.Type, nil)...)
			continue
		}
		if n := KeyName(f); n != "" && n != "-" {
			out = append(out, n)
		}
	}
	return out
}

func indirect(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if KeyName(t.Field(i)) == key {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// Suggest returns ` (did you mean "x"?)` for the known name closest to got,
// if it is close (at most 2 edits, or a third of got's length); else "".
func Suggest(got string, known []string) string {
	if len(got) > 256 {
		return "" // no known name is that long; and edit distance is quadratic
	}
	best, bestD := "", 1<<30
	for _, k := range known {
		if d := editDistance(strings.ToLower(got), k); d < bestD {
			best, bestD = k, d
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
