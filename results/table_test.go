package results

import (
	"bytes"
	"encoding/csv"
	"reflect"
	"strings"
	"testing"
)

func TestTextCellSanitises(t *testing.T) {
	tab := Table{Columns: []string{"a", "b"}, Rows: [][]string{{"x\ty", "\x1b[31mred\x1b[0m"}, {"", "line\nbreak"}}}
	var b bytes.Buffer
	if err := tab.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "a    b\nx?y  ?[31mred?[0m\n-    line?break\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

// FuzzTableRenderers: any cells render as text with exactly one line per row
// and no control characters, and CSV reads back to the same cells.
func FuzzTableRenderers(f *testing.F) {
	f.Add("task", "t1", "a,b\"c", "\x1b]0;x\a", "")
	f.Add("k", "\n", "\r\n", "\t", "é\xff")
	f.Fuzz(func(t *testing.T, col, a, b, c, d string) {
		tab := Table{Columns: []string{col, "x"}, Rows: [][]string{{a, b}, {c, d}}}
		var txt bytes.Buffer
		if err := tab.WriteText(&txt); err != nil {
			t.Fatal(err)
		}
		out := txt.String()
		if n := strings.Count(out, "\n"); n != 3 {
			t.Fatalf("%d lines for 3 rows: %q", n, out)
		}
		for _, r := range out {
			if (r < 0x20 && r != '\n') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Fatalf("control character %U in %q", r, out)
			}
		}
		var cb bytes.Buffer
		if err := tab.WriteCSV(&cb); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&cb).ReadAll()
		if err != nil {
			t.Fatalf("csv does not read back: %v\n%q", err, cb.String())
		}
		// encoding/csv turns \r\n inside quoted fields into \n.
		norm := func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
		want := [][]string{{norm(col), "x"}, {norm(a), norm(b)}, {norm(c), norm(d)}}
		if !reflect.DeepEqual(recs, want) {
			t.Fatalf("csv round trip\n got %q\nwant %q", recs, want)
		}
	})
}
