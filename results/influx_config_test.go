package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadInfluxConfig(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("admin:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	openTok := filepath.Join(dir, "open-token")
	if err := os.WriteFile(openTok, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", fmt.Sprintf(`
[loadgen]
whatever = 1   # other tables belong to other parts of gpuorch
[influxdb]
url = "http://127.0.0.1:8086"
bucket = "metrics/autogen"
token_file = %q
batch_size = 100
flush_interval = "250ms"
`, tokFile))
	typo := write("typo.toml", "[influxdb]\nurl = \"http://127.0.0.1:8086\"\nbukket = \"x\"\n")
	inline := write("inline.toml", "[influxdb]\nurl = \"http://127.0.0.1:8086\"\ntoken = \"x\"\n")
	badDur := write("baddur.toml", "[influxdb]\nurl = \"http://127.0.0.1:8086\"\nflush_interval = \"soon\"\n")
	syntax := write("syntax.toml", "[influxdb]\nurl = \n")

	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c InfluxConfig)
	}{
		{name: "nothing configured", env: map[string]string{"HOME": dir},
			check: func(t *testing.T, c InfluxConfig) {
				if c.Configured() {
					t.Errorf("configured without a URL: %+v", c)
				}
			}},
		{name: "file", env: map[string]string{"GPUORCH_CONFIG": good},
			check: func(t *testing.T, c InfluxConfig) {
				if c.URL != "http://127.0.0.1:8086" || c.Bucket != "metrics/autogen" || c.Database() != "metrics" ||
					c.Token.Reveal() != "admin:s3cret" || c.BatchSize != 100 || c.FlushInterval != 250*time.Millisecond ||
					c.QueueBatches != DefaultQueueBatches {
					t.Errorf("got %+v", c)
				}
			}},
		{name: "env wins over file", env: map[string]string{"GPUORCH_CONFIG": good, "GPUORCH_INFLUX_BUCKET": "other", "GPUORCH_INFLUX_TOKEN": "tok", "GPUORCH_INFLUX_BATCH_SIZE": "7"},
			check: func(t *testing.T, c InfluxConfig) {
				if c.Bucket != "other" || c.Token.Reveal() != "tok" || c.BatchSize != 7 || !strings.Contains(c.Source, "environment") {
					t.Errorf("got %+v", c)
				}
			}},
		{name: "env only, default bucket", env: map[string]string{"HOME": dir, "GPUORCH_INFLUX_URL": "http://127.0.0.1:9999"},
			check: func(t *testing.T, c InfluxConfig) {
				if c.Bucket != "gpuorch" || c.Token != "" {
					t.Errorf("got %+v", c)
				}
			}},
		{name: "unknown key", env: map[string]string{"GPUORCH_CONFIG": typo}, wantErr: `unknown key "influxdb.bukket"`},
		{name: "token in file refused", env: map[string]string{"GPUORCH_CONFIG": inline}, wantErr: "token is not allowed in the config file"},
		{name: "bad duration", env: map[string]string{"GPUORCH_CONFIG": badDur}, wantErr: `invalid duration "soon"`},
		{name: "syntax error has position", env: map[string]string{"GPUORCH_CONFIG": syntax}, wantErr: "line 2"},
		{name: "named config missing", env: map[string]string{"GPUORCH_CONFIG": filepath.Join(dir, "nope.toml")}, wantErr: "no such file"},
		{name: "world-readable token file", env: map[string]string{"HOME": dir, "GPUORCH_INFLUX_URL": "http://127.0.0.1:8086", "GPUORCH_INFLUX_TOKEN_FILE": openTok}, wantErr: "readable by group or others"},
		{name: "credentials in URL", env: map[string]string{"HOME": dir, "GPUORCH_INFLUX_URL": "http://u:p@127.0.0.1:8086"}, wantErr: "holds credentials"},
		{name: "bad URL", env: map[string]string{"HOME": dir, "GPUORCH_INFLUX_URL": "127.0.0.1:8086"}, wantErr: "want http://host:port"},
		{name: "bad bucket", env: map[string]string{"HOME": dir, "GPUORCH_INFLUX_URL": "http://h:1", "GPUORCH_INFLUX_BUCKET": "db/"}, wantErr: "retention-policy"},
		{name: "bad batch size", env: map[string]string{"HOME": dir, "GPUORCH_INFLUX_URL": "http://h:1", "GPUORCH_INFLUX_BATCH_SIZE": "-1"}, wantErr: "positive integer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadInfluxConfig(envMap(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

// The token must never show up in logs, %v output or JSON.
func TestSecretNeverPrinted(t *testing.T) {
	c := InfluxConfig{URL: "http://h:1", Token: "admin:s3cret"}
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("cfg", "cfg", c, "tok", c.Token)
	j, _ := json.Marshal(c)
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", c, c, c, c.Token), sb.String(), string(j)} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("token leaked: %s", s)
		}
	}
}

func TestFluxString(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:       `"plain"`,
		`a"b`:         `"a\"b"`,
		`back\slash`:  `"back\\slash"`,
		"nl\nx":       `"nl\nx"`,
		"${injected}": `"\${injected}"`,
	} {
		if got := fluxString(in); got != want {
			t.Errorf("fluxString(%q) = %s, want %s", in, got, want)
		}
	}
}

// unquoteFlux reverses fluxString the way Flux reads a string literal.
func unquoteFlux(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	in := s[1 : len(s)-1]
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '"':
			return "", false // an unescaped quote would end the literal
		case c == '$' && i+1 < len(in) && in[i+1] == '{':
			return "", false // an unescaped ${ would start an interpolation
		case c == '\\':
			i++
			if i == len(in) {
				return "", false
			}
			switch in[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '"', '\\', '$':
				b.WriteByte(in[i])
			default:
				return "", false
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// Any experiment, task or bucket name stays one Flux string literal that
// reads back as itself: no user value can change a query.
func FuzzFluxString(f *testing.F) {
	for _, s := range []string{"", "plain", `a"b`, `\`, "${x}", "$", `") or true or ("`, "nl\n\r\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := fluxString(s)
		got, ok := unquoteFlux(q)
		if !ok || got != s {
			t.Fatalf("fluxString(%q) = %s, reads back as %q (ok=%v)", s, q, got, ok)
		}
	})
}

