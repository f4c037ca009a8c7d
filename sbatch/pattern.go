package sbatch

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/gpuorch/gpuorch/internal/clip"
)

// FilePattern is a Slurm filename pattern, the value of --output, --error
// and --input. Slurm replaces %A (array job id), %a (array index), %j (job
// id), %J (job id.step), %x (job name), %u (user), %N (node), %n (node
// index), %s (step) and %t (task), each with an optional zero-padding width
// (%4j), and writes "%%" as one '%' (sbatch(1), "filename pattern").
//
// A '%' in text from a user — a directory, an experiment id — would be read
// as one of those: build patterns with LiteralPattern and PatternIn, which
// double it. Render refuses a pattern with a '%' that starts no symbol (a
// typo, or user text put in unescaped), and any backslash: Slurm 22.05
// drops the backslashes of a pattern that holds one and then replaces no
// symbol at all, so neither a literal backslash nor %a can be had.
type FilePattern string

// LiteralPattern is the pattern of exactly the file name s.
func LiteralPattern(s string) FilePattern {
	return FilePattern(strings.ReplaceAll(s, "%", "%%"))
}

// PatternIn is the pattern of name, a pattern of the caller's own (e.g.
// "tasks/%a/log"), in directory dir, literal text (cleaned as
// filepath.Join would).
func PatternIn(dir string, name FilePattern) FilePattern {
	if dir == "" {
		return name
	}
	c := filepath.Clean(dir)
	if c == "/" {
		return "/" + name
	}
	return LiteralPattern(c) + "/" + name
}

// patternSymbols are the letters Slurm 22.05 replaces after a '%'.
const patternSymbols = "AaJjNnstux"

// checkPattern reports what makes p no filename pattern (see FilePattern).
func checkPattern(option string, p FilePattern) error {
	s := string(p)
	if err := checkText(option, s); err != nil {
		return err
	}
	if strings.ContainsRune(s, '\\') {
		return fmt.Errorf("%s: %s: a backslash makes Slurm drop it and replace none of the pattern's symbols (%%A, %%a, %%j …); choose a path without one", option, clip.Quote(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		j := i + 1
		if j < len(s) && s[j] == '%' {
			i = j
			continue
		}
		for j < len(s) && j-i <= 2 && s[j] >= '0' && s[j] <= '9' { // a width of at most 2 digits
			j++
		}
		if j >= len(s) || strings.IndexByte(patternSymbols, s[j]) < 0 {
			return fmt.Errorf("%s: %s: '%%' at byte %d starts no filename pattern symbol (%%A %%a %%J %%j %%N %%n %%s %%t %%u %%x, with an optional width); write %%%% for a literal '%%' (sbatch.LiteralPattern does)", option, clip.Quote(s), i)
		}
		i = j
	}
	return nil
}

// patternOption reports whether an #SBATCH option name is --output,
// --error or --input, in full or abbreviated as sbatch's option parser
// accepts (at least two letters: "--out", "--err", "--in").
func patternOption(name string) bool {
	if len(name) < 2 {
		return false
	}
	for _, o := range []string{"output", "error", "input"} {
		if strings.HasPrefix(o, name) {
			return true
		}
	}
	return false
}
