// Command gpuorch orchestrates GPU-cluster benchmarks: serving experiments,
// training runs and GPU slices, on the local machine or through Slurm.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/internal/cliargs"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
)

// Exit codes. They are part of the CLI contract and documented in docs/cli.md;
// exitCode is the one place an error becomes one.
const (
	exitOK          = 0
	exitFailure     = 1 // the operation ran and failed (a task failed, a check did not pass)
	exitUsage       = 2 // bad flags, arguments or input files
	exitUnavailable = 3 // a service gpuorch needs (target, Slurm, InfluxDB) is unreachable
	exitInterrupted = 130
)

// exitCode maps an error's kind (internal/errkind) to the exit code.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errkind.ErrInterrupted), errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, errkind.ErrInvalid):
		return exitUsage
	case errors.Is(err, errkind.ErrUnavailable):
		return exitUnavailable
	}
	return exitFailure
}

var version = "dev"

// commands is filled by the init functions of the files in this package, one
// file per command group, so that groups can be added without touching main.
var commands []*cli.Command

func register(c *cli.Command) { commands = append(commands, c) }

func newApp() *cli.App {
	sort.Slice(commands, func(i, j int) bool { return commands[i].Name < commands[j].Name })
	app := &cli.App{
		Name:                 "gpuorch",
		Usage:                "benchmark GPU clusters: serving experiments, training runs and GPU slices, locally or through Slurm",
		Version:              version,
		EnableBashCompletion: true,
		Suggest:              true,
		Commands:             commands,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "log level: debug, info, warn, error", EnvVars: []string{"GPUORCH_LOG_LEVEL"}},
		},
		Before: func(c *cli.Context) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return errkind.Invalidf("bad --log-level %s: want debug, info, warn or error", clip.Quote(c.String("log-level")))
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
		Action:       groupAction,
		OnUsageError: usageError,
		// Errors go back to main, which prints them and picks the exit code;
		// urfave/cli must not exit by itself.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	strictCommands(app.Commands)
	return app
}

// strictCommands makes every command report bad flags as usage errors and
// every command group refuse an unknown subcommand (urfave/cli would print
// "No help topic" and exit 3, the code for an unreachable service).
func strictCommands(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
		if len(c.Subcommands) > 0 {
			if c.Action == nil {
				c.Action = groupAction
			}
			strictCommands(c.Subcommands)
		}
	}
}

func usageError(_ *cli.Context, err error, _ bool) error { return errkind.Invalid(err) }

// groupAction runs when a command group (or gpuorch itself) is given no
// known subcommand: help without arguments, an error with one.
func groupAction(c *cli.Context) error {
	root := c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name
	if c.NArg() == 0 {
		if root {
			return cli.ShowAppHelp(c)
		}
		return cli.ShowSubcommandHelp(c)
	}
	subs, name, msg := c.App.Commands, c.App.Name, ""
	if !root {
		subs, name = c.Command.Subcommands, c.App.Name+" "+c.Command.Name
		msg = c.Command.Name + ": "
	}
	msg += "unknown command " + clip.Quote(c.Args().First())
	if arg := c.Args().First(); len(arg) <= clip.Max { // no command is longer; suggesting costs len²
		if s := cli.SuggestCommand(subs, arg); s != "" {
			msg += ". " + s
		}
	}
	return errkind.Invalidf("%s (see %s --help)", msg, name)
}

// printJSON writes v as indented JSON: every --json output goes through it.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONOrText writes v with printJSON under --json, else with text.
func printJSONOrText(c *cli.Context, v any, text func(io.Writer) error) error {
	if c.Bool("json") {
		return printJSON(c.App.Writer, v)
	}
	return text(c.App.Writer)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, newApp(), os.Args, os.Stderr))
}

// run runs the app and returns the exit code, having printed the error (if
// any, and not already reported) to stderr.
// Flags may follow the arguments (cliargs.FlagsFirst). The message is
// limited (clip.Message): a value echoed in it may be megabytes long.
func run(ctx context.Context, app *cli.App, args []string, stderr io.Writer) int {
	err := app.RunContext(ctx, cliargs.FlagsFirst(app, args))
	if err != nil && !errkind.IsReported(err) && err.Error() != "" {
		fmt.Fprintln(stderr, "gpuorch:", clip.Message(err.Error()))
	}
	return exitCode(err)
}
