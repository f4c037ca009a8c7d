// Package cliargs holds what every gpuorch command does with its command
// line before and around urfave/cli's parsing: flags written after the
// positional arguments (FlagsFirst), and flags whose value must be one of
// a fixed set (Choice).
package cliargs

import (
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
)

// FlagsFirst returns args (args[0] is the program) with the flags of the
// command they run moved in front of its positional arguments, so that
// `gpuorch render spec.toml -o out/` parses as `gpuorch render -o out/
// spec.toml` (urfave/cli, like Go's flag package, stops at the first
// positional argument). The command's own flag definitions say which flags
// take a value: `-o out/` moves as a pair, `--json` alone. Everything after
// `--` stays where it is, as do negative numbers and `-` (stdin). Only a
// command without subcommands is reordered (a command group's unknown
// word stays an unknown command), and not one that parses its arguments
// itself (SkipFlagParsing). Relative order is kept among the flags and
// among the arguments.
func FlagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 || args[len(args)-1] == "--generate-bash-completion" {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	flags, subs := withHelp(app.Flags), app.Commands
	for {
		// This level's flags before its first word stay as they are.
		i := 0
		for i < len(rest) && isFlag(rest[i]) {
			i += 1 + valueTokens(flags, rest, i)
		}
		i = min(i, len(rest))
		out, rest = append(out, rest[:i]...), rest[i:]
		if len(rest) == 0 || rest[0] == "--" {
			return append(out, rest...)
		}
		cmd := find(subs, rest[0])
		if cmd == nil {
			return append(out, rest...) // an unknown command: the group says so
		}
		out, rest = append(out, rest[0]), rest[1:]
		if cmd.SkipFlagParsing {
			return append(out, rest...)
		}
		flags, subs = withHelp(cmd.Flags), cmd.Subcommands
		if hasSubcommands(cmd) {
			continue
		}
		return append(out, reorder(flags, rest)...)
	}
}

// reorder puts a leaf command's flags (with their values) before its
// positional arguments.
func reorder(flags []cli.Flag, rest []string) []string {
	var fl, pos []string
	for i := 0; i < len(rest); i++ {
		tok := rest[i]
		if tok == "--" {
			pos = append(pos, rest[i:]...)
			break
		}
		if !isFlag(tok) {
			pos = append(pos, tok)
			continue
		}
		n := valueTokens(flags, rest, i)
		if i+n >= len(rest) || (n == 1 && rest[i+1] == "--") {
			// A flag that wants a value and has none: moved, it would
			// take an argument as its value. Leave the line as written.
			return rest
		}
		fl = append(fl, rest[i:i+1+n]...)
		i += n
	}
	return append(fl, pos...)
}

var negativeNumber = regexp.MustCompile(`^-[0-9.]`)

// isFlag reports whether tok is written as a flag.
func isFlag(tok string) bool {
	return len(tok) > 1 && tok[0] == '-' && tok != "--" && !negativeNumber.MatchString(tok)
}

// valueTokens is how many tokens after rest[i], a flag, are its value: 1
// for a flag that takes a value written as `-o VALUE`, else 0 (`-o=VALUE`,
// a boolean flag, an unknown flag, which the parser then reports).
func valueTokens(flags []cli.Flag, rest []string, i int) int {
	name := strings.TrimLeft(rest[i], "-")
	if strings.Contains(name, "=") {
		return 0
	}
	for _, f := range flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		if d, ok := f.(cli.DocGenerationFlag); ok && d.TakesValue() {
			return 1
		}
		return 0
	}
	return 0
}

func withHelp(flags []cli.Flag) []cli.Flag {
	if cli.HelpFlag == nil {
		return flags
	}
	return append(slices.Clip(flags), cli.HelpFlag)
}

// hasSubcommands reports whether c is a command group: urfave/cli adds a
// "help" subcommand to every command it has run, which does not count.
func hasSubcommands(c *cli.Command) bool {
	for _, s := range c.Subcommands {
		if s.Name != "help" {
			return true
		}
	}
	return false
}

func find(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// Choice makes f refuse, before its command runs, a value that is not one
// of values: bad input (exit 2), with the values allowed:
// `--executor: unknown executor "k8s" (want one of local, slurm)`.
func Choice(f *cli.StringFlag, values ...string) *cli.StringFlag {
	f.Action = func(_ *cli.Context, v string) error {
		if slices.Contains(values, v) {
			return nil
		}
		shown := make([]string, len(values))
		for i, s := range values {
			if shown[i] = s; s == "" {
				shown[i] = `""`
			}
		}
		return errkind.Invalidf("--%s: unknown %s %s (want one of %s)", f.Name, strings.ReplaceAll(f.Name, "-", " "), clip.Quote(v), strings.Join(shown, ", "))
	}
	return f
}
