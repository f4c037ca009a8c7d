package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 13, class 6c: an error echoes a user's value shortened (clip), not
// a 10 MB name in full; the message still says what is wrong.
func TestErrorsDoNotEchoHugeValues(t *testing.T) {
	huge := strings.Repeat("n", 10<<20)
	big := huge[:900<<10] // a file's lines are limited to 1 MiB (limitio)
	dir := t.TempDir()
	spec := filepath.Join(dir, "spec.toml")
	if err := os.WriteFile(spec, []byte(cliSpec+"\n["+big+"]\nx = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	named := filepath.Join(dir, "named.toml")
	if err := os.WriteFile(named, []byte(strings.Replace(cliSpec, `name = "cli-test"`, `name = "`+big+`"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"experiment name", []string{"status", huge}, "open experiment"},
		{"command", []string{huge}, "unknown command"},
		{"subcommand", []string{"results", huge}, "results: unknown command"},
		{"--set value", []string{"run", "--dry-run", "--set", huge, spec}, "want KEY=VALUE"},
		{"key in a spec", []string{"run", "--dry-run", spec}, "unknown key"},
		{"name in a spec", []string{"run", "--dry-run", named}, "experiment.name"},
		{"flag value", []string{"status", "--interval", huge, "x"}, "for flag -interval"},
		{"path", []string{"run", "--dry-run", "/" + huge}, "read spec"},
		{"enumerated flag", []string{"run", "--dry-run", "--executor", huge, spec}, "--executor: unknown executor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, errOut, code := runCLI(t, t.TempDir(), c.args...)
			if code != exitUsage || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d, stderr %.300q…; want exit 2 and %q", code, errOut, c.want)
			}
			if len(errOut) > 8<<10 || !strings.Contains(errOut, "bytes") {
				t.Fatalf("stderr is %d bytes, the value not marked as shortened: %.300q…", len(errOut), errOut)
			}
			if d := time.Since(start); d > time.Minute {
				t.Fatalf("took %v", d)
			}
		})
	}
}
