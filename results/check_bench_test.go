package results

import "testing"

// BenchmarkCheckLine checks the syntax of one full serving line (what the
// local store does, once per file, with the lines a query does not parse),
// beside BenchmarkParseLine on the same line.
func BenchmarkCheckLine(b *testing.B) {
	line, _ := AppendLine(nil, benchPoint())
	line = trimEOL(line)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := checkLine(line); err != nil {
			b.Fatal(err)
		}
	}
}
