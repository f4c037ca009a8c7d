package results

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// normalize is what a point becomes after a trip through line protocol:
// newlines become spaces, empty tags vanish, integer kinds become int64.
func normalize(p Point) Point {
	nl := strings.NewReplacer("\n", " ", "\r", " ")
	q := Point{Measurement: nl.Replace(p.Measurement), Fields: map[string]any{}}
	for k, v := range p.Tags {
		if k == "" || v == "" {
			continue
		}
		if q.Tags == nil {
			q.Tags = map[string]string{}
		}
		q.Tags[nl.Replace(k)] = nl.Replace(v)
	}
	for k, v := range p.Fields {
		switch x := v.(type) {
		case int:
			v = int64(x)
		case time.Duration:
			v = int64(x)
		case float32:
			v = float64(x)
		case string:
			v = nl.Replace(x)
		}
		q.Fields[nl.Replace(k)] = v
	}
	if !p.Time.IsZero() {
		q.Time = time.Unix(0, p.Time.UnixNano()).UTC()
	}
	return q
}

func TestLineRoundTrip(t *testing.T) {
	ts := time.Date(2026, 11, 22, 7, 0, 0, 123456789, time.UTC)
	cases := []Point{
		{Measurement: "serving", Tags: map[string]string{"task": "t1"}, Fields: map[string]any{"x": 1.5}, Time: ts},
		{Measurement: "m", Fields: map[string]any{"i": int64(-42), "u": uint64(math.MaxUint64), "b": true, "f": false, "s": "hi"}},
		{Measurement: "with space,comma", Tags: map[string]string{"k ey": "v,a=l ue", "a=b": "c"}, Fields: map[string]any{"f,x=y z": 1.0}, Time: ts},
		{Measurement: "back\\slash", Tags: map[string]string{"k": `ends\`, `k\`: `a\,b`, `k2`: `\\ \= \x`}, Fields: map[string]any{`f\`: `"quoted" \ back\slash\`}, Time: ts},
		{Measurement: "m=eq", Tags: map[string]string{"empty": ""}, Fields: map[string]any{"n": "line\nbreak", "d": 3 * time.Millisecond, "i": 7, "f32": float32(0.5)}},
		{Measurement: "m", Fields: map[string]any{"tiny": 1e-300, "big": -1.7976931348623157e308, "zero": 0.0, "int": 3.0}, Time: time.Unix(0, -5)},
		{Measurement: "m", Fields: map[string]any{"s": ""}, Time: time.Unix(0, 0)},
	}
	for _, p := range cases {
		line, err := AppendLine(nil, p)
		if err != nil {
			t.Fatalf("AppendLine(%v): %v", p, err)
		}
		got, err := ParseLine(line)
		if err != nil {
			t.Fatalf("ParseLine(%q): %v", line, err)
		}
		if want := normalize(p); !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %q\n got %#v\nwant %#v", line, got, want)
		}
	}
}

func TestParseLineAcceptsOtherWriters(t *testing.T) {
	for line, want := range map[string]Point{
		"cpu value=1":                      {Measurement: "cpu", Fields: map[string]any{"value": 1.0}},
		"cpu,host=a b=t,c=F,d=TRUE 10\r\n": {Measurement: "cpu", Tags: map[string]string{"host": "a"}, Fields: map[string]any{"b": true, "c": false, "d": true}, Time: time.Unix(0, 10).UTC()},
		`m,k=a=b s="x,y z",n=1e3`:          {Measurement: "m", Tags: map[string]string{"k": "a=b"}, Fields: map[string]any{"s": "x,y z", "n": 1000.0}},
		`m\a s="a\nb"`:                     {Measurement: `m\a`, Fields: map[string]any{"s": `a\nb`}},
	} {
		got, err := ParseLine([]byte(line))
		if err != nil {
			t.Errorf("ParseLine(%q): %v", line, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseLine(%q)\n got %#v\nwant %#v", line, got, want)
		}
	}
}

func TestParseLineErrors(t *testing.T) {
	for _, line := range []string{
		"", "\n", "# comment", "m", "m,", "m ", "m,k=v", "m,k= f=1", "m,=v f=1", "m,k f=1",
		"m f", "m f=", "m =1", "m f=1,", "m f=1,f=2", "m,k=a,k=b f=1", `m f="open`, `m f="a"b`,
		"m f=1i2", "m f=abc", "m f=NaN", "m f=inf", "m f=0x10", "m f=1 abc", "m f=1 ", "m f=12ii",
		"m f=-1u", ",k=v f=1",
	} {
		if p, err := ParseLine([]byte(line)); err == nil {
			t.Errorf("ParseLine(%q) = %#v, want error", line, p)
		}
	}
}

func TestAppendLineRejects(t *testing.T) {
	for _, p := range []Point{
		{Fields: map[string]any{"f": 1.0}},
		{Measurement: "m"},
		{Measurement: "#m", Fields: map[string]any{"f": 1.0}},
		{Measurement: "m", Fields: map[string]any{"": 1.0}},
		{Measurement: "m", Fields: map[string]any{"f": math.NaN()}},
		{Measurement: "m", Fields: map[string]any{"f": math.Inf(-1)}},
		{Measurement: "m", Fields: map[string]any{"f": []int{1}}},
	} {
		if line, err := AppendLine(nil, p); err == nil {
			t.Errorf("AppendLine(%#v) = %q, want error", p, line)
		}
	}
}

// FuzzLineRoundTrip: any point AppendLine accepts, ParseLine reads back as
// the same point (modulo the documented normalisation).
func FuzzLineRoundTrip(f *testing.F) {
	f.Add("serving", "task", "t1", "class", "fg", "latency_p99", 12.5, int64(3), "ok", true, int64(1763798400000000000))
	f.Add(`a\`, `k\`, `v\,`, `=`, ` `, `f\ `, -0.0, int64(-1), `"\`, false, int64(0))
	f.Add("m m", "k=k", "v v", "x,y", "\\\\", "f=f", 1e308, int64(math.MinInt64), "\n\r", true, int64(-1))
	f.Fuzz(func(t *testing.T, meas, k1, v1, k2, v2, fk string, fv float64, iv int64, sv string, bv bool, ts int64) {
		p := Point{
			Measurement: meas,
			Tags:        map[string]string{k1: v1, k2: v2},
			Fields:      map[string]any{fk: fv, fk + "_i": iv, fk + "_s": sv, fk + "_b": bv, fk + "_u": uint64(iv)},
			Time:        time.Unix(0, ts),
		}
		want := normalize(p)
		if len(want.Tags) != len(p.Tags) && k1 != k2 && k1 != "" && k2 != "" && v1 != "" && v2 != "" {
			t.Skip("two tag keys that differ only in newline kind collapse into one")
		}
		line, err := AppendLine(nil, p)
		if err != nil {
			return // rejected points: no measurement, '#', empty field key, NaN
		}
		if strings.Count(string(line), "\n") != 1 {
			t.Fatalf("line %q is not exactly one line", line)
		}
		got, err := ParseLine(line)
		if err != nil {
			t.Fatalf("ParseLine(%q): %v", line, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip of %q\n got %#v\nwant %#v", line, got, want)
		}
	})
}

// FuzzParseLine: ParseLine never panics, and whatever it accepts re-encodes
// to a line that parses to the same point.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"serving,task=t1 x=1.5,n=3i,s=\"a\\\"b\" 1763798400000000000\n",
		`m\ a,k\,=v\= f\==1u`, "m f=t", `m s="\\"`, "m,k=v f=-1e-9 -5",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		p, err := ParseLine(line)
		if err != nil {
			return
		}
		enc, err := AppendLine(nil, p)
		if err != nil {
			// ParseLine accepted something AppendLine refuses to write;
			// only a '#'-measurement cannot occur (ParseLine rejects it).
			t.Fatalf("AppendLine of parsed %q: %v", line, err)
		}
		q, err := ParseLine(enc)
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", enc, line, err)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("re-encode of %q changed the point\n got %#v\nwant %#v", line, q, p)
		}
	})
}

