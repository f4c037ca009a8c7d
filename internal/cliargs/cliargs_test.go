package cliargs

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

func testApp() *cli.App {
	return &cli.App{
		Name:  "gpuorch",
		Flags: []cli.Flag{&cli.StringFlag{Name: "log-level"}},
		Commands: []*cli.Command{
			{Name: "render", Flags: []cli.Flag{
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}},
				&cli.GenericFlag{Name: "set", Value: &cli.StringSlice{}},
				&cli.BoolFlag{Name: "json"},
			}},
			{Name: "status", Flags: []cli.Flag{&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}}, &cli.DurationFlag{Name: "interval"}}},
			{Name: "results", Subcommands: []*cli.Command{
				{Name: "report", Flags: []cli.Flag{&cli.StringFlag{Name: "output", Aliases: []string{"o"}}}},
			}},
			{Name: "nodes", Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}}, Subcommands: []*cli.Command{{Name: "probe", Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}}}}},
			{Name: "slice", Subcommands: []*cli.Command{{Name: "plan", Flags: []cli.Flag{&cli.StringFlag{Name: "pools"}, &cli.BoolFlag{Name: "script"}}}}},
			{Name: "bench", Subcommands: []*cli.Command{{Name: "task", SkipFlagParsing: true}}},
			{Name: "loadgen", Subcommands: []*cli.Command{{Name: "plan", Flags: []cli.Flag{&cli.DurationFlag{Name: "duration"}}}}},
			// A leaf urfave/cli has run once: it has gained a "help" subcommand.
			{Name: "run", Subcommands: []*cli.Command{{Name: "help"}}, Flags: []cli.Flag{&cli.BoolFlag{Name: "dry-run"}}},
		},
	}
}

func TestFlagsFirst(t *testing.T) {
	cases := []struct{ in, want string }{
		{"render spec.toml -o out/", "render -o out/ spec.toml"},
		{"render spec.toml --output=out/ --json", "render --output=out/ --json spec.toml"},
		{"render --json spec.toml --set a=1 --set b=2", "render --json --set a=1 --set b=2 spec.toml"},
		{"status EXP --watch", "status --watch EXP"},
		{"status EXP -w --interval 5s", "status -w --interval 5s EXP"},
		{"--log-level debug status EXP --watch", "--log-level debug status --watch EXP"},
		{"results report EXP -o r.html", "results report -o r.html EXP"},
		{"render spec.toml --help", "render --help spec.toml"},
		{"render spec.toml --bogus", "render --bogus spec.toml"}, // the parser reports it
		{"run spec.toml --dry-run", "run --dry-run spec.toml"},
		{"run - --dry-run", "run --dry-run -"},
		// Negative numbers are arguments; -- ends the flags.
		{"loadgen plan slo-exp-1 -1 2 --duration 1s", "loadgen plan --duration 1s slo-exp-1 -1 2"},
		{"slice plan --pools p.toml --script -- python -u serve.py --port 1", "slice plan --pools p.toml --script -- python -u serve.py --port 1"},
		{"slice plan --script python -- -u --pools x", "slice plan --script python -- -u --pools x"},
		// Not reordered: groups, unknown commands, commands that parse their
		// own arguments, a flag missing its value.
		{"results shwo --json", "results shwo --json"},
		{"nodes --json probe", "nodes --json probe"},
		{"nodes probe x --json", "nodes probe --json x"},
		{"bogus x --json", "bogus x --json"},
		{"bench task loadgen run --manifest m.json", "bench task loadgen run --manifest m.json"},
		{"render spec.toml -o", "render spec.toml -o"},
		{"render spec.toml --generate-bash-completion", "render spec.toml --generate-bash-completion"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			in := append([]string{"gpuorch"}, strings.Fields(c.in)...)
			got := strings.Join(FlagsFirst(testApp(), in)[1:], " ")
			if got != c.want {
				t.Fatalf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}

// The reordered line parses as intended through urfave/cli itself.
func TestFlagsFirstParses(t *testing.T) {
	var out, spec string
	app := &cli.App{Name: "gpuorch", ExitErrHandler: func(*cli.Context, error) {}, Commands: []*cli.Command{{
		Name:  "render",
		Flags: []cli.Flag{&cli.StringFlag{Name: "output", Aliases: []string{"o"}}},
		Action: func(c *cli.Context) error {
			out, spec = c.String("output"), strings.Join(c.Args().Slice(), ",")
			return nil
		},
	}}}
	if err := app.Run(FlagsFirst(app, []string{"gpuorch", "render", "spec.toml", "-o", "out/"})); err != nil {
		t.Fatal(err)
	}
	if out != "out/" || spec != "spec.toml" {
		t.Fatalf("output %q, args %q", out, spec)
	}
}

func TestChoice(t *testing.T) {
	var got string
	app := &cli.App{Name: "gpuorch", ExitErrHandler: func(*cli.Context, error) {}, Commands: []*cli.Command{{
		Name:   "run",
		Flags:  []cli.Flag{Choice(&cli.StringFlag{Name: "executor"}, "local", "slurm"), Choice(&cli.StringFlag{Name: "arch", Value: "amd64"}, "", "amd64", "arm64")},
		Action: func(c *cli.Context) error { got = c.String("executor") + "/" + c.String("arch"); return nil },
	}}}
	for _, c := range []struct {
		args []string
		want string // "" for a refusal
	}{
		{[]string{"run", "--executor", "slurm"}, "slurm/amd64"},
		{[]string{"run"}, "/amd64"}, // defaults are not checked
		{[]string{"run", "--arch", ""}, "/"},
		{[]string{"run", "--executor", "bogus"}, ""},
		{[]string{"run", "--arch", "bogus"}, ""},
	} {
		got = ""
		err := app.Run(append([]string{"gpuorch"}, c.args...))
		if c.want != "" {
			if err != nil || got != c.want {
				t.Errorf("%v: %q, %v; want %q", c.args, got, err, c.want)
			}
			continue
		}
		if !errors.Is(err, errkind.ErrInvalid) || got != "" || !strings.Contains(err.Error(), `"bogus" (want one of`) {
			t.Errorf("%v: ran (%q) or %v; want refused as bad input before running", c.args, got, err)
		}
	}
}

// FuzzFlagsFirst: whatever the line, the result is the same words — the
// flags (with their values) in their order, then the arguments in theirs —
// and reordering again changes nothing.
func FuzzFlagsFirst(f *testing.F) {
	f.Add("render spec.toml -o out/ --json")
	f.Add("status EXP --watch --interval 5s x")
	f.Add("slice plan --pools p --script -- python -u x")
	f.Add("render -o")
	f.Add("results report EXP -o=r.html -- -x")
	f.Fuzz(func(t *testing.T, line string) {
		app := testApp()
		in := append([]string{"gpuorch"}, strings.Fields(line)...)
		out := FlagsFirst(app, in)
		if len(out) != len(in) {
			t.Fatalf("%q -> %q: words lost or added", in, out)
		}
		a, b := slices.Clone(in), slices.Clone(out)
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			t.Fatalf("%q -> %q: not the same words", in, out)
		}
		if again := FlagsFirst(app, out); !slices.Equal(again, out) {
			t.Fatalf("%q -> %q -> %q: not stable", in, out, again)
		}
	})
}
