package duration

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestUnmarshalText(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"250ms", 250 * time.Millisecond, ""},
		{"1m30s", 90 * time.Second, ""},
		{"1.5s", 1500 * time.Millisecond, ""},
		{"250us", 250 * time.Microsecond, ""},
		{"0", 0, ""},
		{"-2s", -2 * time.Second, ""}, // readers that forbid it check themselves
		{"5", 0, `invalid duration "5" (want e.g. "500ms", "30s", "2m")`},
		{"soon", 0, `invalid duration "soon" (want e.g. "500ms", "30s", "2m")`},
		{"", 0, `invalid duration "" (want e.g. "500ms", "30s", "2m")`},
	} {
		t.Run(c.in, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalText([]byte(c.in))
			if c.wantErr != "" {
				if err == nil || err.Error() != c.wantErr {
					t.Fatalf("err = %v, want %s", err, c.wantErr)
				}
				return
			}
			if err != nil || d.D() != c.want {
				t.Fatalf("got %v, %v; want %v", d.D(), err, c.want)
			}
		})
	}
}

// Manifests written before the one duration type must read back, and
// write out, byte for byte the same.
func TestJSONCompatible(t *testing.T) {
	type manifest struct {
		Duration Duration `json:"duration"`
		Drain    Duration `json:"drain,omitempty"`
		Interval Duration `json:"interval,omitempty"`
	}
	for _, in := range []string{
		`{"duration":"30s","drain":"1.5s"}`,
		`{"duration":"1m0s","interval":"250ms"}`,
		`{"duration":"0s"}`,
	} {
		var m manifest
		if err := json.Unmarshal([]byte(in), &m); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		out, err := json.Marshal(m)
		if err != nil || string(out) != in {
			t.Errorf("%s came back as %s (%v)", in, out, err)
		}
	}
}

func TestTOML(t *testing.T) {
	var v struct {
		A Duration `toml:"a"`
		B Duration `toml:"b"`
	}
	if _, err := toml.Decode("a = \"3ms\"\nb = \"2m\"\n", &v); err != nil || v.A.D() != 3*time.Millisecond || v.B.D() != 2*time.Minute {
		t.Fatalf("decode: %+v %v", v, err)
	}
	if _, err := toml.Decode("a = 5\n", &v); err == nil {
		t.Error("a bare number was accepted as a duration")
	}
	out, err := toml.Marshal(v)
	if err != nil || string(out) != "a = \"3ms\"\nb = \"2m0s\"\n" {
		t.Errorf("encode: %q %v", out, err)
	}
	if s := v.B.String(); s != "2m0s" {
		t.Errorf("String = %q", s)
	}
}
