package tomlstrict

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/duration"
	"github.com/gpuorch/gpuorch/internal/errkind"
)

// config is shaped like the files gpuorch reads: a table, arrays of tables,
// a map of tables, an inline table and a text-unmarshalled value.
type config struct {
	Server struct {
		Listen  string            `toml:"listen"`
		Workers int               `toml:"workers"`
		Timeout duration.Duration `toml:"timeout"`
		Headers map[string]string `toml:"headers"`
	} `toml:"server"`
	Models []struct {
		Name    string            `toml:"name"`
		Copies  int               `toml:"copies"`
		TPOT    duration.Duration `toml:"tpot"`
		Shape   []int             `toml:"shape"`
		Limits  limits            `toml:"limits"`
		private int
	} `toml:"model"`
	Pools map[string]*struct {
		Nodes string `toml:"nodes"`
		GPUs  int    `toml:"gpus"`
	} `toml:"pools"`
	Untagged string
	Skipped  string `toml:"-"`
}

type limits struct {
	TFLOPS float64 `toml:"tflops"`
	VRAM   string  `toml:"vram"`
}

const good = `[server]
listen = "127.0.0.1:8000"
workers = 2
timeout = "3s"
headers = { X-Trace = "1" }

[[model]]
name = "a"
copies = 4
limits = { tflops = 5.5, vram = "3Gi" }

[[model]]
name = "b"
tpot = "10ms"
shape = [3, 224, 224]

[pools.a100]
nodes = "n[1-4]"
gpus = 8
`

