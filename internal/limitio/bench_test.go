package limitio

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// BenchmarkReader: what the limits cost a reader — the line scan and the
// context check — against reading the same bytes raw, through bufio as the
// line-protocol and CSV parsers do. 64 MiB of 200-byte lines.
func BenchmarkReader(b *testing.B) {
	data := []byte(strings.Repeat(strings.Repeat("x", 199)+"\n", 64<<20/200))
	for _, c := range []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"raw", func(r io.Reader) io.Reader { return r }},
		{"limitio", func(r io.Reader) io.Reader { return NewReader(context.Background(), r, "bench", Metrics) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				br := bufio.NewReaderSize(c.wrap(bytes.NewReader(data)), 64<<10)
				n := 0
				for {
					_, err := br.ReadSlice('\n')
					if err != nil {
						break
					}
					n++
				}
				if n != len(data)/200 {
					b.Fatal(n)
				}
			}
		})
	}
}
