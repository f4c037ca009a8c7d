package sbatch

import (
	"fmt"
	"strings"
)

// Arg is one shell word of a command, built from literal text and variable
// references. Literal text is always quoted; variables are expanded inside
// double quotes, so neither can split into several words or run as code.
// The zero Arg is the empty word (”).
type Arg struct {
	parts []argPart
}

type argPart struct {
	lit   string
	name  string // variable name when isVar
	isVar bool
}

// Lit is a word of literal text (a user value): it reaches the command
// byte for byte.
func Lit(s string) Arg { return Arg{parts: []argPart{{lit: s}}} }

// Var is a word holding the value of the shell variable name, e.g.
// Var("SLURM_ARRAY_TASK_ID"). The name must be a valid variable name;
// Render reports an error otherwise.
func Var(name string) Arg { return Arg{parts: []argPart{{name: name, isVar: true}}} }

// Cat joins several parts into one word, e.g.
// Cat(Var("EXPDIR"), Lit("/tasks/"), Var("SLURM_ARRAY_TASK_ID")).
func Cat(parts ...Arg) Arg {
	var a Arg
	for _, p := range parts {
		a.parts = append(a.parts, p.parts...)
	}
	return a
}

// Lits turns argv strings into literal words.
func Lits(argv ...string) []Arg {
	out := make([]Arg, len(argv))
	for i, s := range argv {
		out[i] = Lit(s)
	}
	return out
}

func (a Arg) render(field string) (string, error) {
	if len(a.parts) == 0 {
		return "''", nil
	}
	var b strings.Builder
	for _, p := range a.parts {
		if p.isVar {
			if !ValidName(p.name) {
				return "", fmt.Errorf("%s: invalid variable name %q", field, p.name)
			}
			b.WriteString(`"${` + p.name + `}"`)
			continue
		}
		if strings.IndexByte(p.lit, 0) >= 0 {
			return "", fmt.Errorf("%s: NUL byte in %q", field, p.lit)
		}
		if p.lit == "" {
			if len(a.parts) == 1 {
				b.WriteString("''")
			}
			continue
		}
		// Quote leaves only [A-Za-z0-9-_./,:@%+] bare: no tilde, glob,
		// assignment or expansion can come of it.
		b.WriteString(Quote(p.lit))
	}
	return b.String(), nil
}

// Line is one line of a script body. Build lines with Command, Exec, Export,
// Comment and Raw.
type Line struct {
	kind    lineKind
	args    []Arg
	name    string
	value   Arg
	text    string
	env     []EnvVar
	stdout  *Arg
	appendO bool
}

type lineKind int

const (
	lineCommand lineKind = iota
	lineExec
	lineExport
	lineComment
	lineRaw
	lineBlank
)

// Command is a command line: args[0] is the program, every word quoted.
func Command(args ...Arg) Line { return Line{kind: lineCommand, args: args} }

// CommandArgv is Command over literal words only.
func CommandArgv(argv ...string) Line { return Command(Lits(argv...)...) }

// Exec is a command that replaces the shell (exec argv...), so signals sent
// to the batch step reach the program directly.
func Exec(args ...Arg) Line { return Line{kind: lineExec, args: args} }

// WithEnv prefixes a command with variable assignments valid for that
// command only (NAME=value cmd ...).
func (l Line) WithEnv(env ...EnvVar) Line { l.env = append(l.env, env...); return l }

// AppendTo redirects the command's stdout and stderr to the end of a file.
func (l Line) AppendTo(path Arg) Line { l.stdout = &path; l.appendO = true; return l }

// Export sets and exports a variable for the rest of the script.
func Export(name string, value Arg) Line { return Line{kind: lineExport, name: name, value: value} }

// Comment is a "# text" line; text must be a single line.
func Comment(text string) Line { return Line{kind: lineComment, text: text} }

// Blank is an empty line.
func Blank() Line { return Line{kind: lineBlank} }

// Raw is a line of trusted template code, written as is. Never put user
// values in a Raw line: use Command/Export with Lit instead. Raw text may
// span several lines.
func Raw(code string) Line { return Line{kind: lineRaw, text: code} }

// EnvVar is one environment variable.
type EnvVar struct {
	Name  string
	Value Arg
}

// Env is an EnvVar with a literal value.
func Env(name, value string) EnvVar { return EnvVar{Name: name, Value: Lit(value)} }

func renderWords(field string, args []Arg) (string, error) {
	if len(args) == 0 {
		return "", fmt.Errorf("%s: empty command", field)
	}
	words := make([]string, len(args))
	for i, a := range args {
		w, err := a.render(field)
		if err != nil {
			return "", err
		}
		words[i] = w
	}
	return strings.Join(words, " "), nil
}

func renderAssign(field string, e EnvVar) (string, error) {
	if !ValidName(e.Name) {
		return "", fmt.Errorf("%s: invalid variable name %q", field, e.Name)
	}
	v, err := e.Value.render(field + " " + e.Name)
	if err != nil {
		return "", err
	}
	return e.Name + "=" + v, nil
}

func (l Line) render(field string) (string, error) {
	switch l.kind {
	case lineCommand, lineExec:
		var prefix []string
		if l.kind == lineExec {
			prefix = append(prefix, "exec")
		}
		for _, e := range l.env {
			a, err := renderAssign(field, e)
			if err != nil {
				return "", err
			}
			prefix = append(prefix, a)
		}
		cmd, err := renderWords(field, l.args)
		if err != nil {
			return "", err
		}
		if len(prefix) > 0 {
			cmd = strings.Join(prefix, " ") + " " + cmd
		}
		if l.stdout != nil {
			p, err := l.stdout.render(field + " redirect")
			if err != nil {
				return "", err
			}
			cmd += " >>" + p + " 2>&1"
		}
		return cmd, nil
	case lineExport:
		a, err := renderAssign(field, EnvVar{Name: l.name, Value: l.value})
		if err != nil {
			return "", err
		}
		return "export " + a, nil
	case lineComment:
		if err := checkText(field+" comment", l.text); err != nil {
			return "", err
		}
		return "# " + l.text, nil
	case lineBlank:
		return "", nil
	case lineRaw:
		return l.text, nil
	}
	return "", fmt.Errorf("%s: unknown line kind %d", field, l.kind)
}