func TestDecode(t *testing.T) {
	var c config
	if err := Decode("c.toml", []byte(good), &c); err != nil {
		t.Fatal(err)
	}
	if c.Server.Workers != 2 || c.Server.Timeout.D().Seconds() != 3 || c.Server.Headers["X-Trace"] != "1" ||
		len(c.Models) != 2 || c.Models[0].Limits.VRAM != "3Gi" || c.Models[1].TPOT.D().Milliseconds() != 10 ||
		!reflect.DeepEqual(c.Models[1].Shape, []int{3, 224, 224}) || c.Pools["a100"].GPUs != 8 {
		t.Errorf("decoded %+v", c)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct {
		name, src, file, want, key string
	}{
		{"unknown key", good + "cpus = 2\n", "c.toml",
			`c.toml:20: unknown key "pools.a100.cpus" (did you mean "gpus"?)`, "pools.a100.cpus"},
		{"unknown key far from any", strings.Replace(good, "workers = 2", "colour = 2", 1), "c.toml",
			`c.toml:3: unknown key "server.colour"`, "server.colour"},
		{"near miss", strings.Replace(good, "workers = 2", "workres = 2", 1), "c.toml",
			`c.toml:3: unknown key "server.workres" (did you mean "workers"?)`, "server.workres"},
		{"near miss, other case", strings.Replace(good, "workers = 2", "Workerz = 2", 1), "c.toml",
			`c.toml:3: unknown key "server.Workerz" (did you mean "workers"?)`, "server.Workerz"},
		{"unknown table", good + "[serverr]\n", "c.toml",
			`c.toml:20: unknown key "serverr" (did you mean "server"?)`, "serverr"},
		{"unknown table with keys", "[serverr]\nlisten = \"x\"\n", "c.toml",
			`c.toml:1: unknown key "serverr" (did you mean "server"?)`, "serverr"},
		{"untagged field is known by name", "Untaged = \"x\"\n", "c.toml",
			`c.toml:1: unknown key "Untaged" (did you mean "Untagged"?)`, "Untaged"},
		{"skipped field is unknown", "Skipped = \"x\"\n", "c.toml",
			`c.toml:1: unknown key "Skipped"`, "Skipped"},
		{"unknown in second element", strings.Replace(good, `tpot = "10ms"`, `tpto = "10ms"`, 1), "c.toml",
			`c.toml:14: unknown key "model.tpto" (did you mean "tpot"?)`, "model.tpto"},
		{"unknown in inline table", strings.Replace(good, `vram = "3Gi"`, `vram = "3Gi", vrm = 1`, 1), "c.toml",
			`c.toml:10: unknown key "model.limits.vrm" (did you mean "vram"?)`, "model.limits.vrm"},
		{"unknown in a map entry", strings.Replace(good, "gpus = 8", "gpu = 8", 1), "c.toml",
			`c.toml:19: unknown key "pools.a100.gpu" (did you mean "gpus"?)`, "pools.a100.gpu"},
		{"wrong type", strings.Replace(good, "workers = 2", `workers = "two"`, 1), "c.toml",
			`c.toml:3: server.workers: incompatible types: TOML value has type string; destination has type integer`, "server.workers"},
		{"wrong type in second element", strings.Replace(good, "shape = [3, 224, 224]", "shape = [3,\n  \"x\"]", 1), "c.toml",
			`c.toml:15: model.shape: incompatible types: TOML value has type string; destination has type integer`, "model.shape"},
		{"wrong type in first element", strings.Replace(good, "copies = 4", "copies = 4.5", 1), "c.toml",
			`c.toml:9: model.copies: incompatible types: TOML value has type float64; destination has type integer`, "model.copies"},
		{"bad value", strings.Replace(good, `timeout = "3s"`, `timeout = "3"`, 1), "c.toml",
			`c.toml:4: server.timeout: invalid duration "3" (want e.g. "500ms", "30s", "2m")`, "server.timeout"},
		{"bad value in an element", strings.Replace(good, `tpot = "10ms"`, `tpot = "fast"`, 1), "c.toml",
			`c.toml:14: model.tpot: invalid duration "fast" (want e.g. "500ms", "30s", "2m")`, "model.tpot"},
		{"first error in file order", strings.Replace(strings.Replace(good, "workers = 2", "wrkers = 2", 1), "gpus = 8", `gpus = "8"`, 1), "c.toml",
			`c.toml:3: unknown key "server.wrkers" (did you mean "workers"?)`, "server.wrkers"},
		{"type error before unknown key", strings.Replace(strings.Replace(good, "workers = 2", `workers = "2"`, 1), "gpus = 8", "gpu = 8", 1), "c.toml",
			`c.toml:3: server.workers: incompatible types: TOML value has type string; destination has type integer`, "server.workers"},
		{"table for a value", "Untagged = { a = 1 }\n", "c.toml",
			`c.toml:1: Untagged.a: incompatible types: TOML value has type map[string]any; destination has type string`, "Untagged.a"},
		{"syntax", "[server\nlisten = 1\n", "c.toml",
			`c.toml:2: expected '.' or ']' to end table name, but got '\n' instead`, ""},
		{"no file name", "[server]\nworkerz = 2\n", "",
			`2: unknown key "server.workerz" (did you mean "workers"?)`, "server.workerz"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var cfg config
			err := Decode(c.file, []byte(c.src), &cfg)
			if err == nil {
				t.Fatalf("no error, want %s", c.want)
			}
			if err.Error() != c.want {
				t.Errorf("got  %s\nwant %s", err, c.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T is not an *Error", err)
			}
			if e.Key != c.key {
				t.Errorf("key %q, want %q", e.Key, c.key)
			}
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Errorf("not invalid input: %v", err)
			}
		})
	}
}