// Mistakes in the config file name the file, the line and the key, and are
// bad input (exit code 2).
func TestInfluxConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, want string }{
		{"near miss", "[loadgen]\nx = 1\n[influxdb]\nurl = \"http://h:1\"\nbukket = \"x\"\n", `:5: unknown key "influxdb.bukket" (did you mean "bucket"?)`},
		{"wrong type", "[influxdb]\nurl = \"http://h:1\"\nbatch_size = \"big\"\n", `:3: influxdb.batch_size: incompatible types: TOML value has type string; destination has type integer`},
		{"bad duration", "[influxdb]\nurl = \"http://h:1\"\n\ntimeout = \"10\"\n", `:4: influxdb.timeout: invalid duration "10" (want e.g. "500ms", "30s", "2m")`},
		{"token", "[influxdb]\nurl = \"http://h:1\"\ntoken = \"x\"\n", `:3: [influxdb] token is not allowed in the config file`},
		{"not a table", "influxdb = \"http://h:1\"\n", `:1: influxdb: type mismatch for results.influxFileConfig: expected table but found string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".toml")
			if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadInfluxConfig(envMap(map[string]string{"GPUORCH_CONFIG": p}))
			if err == nil || !strings.HasPrefix(err.Error(), "config "+p+tc.want) {
				t.Errorf("got  %v\nwant config %s%s…", err, p, tc.want)
			}
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Errorf("not invalid input: %v", err)
			}
		})
	}
}