// FuzzCheckLine: the syntax check the local store runs on lines a query
// skips agrees with the parser: every line the parser reads passes it (no
// good line is reported malformed), and every line it passes fails the
// parser only for what it leaves to the parse, a duplicate key or a number
// out of range.
func FuzzCheckLine(f *testing.F) {
	for _, s := range []string{
		"serving,task=t1 x=1.5,n=3i,s=\"a\\\"b\" 1763798400000000000",
		`m\ a,k\,=v\= f\==1u`, "m f=t", `m s="\\"`, "m,k=v f=-1e-9 -5", "hello world", "m x=1e400", "m x=1,x=2",
		"m,a=1,a=2 x=1", "m x=99999999999999999999i", "m x=.5,y=5.,z=+1 +7", "m x=1e 5", "m x=\"a\"b", "{\"json\": 1}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		// As the store reads a line: its end of line off, then head and body.
		line = trimEOL(line)
		cerr := checkLine(line)
		p, i, perr := parseHead(line)
		if perr == nil {
			perr = parseBody(line, i, &p)
		}
		switch {
		case perr == nil && cerr != nil:
			t.Fatalf("checkLine(%q) = %v, but the parser reads it", line, cerr)
		case perr != nil && cerr == nil:
			msg := perr.Error()
			if !strings.Contains(msg, "duplicate") && !strings.Contains(msg, "bad value") &&
				!strings.Contains(msg, "bad integer") && !strings.Contains(msg, "bad unsigned") && !strings.Contains(msg, "timestamp") {
				t.Fatalf("checkLine(%q) passes what the parser refuses: %v", line, perr)
			}
		}
	})
}
