package tomlstrict

import (
	"sort"

	"github.com/pelletier/go-toml/v2/unstable"
)

// lines maps key paths to the lines that define them. BurntSushi/toml, which
// decodes, keeps positions to itself and merges the elements of arrays of
// tables, so the source is walked once more with go-toml's parser, which
// gives every key its place in the input. Table headers, the tables a
// dotted key or header implies, and array elements are recorded too.
type lines struct {
	at    map[string]int // joined path → line
	first map[string]int // joined path without Elem segments → line of its first occurrence
}

// line returns the line of path; if the exact path (with element indices) is
// unknown it falls back to the first line of the same key in any element,
// then to the nearest enclosing key or table. 0 means not found.
func (ls *lines) line(path []string) int {
	if ls == nil {
		return 0
	}
	for n := len(path); n > 0; n-- {
		p := path[:n]
		if l, ok := ls.at[join(p)]; ok {
			return l
		}
		if l, ok := ls.first[join(StripElems(p))]; ok {
			return l
		}
	}
	return 0
}

func (ls *lines) add(path []string, line int) {
	ls.at[join(path)] = line
	if k := join(StripElems(path)); ls.first[k] == 0 {
		ls.first[k] = line
	}
}

// implied records the tables that path implies ([a.b.c] implies a and a.b)
// where they were not written themselves.
func (ls *lines) implied(path []string, line int) {
	for n := 1; n < len(path); n++ {
		if _, ok := ls.at[join(path[:n])]; !ok {
			ls.add(path[:n], line)
		}
	}
}

// index records the line of every key, table header and array element in
// src. It expects a document that BurntSushi/toml has accepted; should
// go-toml stop early on one, the keys before that point keep their lines,
// since positions only improve messages.
func index(src []byte) *lines {
	w := &walker{ls: &lines{at: map[string]int{}, first: map[string]int{}}, arrays: map[string]int{}}
	for i, c := range src {
		if c == '\n' {
			w.newlines = append(w.newlines, i)
		}
	}
	w.p.Reset(src)
	var cur []string // the table the following keys belong to
	for w.p.NextExpression() {
		e := w.p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			key, line := w.key(e)
			cur = w.resolve(key, e.Kind == unstable.ArrayTable)
			w.ls.implied(cur, line)
			w.ls.add(cur, line)
		case unstable.KeyValue:
			w.keyValue(cur, e)
		}
	}
	return w.ls
}

type walker struct {
	p        unstable.Parser
	ls       *lines
	newlines []int          // offsets of '\n' in the source
	arrays   map[string]int // array-of-tables path (joined, resolved) → element count
	last     int            // the last line recorded, for values with no position of their own
}

func (w *walker) lineAt(offset uint32) int {
	return sort.SearchInts(w.newlines, int(offset)) + 1
}

// key returns the segments of a key-value's or header's key and its line.
func (w *walker) key(n *unstable.Node) ([]string, int) {
	var segs []string
	line := 0
	it := n.Key()
	for it.Next() {
		k := it.Node()
		if line == 0 {
			line = w.lineAt(k.Raw.Offset)
		}
		segs = append(segs, string(k.Data))
	}
	w.last = line
	return segs, line
}

func (w *walker) keyValue(table []string, kv *unstable.Node) {
	key, line := w.key(kv)
	path := append(append([]string(nil), table...), key...)
	w.ls.implied(path, line) // a.b = 1 implies the table a
	w.ls.add(path, line)
	w.value(path, kv.Value())
}

// value records the keys of an inline table and the elements of an array
// under path.
func (w *walker) value(path []string, v *unstable.Node) {
	switch v.Kind {
	case unstable.Array:
		it := v.Children()
		for i := 0; it.Next(); {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			el := append(append([]string(nil), path...), Elem(i))
			w.ls.add(el, w.valueLine(c))
			w.value(el, c)
			i++
		}
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if kv := it.Node(); kv.Kind == unstable.KeyValue {
				w.keyValue(path, kv)
			}
		}
	}
}

// valueLine is the line a value starts on. go-toml gives arrays no range of
// their own, so an array is placed at its first element that has one, or at
// the last line recorded.
func (w *walker) valueLine(v *unstable.Node) int {
	if v.Kind != unstable.Array {
		w.last = w.lineAt(v.Raw.Offset)
		return w.last
	}
	it := v.Children()
	for it.Next() {
		if c := it.Node(); c.Kind != unstable.Comment {
			return w.valueLine(c)
		}
	}
	return w.last
}

// resolve turns a header key into a path with the current element index of
// every array of tables along it; for [[a.b]] it starts a new element.
func (w *walker) resolve(key []string, array bool) []string {
	var out []string
	for n, seg := range key {
		out = append(out, seg)
		k := join(out)
		if n == len(key)-1 && array {
			w.arrays[k]++
			out = append(out, Elem(w.arrays[k]-1))
			continue
		}
		if c := w.arrays[k]; c > 0 {
			out = append(out, Elem(c-1))
		}
	}
	return out
}
