package results

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MalformedLines collects the malformed lines a LocalStore reports (its
// OnMalformed is Add), for one warning per file instead of one per line: a
// garbage file of a million lines is one warning, not a million.
type MalformedLines struct {
	files []string
	by    map[string]*malformedFile
}

type malformedFile struct {
	count int
	lines []int // the first few
	first error
}

// maxListed is how many line numbers a warning lists.
const maxListed = 5

// Add records one malformed line.
func (m *MalformedLines) Add(le *LineError) {
	if m.by == nil {
		m.by = map[string]*malformedFile{}
	}
	f := m.by[le.File]
	if f == nil {
		f = &malformedFile{first: le.Err}
		m.by[le.File] = f
		m.files = append(m.files, le.File)
	}
	f.count++
	if len(f.lines) < maxListed {
		f.lines = append(f.lines, le.Line)
	}
}

// Count is the number of malformed lines recorded.
func (m *MalformedLines) Count() int {
	n := 0
	for _, f := range m.by {
		n += f.count
	}
	return n
}

// WriteText writes one warning per file: how many lines were skipped,
// the first line numbers, and what is wrong with the first.
func (m *MalformedLines) WriteText(w io.Writer) error {
	for _, name := range m.files {
		f := m.by[name]
		nums := make([]string, len(f.lines))
		for i, n := range f.lines {
			nums[i] = strconv.Itoa(n)
		}
		list := strings.Join(nums, ", ")
		if f.count > len(f.lines) {
			list += ", …"
		}
		s, ls := "s", "lines"
		if f.count == 1 {
			s, ls = "", "line"
		}
		if _, err := fmt.Fprintf(w, "warning: %s: %d malformed line%s skipped (%s %s); line %d: %v\n",
			name, f.count, s, ls, list, f.lines[0], f.first); err != nil {
			return err
		}
	}
	return nil
}
