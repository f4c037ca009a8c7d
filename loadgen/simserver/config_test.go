package simserver

import (
	"bytes"
	"reflect"

	"github.com/BurntSushi/toml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	c, err := LoadFile("../../examples/sim-models.toml")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, name := range []string{"resnet50", "bert-base", "resnet50_v2-0", "resnet50_v2-15", "resnet50_v2", "sim-llm"} {
		if srv.reg.lookup(name) == nil {
			t.Errorf("example config does not serve %q", name)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, toml string
		want       string // substring of the error
	}{
		{"unknown key", "[[dnn]]\nname = \"m\"\nbatchsize = 4\n", `3: unknown key "dnn.batchsize"`},
		{"unknown table", "[srv]\nlisten = \"x\"\n", `1: unknown key "srv`},
		{"wrong type", "[[dnn]]\nname = \"m\"\ncopies = \"four\"\n", "3"},
		{"bad duration", "[[llm]]\nname = \"m\"\ntpot = \"fast\"\n", "invalid duration"},
		{"syntax", "[[dnn]\nname = 1\n", "expected end of table array"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "m.toml")
	os.WriteFile(p, []byte("[server]\nworkerz = 2\n"), 0o644)
	if _, err := LoadFile(p); err == nil || !strings.HasPrefix(err.Error(), p+":2:") {
		t.Errorf("LoadFile error %v does not start with %s:2:", err, p)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad name", Config{DNN: []DNNModel{{Name: "has space"}}}, "name"},
		{"negative copies", Config{DNN: []DNNModel{{Name: "m", Copies: -1}}}, "copies"},
		{"fail rate", Config{Server: ServerConfig{FailRate: 1.5}, DNN: []DNNModel{{Name: "m"}}}, "fail_rate"},
		{"rates sum", Config{Server: ServerConfig{FailRate: 0.6, HangRate: 0.6}, DNN: []DNNModel{{Name: "m"}}}, "≤ 1"},
		{"max batch", Config{DNN: []DNNModel{{Name: "m", MaxBatch: -2}}}, "max_batch"},
		{"alpha", Config{DNN: []DNNModel{{Name: "m", BatchAlpha: f64(-1)}}}, "batch_alpha"},
		{"output shape", Config{DNN: []DNNModel{{Name: "m", OutputShape: []int{0}}}}, "output_shape"},
		{"jitter", Config{DNN: []DNNModel{{Name: "m", Jitter: 1}}}, "jitter"},
		{"concurrency", Config{LLM: []LLMModel{{Name: "m", Concurrency: -1}}}, "concurrency"},
		{"duplicate", Config{DNN: []DNNModel{{Name: "m"}}, LLM: []LLMModel{{Name: "m"}}}, "twice"},
		{"copy collision", Config{DNN: []DNNModel{{Name: "m", Copies: 3}, {Name: "m-2"}}}, "collides"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// No collision: m-3 is outside m's copies 0..2.
	if _, err := New(Config{DNN: []DNNModel{{Name: "m", Copies: 3}, {Name: "m-3"}}}); err != nil {
		t.Errorf("m×3 with m-3: %v", err)
	}
}

func TestParseModelFlag(t *testing.T) {
	d, _, err := ParseModelFlag("dnn", "resnet50_v2:copies=4000:b1=2.5ms,max_batch=8:batch_alpha=0.1:drop=false:output_shape=3x4:instances=2:jitter=0.2")
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "resnet50_v2" || d.Copies != 4000 || d.B1.D() != 2500*time.Microsecond || d.MaxBatch != 8 ||
		*d.BatchAlpha != 0.1 || *d.Drop || len(d.OutputShape) != 2 || d.OutputShape[1] != 4 || d.Instances != 2 || d.Jitter != 0.2 {
		t.Errorf("parsed %+v", d)
	}
	_, l, err := ParseModelFlag("llm", "sim-llm:prefill_per_token=1ms:tpot=10ms:concurrency=8:batch_slowdown=0.05:max_tokens=128:eos_after=32:ttft_base=5ms:copies=2")
	if err != nil {
		t.Fatal(err)
	}
	if l.PrefillPerToken.D() != time.Millisecond || l.TPOT.D() != 10*time.Millisecond || l.Concurrency != 8 ||
		l.BatchSlowdown != 0.05 || l.MaxTokens != 128 || l.EOSAfter != 32 || l.TTFTBase.D() != 5*time.Millisecond || l.Copies != 2 {
		t.Errorf("parsed %+v", l)
	}
	for _, bad := range []struct{ kind, s, want string }{
		{"dnn", "", "NAME"},
		{"dnn", "b1=3ms", "NAME"},
		{"dnn", "m:b1", "key=value"},
		{"dnn", "m:b1=3", "invalid duration"},
		{"dnn", "m:copies=x", "integer"},
		{"dnn", "m:tpot=1ms", "unknown key"},
		{"llm", "m:b1=1ms", "unknown key"},
		{"gpu", "m", "kind"},
	} {
		if _, _, err := ParseModelFlag(bad.kind, bad.s); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseModelFlag(%q, %q) = %v, want an error with %q", bad.kind, bad.s, err, bad.want)
		}
	}
}

func TestCountTokens(t *testing.T) {
	for s, want := range map[string]int{"": 0, "   ": 0, "a": 1, "hello world": 2, " a  b\tc\nd ": 4, "héllo wörld ñ": 3, "a\u00a0b": 2} {
		if got := CountTokens(s); got != want {
			t.Errorf("CountTokens(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestCountElements(t *testing.T) {
	for raw, want := range map[string]int64{`[]`: 0, `[1]`: 1, `[1, 2.5e3,-3]`: 3, `[[1,2],[3,4]]`: 4, `["a,b","c\"]"]`: 2, `[true,false,null]`: 3} {
		if got, err := countElements([]byte(raw)); err != nil || got != want {
			t.Errorf("countElements(%s) = %d, %v; want %d", raw, got, err, want)
		}
	}
	for _, raw := range []string{`1`, `[{"a":1}]`} {
		if _, err := countElements([]byte(raw)); err == nil {
			t.Errorf("countElements(%s): want an error", raw)
		}
	}
}

// What `sim-server --print-config` prints reads back as the same config.
func TestConfigRoundTrip(t *testing.T) {
	c, err := LoadFile("../../examples/sim-models.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip changed the config:\n%+v\n%+v", back, c)
	}
}

// Config file errors name the line and the key; negative times are refused
// where they are written.
func TestParseErrorLines(t *testing.T) {
	for _, tc := range []struct{ name, toml, want string }{
		{"wrong type", "[[dnn]]\nname = \"m\"\n\n[[dnn]]\nname = \"n\"\ncopies = \"four\"\n", `6: dnn.copies: incompatible types: TOML value has type string; destination has type integer`},
		{"near miss", "[server]\nworkerz = 2\n", `2: unknown key "server.workerz" (did you mean "workers"?)`},
		{"bad duration", "[[llm]]\nname = \"m\"\ntpot = \"fast\"\n", `3: llm.tpot: invalid duration "fast" (want e.g. "500ms", "30s", "2m")`},
		{"negative b1", "[[dnn]]\nname = \"m\"\n[[dnn]]\nname = \"n\"\nb1 = \"-3ms\"\n", `5: dnn.b1: negative duration "-3ms"`},
		{"negative tpot", "[[llm]]\nname = \"m\"\ntpot = \"-1s\"\n", `3: llm.tpot: negative duration "-1s"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.toml))
			if err == nil || err.Error() != tc.want {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
	if _, _, err := ParseModelFlag("llm", "m:tpot=-1ms"); err == nil || !strings.Contains(err.Error(), `negative duration "-1ms"`) {
		t.Errorf("negative flag duration: %v", err)
	}
	if _, _, err := ParseModelFlag("dnn", "m:copis=2"); err == nil || !strings.Contains(err.Error(), `unknown key (did you mean "copies"?) (known: copies, b1, max_batch,`) {
		t.Errorf("unknown flag key: %v", err)
	}
}
