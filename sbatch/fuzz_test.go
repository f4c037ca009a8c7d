package sbatch

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/testgate"
)

// hostile are seeds for the fuzz target: shell metacharacters, quotes,
// command substitutions, #SBATCH look-alikes and line breaks.
var hostile = []string{
	"plain",
	"",
	"a b",
	"'; touch pwned; '",
	`"; touch pwned; "`,
	"$(touch pwned)",
	"`touch pwned`",
	"${IFS}touch${IFS}pwned",
	"\\'; touch pwned #",
	"a\ntouch pwned",
	"a\r\ntouch pwned\n#SBATCH --wrap=x",
	"#SBATCH --partition=evil",
	"x # y",
	"*",
	"~root",
	"a=b",
	"-",
	"--help",
	"\x00touch pwned",
	"\xff\xfe",
	"é ü 漢字",
	"%A_%a",
	"\\",
	"\"",
	"'",
	"$HOME",
	"!!",
	"a;b&c|d<e>f",
}

// parseDirectiveValue models how sbatch tokenizes the value part of an
// #SBATCH line: blank-separated words, "..." and '...' quoting, a backslash
// escaping the next character (inside quotes too), an unquoted '#' ending the
// line. TestDirectiveQuotingOnSlurm checks this model against real sbatch.
func parseDirectiveValue(s string) (string, string) {
	var b strings.Builder
	var q byte
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case q != 0 && c == q:
			q = 0
		case q != 0:
			b.WriteByte(c)
		case c == '"' || c == '\'':
			q = c
		case c == '#', c == ' ', c == '\t':
			return b.String(), s[i:]
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

// headerOptions parses the #SBATCH block of a script the way sbatch does
// (options up to the first command line) into name → value.
func headerOptions(t *testing.T, script string) map[string]string {
	t.Helper()
	opts := map[string]string{}
	for i, line := range strings.Split(script, "\n") {
		if i == 0 {
			continue
		}
		if line == "" || (strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "#SBATCH")) {
			continue
		}
		if !strings.HasPrefix(line, "#SBATCH ") {
			break
		}
		word, rest := parseDirectiveValue(strings.TrimPrefix(line, "#SBATCH "))
		if strings.TrimSpace(rest) != "" {
			t.Fatalf("#SBATCH line %q has more than one word (rest %q)", line, rest)
		}
		name, val, _ := strings.Cut(strings.TrimPrefix(word, "--"), "=")
		opts[name] = val
	}
	return opts
}

