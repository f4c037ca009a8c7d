package loadgen

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzParseAzureTrace: any input either parses into rows of exactly 1440
// counts whose totals add up, or fails with an error naming the file.
func FuzzParseAzureTrace(f *testing.F) {
	row := "o,a,f,http" + strings.Repeat(",1", AzureMinutes) + "\n"
	f.Add([]byte("HashOwner,HashApp,HashFunction,Trigger\n" + row))
	f.Add([]byte(row + row))
	f.Add([]byte("o,a,f,http,1,2\n"))
	f.Add([]byte("\"unterminated\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := ParseAzureTrace(bytes.NewReader(b), "fuzz.csv")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.csv") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, fn := range tr.Functions {
			var sum uint64
			for _, c := range fn.Counts {
				sum += uint64(c)
			}
			if len(fn.Counts) != AzureMinutes || sum != fn.Total {
				t.Fatalf("row at line %d: %d counts, total %d vs %d", fn.Line, len(fn.Counts), fn.Total, sum)
			}
		}
	})
}

// FuzzParseClockwork: arbitrary parameters never panic; an error always
// carries the usage line; a workload that builds has at least one source.
func FuzzParseClockwork(f *testing.F) {
	f.Add("slo-exp-1", "resnet50_v2 4 poisson 100 2 32 2 mul 7")
	f.Add("slo-exp-2", "m 2 fixed-rate 10 1 4 2 add 1 1 1 50")
	f.Add("simple-parametric", "5 2 3 10")
	f.Add("spam", "x pattern={index}")
	f.Add("comparison_experiment", "3 1e9")
	f.Fuzz(func(t *testing.T, name, args string) {
		spec := LookupClockwork(name)
		if spec == nil || name == "azure" || name == "example" {
			return // azure reads files; example's zoo option can be huge
		}
		fields := strings.Fields(args)
		for _, a := range fields {
			if strings.HasPrefix(a, "zoo=") {
				return
			}
		}
		w, err := ParseClockwork(name, fields, nil, nil, 1, time.Second)
		if err != nil {
			if strings.Contains(err.Error(), "usage:") || strings.Contains(err.Error(), "duration") {
				return
			}
			t.Fatalf("error without usage line: %v", err)
		}
		if len(w.Open)+len(w.Closed) == 0 {
			t.Fatalf("%s %q built no sources", name, args)
		}
	})
}
