package sbatch

import (
	"strings"
	"testing"
)

func TestExpandHostlist(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"node[1-2]", "node1 node2", ""},
		{"a[1-2]b[3-4]", "a1b3 a1b4 a2b3 a2b4", ""},
		{"n[01-03,7]", "n01 n02 n03 n7", ""},
		{"n[1-010]", "n1 n2 n3 n4 n5 n6 n7 n8 n9 n10", ""},
		{"n[001-3]", "n001 n002 n003", ""},
		{"node1,node[2-3],node1", "node1 node2 node3 node1", ""},
		{"a,,b", "a b", ""},
		{"n[1-2]-[5-6]", "n1-5 n1-6 n2-5 n2-6", ""},
		{"[1-2]", "1 2", ""},
		{"gpu-a.b_c", "gpu-a.b_c", ""},
		{"n[9-11]x", "", "no text after the last group"},
		{"x[3-1]", "", "runs backwards"},
		{"n[1-2", "", "'[' without ']'"},
		{"n1-2]", "", "']' without '['"},
		{"n[]", "", "empty brackets"},
		{"n[a-b]", "", "not a host number"},
		{"n[[1]]", "", "inside brackets"},
		{"n[1-999999999]", "", "more than 65536 hosts"},
		{"a[1-300]b[1-300]", "", "more than 65536 hosts"},
	} {
		got, err := ExpandHostlist(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != c.want {
			t.Errorf("%q: %v, %v; want %s", c.in, got, err, c.want)
		}
	}
}

func FuzzExpandHostlist(f *testing.F) {
	for _, s := range []string{"node[1-2]", "a[1-2]b[3-4]", "n[01-03,7]", "x[3-1]", "n[1-999999999]", "a,,b", "[1-2]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hosts, err := ExpandHostlist(s)
		if err != nil {
			return
		}
		if len(hosts) > MaxHosts {
			t.Fatalf("%q: %d hosts", s, len(hosts))
		}
		for _, h := range hosts {
			if h == "" || strings.ContainsAny(h, "[],") {
				t.Fatalf("%q expands to host %q", s, h)
			}
		}
	})
}