// stub writes an executable that records its argv (NUL-terminated words)
// and the value of $FUZZ_ENV to files named after itself.
func writeStubs(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		script := "#!/bin/bash\n" +
			"printf '%s\\0' \"$@\" > \"$STUB_OUT/" + n + ".argv\"\n" +
			"printf '%s' \"$FUZZ_ENV\" > \"$STUB_OUT/" + n + ".env\"\n"
		if err := os.WriteFile(filepath.Join(dir, n), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func hasControl(s string) bool { return checkText("x", s) != nil }

// checkScript proves a rendered script safe: bash -n accepts it; the #SBATCH
// header parses back to the given values; running it (header inert, in a
// scratch directory, with stub srun and gpuorch first on PATH) creates no
// file but the stubs' records, and each stub received argv and $FUZZ_ENV
// byte-identical to what was rendered.
func checkScript(t *testing.T, script string, wantOpts map[string]string, wantArgv map[string][]string, wantEnv string) {
	t.Helper()
	testgate.Tool(t, "bash", "bash")
	dir := t.TempDir()
	bin, work, out := filepath.Join(dir, "bin"), filepath.Join(dir, "work"), filepath.Join(dir, "out")
	for _, d := range []string{bin, work, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeStubs(t, bin, "srun", "gpuorch")
	path := filepath.Join(out, "job.sh")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("bash", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v: %s\n%s", err, b, script)
	}
	got := headerOptions(t, script)
	for k, v := range wantOpts {
		if got[k] != v {
			t.Errorf("#SBATCH --%s parses back as %q, want %q\n%s", k, got[k], v, script)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", path)
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "HOME=" + work, "STUB_OUT=" + out, "LC_ALL=C"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("running script: %v: %s\n%s", err, stderr.String(), script)
	}
	if ents, _ := os.ReadDir(work); len(ents) > 0 {
		t.Fatalf("script created %v in its working directory: injected code ran\n%s", ents[0].Name(), script)
	}
	ents, _ := os.ReadDir(out)
	want := map[string]bool{"job.sh": true}
	for n := range wantArgv {
		want[n+".argv"], want[n+".env"] = true, true
	}
	for _, e := range ents {
		if !want[e.Name()] {
			t.Fatalf("unexpected file %s: injected code ran\n%s", e.Name(), script)
		}
	}
	for n, argv := range wantArgv {
		b, err := os.ReadFile(filepath.Join(out, n+".argv"))
		if err != nil {
			t.Fatalf("stub %s did not run: %v\n%s", n, err, script)
		}
		gotArgv := strings.Split(string(b), "\x00")
		gotArgv = gotArgv[:len(gotArgv)-1]
		if !reflect.DeepEqual(gotArgv, argv) {
			t.Fatalf("%s argv = %q, want %q\n%s", n, gotArgv, argv, script)
		}
		env, _ := os.ReadFile(filepath.Join(out, n+".env"))
		if string(env) != wantEnv {
			t.Fatalf("%s saw FUZZ_ENV %q, want %q", n, env, wantEnv)
		}
	}
}

// FuzzRender renders one hostile string into every field of a job.
func FuzzRender(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Free-text #SBATCH fields: rendered (quoted) unless s has control
		// characters, which must be rejected.
		// Filename patterns carry s as literal text (every '%' doubled); a
		// backslash they cannot carry (FuzzFilePattern).
		backslash := strings.ContainsRune(s, '\\')
		if _, err := (&Job{Output: LiteralPattern(s)}).Render(); backslash && err == nil {
			t.Fatalf("a backslash in a filename pattern accepted: %q", s)
		}
		pat := LiteralPattern(s)
		if backslash {
			pat = ""
		}
		j := Job{
			Name: s, Partition: s, QOS: s, Account: s, Output: pat, Error: pat, Input: pat,
			WorkDir: s, Constraint: s, Reservation: s, Comment: s,
			Extra: []Option{{Name: "mcs-label", Value: s}},
			Env:   []EnvVar{Env("FUZZ_ENV", s)},
		}
		argv := []string{"loadgen", "run", "--manifest", s, s + "/x", "-" + s}
		nul := strings.IndexByte(s, 0) >= 0
		j.Body = []Line{
			Raw("set -eu"),
			Command(Lit("srun"), Lit(s), Cat(Lit(s), Var("FUZZ_ENV"), Lit(s))),
			Exec(Lit("gpuorch"), Lit("loadgen"), Lit("run"), Lit("--manifest"), Lit(s),
				Cat(Lit(s), Lit("/x")), Cat(Lit("-"), Lit(s))),
		}
		script, err := j.Render()
		if hasControl(s) {
			if err == nil {
				t.Fatalf("control characters in %q accepted:\n%s", s, script)
			}
			// The body alone (no #SBATCH text) carries any bytes but NUL.
			j = Job{Env: j.Env, Body: j.Body}
			script, err = j.Render()
			if nul {
				if err == nil {
					t.Fatalf("NUL accepted:\n%q", script)
				}
				return
			}
		}
		if err != nil {
			t.Fatalf("render %q: %v", s, err)
		}
		opts := map[string]string{}
		if !hasControl(s) && s != "" {
			for _, k := range []string{"job-name", "partition", "qos", "account",
				"chdir", "constraint", "reservation", "comment", "mcs-label"} {
				opts[k] = s
			}
			for _, k := range []string{"output", "error", "input"} {
				opts[k] = string(pat)
			}
		}
		checkScript(t, script, opts, map[string][]string{
			"srun":    {s, s + s + s},
			"gpuorch": argv,
		}, s)

		// Structured fields: s is either rejected or rendered as one line.
		for _, sj := range []Job{
			{Nodes: s}, {GPUs: s}, {GPUsPerNode: s}, {GRES: []string{s}}, {Mem: s}, {Time: s},
			{Array: s}, {Export: s}, {Dependency: s}, {Signal: s}, {NodeList: s}, {Exclude: s},
			{OpenMode: s}, {Extra: []Option{{Name: s}}}, {Body: []Line{Command(Var(s))}},
			{Body: []Line{Export(s, Lit("v"))}}, {Body: []Line{Comment(s)}},
		} {
			out, err := sj.Render()
			if err != nil {
				continue
			}
			if strings.Count(out, "\n") > 2 {
				t.Fatalf("%q rendered as more than one line:\n%s", s, out)
			}
		}
	})
}
