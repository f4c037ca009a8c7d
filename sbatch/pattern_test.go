package sbatch

import (
	"path/filepath"
	"strings"
	"testing"
)

// slurmExpand models how Slurm 22.05 turns a filename pattern (as sbatch
// read it off the #SBATCH line) into a file name: a pattern holding a
// backslash has its backslashes dropped and nothing replaced; otherwise
// "%%" is '%', and '%' with an optional width and a symbol of vals is its
// value; anything else stays as it is. TestFilePatternOnSlurm checks this
// model against real jobs.
func slurmExpand(p string, vals map[byte]string) string {
	if strings.ContainsRune(p, '\\') {
		return strings.ReplaceAll(p, `\`, "")
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+1 >= len(p) {
			b.WriteByte(p[i])
			continue
		}
		if p[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		j := i + 1
		for j < len(p) && p[j] >= '0' && p[j] <= '9' {
			j++
		}
		if v, ok := vals[p[min(j, len(p)-1)]]; ok && j < len(p) {
			b.WriteString(v) // widths are not modelled: the tests use none
			i = j
			continue
		}
		b.WriteByte('%')
	}
	return b.String()
}

var patternVals = map[byte]string{'A': "77", 'a': "3", 'j': "80", 'x': "name", 'u': "root"}

func TestFilePatterns(t *testing.T) {
	for _, tc := range []struct {
		dir, name string
		want      string // the #SBATCH --output value; "" when refused
		file      string // what Slurm makes of it
		err       string
	}{
		{"/runs/exp", "tasks/%a/log", "/runs/exp/tasks/%a/log", "/runs/exp/tasks/3/log", ""},
		{"/runs/50%x", "train.log", "/runs/50%%x/train.log", "/runs/50%x/train.log", ""},
		{"/runs/%j%%%", "%j.err", "/runs/%%j%%%%%%/%j.err", "/runs/%j%%%/80.err", ""},
		{"/runs/a b/", "log", `"/runs/a b/log"`, "/runs/a b/log", ""},
		{"/", "x-%A_%a", "/x-%A_%a", "/x-77_3", ""},
		{`/runs/a\b`, "log", "", "", "backslash"},
	} {
		p := PatternIn(tc.dir, FilePattern(tc.name))
		script, err := (&Job{Output: p}).Render()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "output") {
				t.Errorf("%q: err %v, want one about a %s in --output", tc.dir, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.dir, err)
			continue
		}
		line := "#SBATCH --output=" + tc.want + "\n"
		if !strings.Contains(script, line) {
			t.Errorf("%q: script lacks %q:\n%s", tc.dir, line, script)
		}
		v, _ := parseDirectiveValue(strings.TrimPrefix(strings.TrimSuffix(line, "\n"), "#SBATCH --output="))
		if got := slurmExpand(v, patternVals); got != tc.file {
			t.Errorf("%q: Slurm writes %q, want %q", tc.dir, got, tc.file)
		}
	}

	// A pattern that is not one: refused, on every pattern option.
	for _, tc := range []struct {
		job  Job
		want string
	}{
		{Job{Output: "/runs/50%/log"}, `output: "/runs/50%/log": '%' at byte 8`},
		{Job{Error: "/runs/%q"}, `error: "/runs/%q": '%' at byte 6`},
		{Job{Input: "/in/x%"}, `input: "/in/x%": '%' at byte 5`},
		{Job{Output: "/runs/%123j"}, `'%' at byte 6`},
		{Job{Error: `C:\runs`}, `error: "C:\\runs": a backslash`},
		{Job{Extra: []Option{{Name: "out", Value: "/x/%q"}}}, `out: "/x/%q": '%' at byte 3`},
		{Job{Extra: []Option{{Name: "err", Value: `/x\y`}}}, "a backslash"},
	} {
		if _, err := tc.job.Render(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.job, err, tc.want)
		}
	}
	for _, ok := range []FilePattern{"/a/%%", "/a/%A_%a.%4j-%x-%u-%N-%n-%s-%t-%J", "/a/100%%"} {
		if _, err := (&Job{Error: ok}).Render(); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// FuzzFilePattern: whatever directory a user chooses, the file Slurm opens
// for PatternIn(dir, name) is dir/name with only gpuorch's own symbols
// replaced — or the pattern is refused.
func FuzzFilePattern(f *testing.F) {
	for _, s := range append(hostile, "/runs/50%x", "%%", "%", "/a/%j%A%a", "/runs/%4j", "%%%", "100%") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dir string) {
		p := PatternIn(dir, "log-%A_%a")
		script, err := (&Job{Output: p, Error: LiteralPattern(dir)}).Render()
		if hasControl(dir) || strings.ContainsRune(dir, '\\') {
			if err == nil {
				t.Fatalf("dir %q accepted:\n%s", dir, script)
			}
			return
		}
		if err != nil {
			t.Fatalf("dir %q: %v", dir, err)
		}
		opts := headerOptions(t, script)
		clean := cleanDir(dir)
		if got, want := slurmExpand(opts["output"], patternVals), clean+"log-77_3"; got != want {
			t.Fatalf("dir %q: --output=%q makes Slurm write %q, want %q", dir, opts["output"], got, want)
		}
		if got := slurmExpand(opts["error"], patternVals); got != dir {
			t.Fatalf("dir %q: --error=%q makes Slurm write %q", dir, opts["error"], got)
		}
	})
}

// cleanDir is dir as PatternIn joins it: cleaned, with a trailing '/'.
func cleanDir(dir string) string {
	switch c := filepath.Clean(dir); {
	case dir == "":
		return ""
	case c == "/":
		return "/"
	default:
		return c + "/"
	}
}
