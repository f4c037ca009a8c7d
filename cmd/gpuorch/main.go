// Command gpuorch orchestrates GPU-cluster benchmarks: serving experiments,
// training runs and GPU slices, on the local machine or through Slurm.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/urfave/cli/v2"
)

// Exit codes. They are part of the CLI contract and documented in docs/cli.md.
const (
	exitOK          = 0
	exitFailure     = 1 // the operation ran and failed (a task failed, a check did not pass)
	exitUsage       = 2 // bad flags, arguments or input files
	exitUnavailable = 3 // a service gpuorch needs (target, Slurm, InfluxDB) is unreachable
	exitInterrupted = 130
)

var version = "dev"

// commands is filled by the init functions of the files in this package, one
// file per command group, so that groups can be added without touching main.
var commands []*cli.Command

func register(c *cli.Command) { commands = append(commands, c) }

func newApp() *cli.App {
	sort.Slice(commands, func(i, j int) bool { return commands[i].Name < commands[j].Name })
	return &cli.App{
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
				return cli.Exit(fmt.Sprintf("bad --log-level %q: %v", c.String("log-level"), err), exitUsage)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newApp().RunContext(ctx, os.Args)
	if err == nil {
		return
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := ec.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "gpuorch:", msg)
		}
		os.Exit(ec.ExitCode())
	}
	fmt.Fprintln(os.Stderr, "gpuorch:", err)
	os.Exit(exitFailure)
}