func TestSet(t *testing.T) {
	for _, c := range []struct {
		name string
		sets []string
		want string // error; "" for none
	}{
		{"ok", []string{"server.workers=4", "model.copies=2", "model[1].name=c", "server.listen=x:1", "pools.h100.nodes=h1"}, ""},
		{"unknown key", []string{"server.workrs=4"}, `--set server.workrs=4: unknown key "server.workrs" (did you mean "workers"?)`},
		{"wrong type", []string{"model[1].copies=lots"}, `--set model[1].copies=lots: model.copies: incompatible types: TOML value has type string; destination has type integer`},
		{"bad value", []string{"server.timeout=3"}, `--set server.timeout=3: server.timeout: invalid duration "3" (want e.g. "500ms", "30s", "2m")`},
		{"index out of range", []string{"model[2].copies=1"}, `--set model[2].copies=1: "model" has 2 elements; index 2 is out of range`},
		{"index on a table", []string{"server[0].workers=1"}, `--set server[0].workers=1: "server" is a table, not an array`},
		{"through a value", []string{"server.listen.port=1"}, `--set server.listen.port=1: "listen" is a value, not a table`},
		{"no equals", []string{"server.workers"}, `--set server.workers: want KEY=VALUE`},
		{"bad key", []string{"server..workers=1"}, `--set server..workers=1: bad key character "."`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := Parse("c.toml", []byte(good))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range c.sets {
				if err = d.Set(s); err != nil {
					break
				}
			}
			var cfg config
			if err == nil {
				err = d.Decode(nil, d.Tree, &cfg)
			}
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Server.Workers != 4 || cfg.Models[0].Copies != 2 || cfg.Models[1].Copies != 2 || cfg.Models[1].Name != "c" ||
					cfg.Server.Listen != "x:1" || cfg.Pools["h100"].Nodes != "h1" {
					t.Errorf("overrides not applied: %+v", cfg)
				}
				return
			}
			if err == nil || err.Error() != c.want {
				t.Errorf("got  %v\nwant %s", err, c.want)
			}
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Errorf("not invalid input: %v", err)
			}
		})
	}
}

func TestLines(t *testing.T) {
	src := `a = 1
"quoted.key" = 'x' # comment with = sign
[t]
b.c = """
x = 1
"""
d = [
  { e = 1 },
  { f = 2, g = [1, 2] },
]
[[arr]]
h = 1
[arr.sub]
i = 1
[[arr]]
h = 2
[[arr.list]]
j = 1
[[arr.list]]
j = 2
k = '''it's'''
m = [
  [],
  [
    1],
]
n = "\u00e9\"" # escapes
[x.y.z]
'lit.key' = { p.q = 1,
  r = 2 }
`
	d, err := Parse("p.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path []string
		line int
	}{
		{[]string{"a"}, 1},
		{[]string{"quoted.key"}, 2},
		{[]string{"t"}, 3},
		{[]string{"t", "b", "c"}, 4},
		{[]string{"t", "b"}, 4}, // implied by the dotted key
		{[]string{"t", "d"}, 7},
		{[]string{"t", "d", "#0", "e"}, 8},
		{[]string{"t", "d", "#1", "g"}, 9},
		{[]string{"t", "d", "#1", "g", "#1"}, 9},
		{[]string{"arr", "#0", "h"}, 12},
		{[]string{"arr", "#0", "sub", "i"}, 14},
		{[]string{"arr", "#1", "h"}, 16},
		{[]string{"arr", "#1", "list", "#0", "j"}, 18},
		{[]string{"arr", "#1", "list", "#1", "j"}, 20},
		{[]string{"arr", "#1", "list", "#1", "k"}, 21},
		{[]string{"arr", "h"}, 12},                           // no index: first element
		{[]string{"t", "nope"}, 3},                           // unknown: enclosing table
		{[]string{"arr", "#1", "list", "#0"}, 17},            // header of an element
		{[]string{"arr"}, 11},                                // the first [[arr]]
		{[]string{"arr", "#1", "list", "#1", "m", "#0"}, 22}, // an empty array has no place of its own
		{[]string{"arr", "#1", "list", "#1", "m", "#1"}, 25},
		{[]string{"arr", "#1", "list", "#1", "n"}, 27},
		{[]string{"x"}, 28},
		{[]string{"x", "y"}, 28},
		{[]string{"x", "y", "z", "lit.key", "p", "q"}, 29},
		{[]string{"x", "y", "z", "lit.key", "r"}, 30},
		{[]string{"nope"}, 0},
	} {
		if got := d.Line(c.path); got != c.line {
			t.Errorf("%v: line %d, want %d", c.path, got, c.line)
		}
	}
	if l := (*Doc)(nil).Line([]string{"a"}); l != 0 {
		t.Errorf("nil Doc: line %d", l)
	}
	// CRLF line ends count once.
	d, err = Parse("p.toml", []byte("a = 1\r\n\r\n[t]\r\nb = 2\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := d.Line([]string{"t", "b"}); l != 4 {
		t.Errorf("CRLF: line %d, want 4", l)
	}
}

func TestKeys(t *testing.T) {
	d, err := Parse("c.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Keys(nil, d.Tree); !reflect.DeepEqual(got, []string{"server", "model", "pools"}) {
		t.Errorf("top-level keys in file order: %v", got)
	}
	srv := d.Tree["server"].(map[string]any)
	if got := d.Keys([]string{"server"}, srv); !reflect.DeepEqual(got, []string{"listen", "workers", "timeout", "headers"}) {
		t.Errorf("[server] keys in file order: %v", got)
	}
}

func TestKnownKeysAndSuggest(t *testing.T) {
	typ := reflect.TypeFor[config]()
	for _, c := range []struct {
		path []string
		want []string
	}{
		{nil, []string{"server", "model", "pools", "Untagged"}},
		{[]string{"model"}, []string{"name", "copies", "tpot", "shape", "limits"}},
		{[]string{"model", "limits"}, []string{"tflops", "vram"}},
		{[]string{"pools", "a100"}, []string{"nodes", "gpus"}},
		{[]string{"server", "headers"}, nil},
		{[]string{"nope"}, nil},
	} {
		if got := KnownKeys(typ, c.path); !reflect.DeepEqual(got, c.want) {
			t.Errorf("KnownKeys(%v) = %v, want %v", c.path, got, c.want)
		}
	}
	for _, c := range []struct{ got, want string }{
		{"wrkers", ` (did you mean "workers"?)`},
		{"WORKERS", ` (did you mean "workers"?)`},
		{"listn", ` (did you mean "listen"?)`},
		{"colour", ""},
	} {
		if s := Suggest(c.got, []string{"listen", "workers", "timeout"}); s != c.want {
			t.Errorf("Suggest(%q) = %q, want %q", c.got, s, c.want)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f.toml", Line: 3, Msg: "m"}, "f.toml:3: m"},
		{Error{File: "f.toml", Msg: "m"}, "f.toml: m"},
		{Error{Line: 3, Msg: "m"}, "3: m"},
		{Error{Msg: "m"}, "m"},
		{Error{File: "--set a=1", Key: "a", Msg: "m"}, "--set a=1: m"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.e, got, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(good), "server.workers=3")
	f.Add([]byte("[[model]]\n[[model.limits]]\nx = {y = [1, {z = 2}]}\n"), "model.name=1")
	f.Add([]byte("a = \"\"\"\n\\\"\"\"\"\"\n"), "")
	f.Add([]byte("[pools.'a.b']\nnodes = 1\n"), "pools[0].x=1")
	f.Add([]byte("server = { timeout = \"1h\", workers = 1e3 }\n"), "")
	f.Fuzz(func(t *testing.T, src []byte, set string) {
		d, err := Parse("fuzz.toml", src)
		if err == nil {
			if set != "" {
				err = d.Set(set)
			}
			if err == nil {
				var c config
				err = d.Decode(nil, d.Tree, &c)
			}
		}
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%T is not an *Error: %v", err, err)
		}
		if !strings.HasPrefix(err.Error(), "fuzz.toml") && !strings.HasPrefix(err.Error(), "--set ") {
			t.Fatalf("error names neither the file nor the --set argument: %v", err)
		}
		if n := strings.Count(string(src), "\n") + 1; e.Line > n {
			t.Fatalf("line %d past the end (%d lines): %v", e.Line, n, err)
		}
		if !errors.Is(err, errkind.ErrInvalid) {
			t.Fatalf("not invalid input: %v", err)
		}
	})
}
