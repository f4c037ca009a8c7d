package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/gpuorch/gpuorch/deploy"
	"github.com/gpuorch/gpuorch/internal/cliargs"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/taskrun"
	"github.com/urfave/cli/v2"
)

// loadgenCmd is the `gpuorch loadgen` group; other files add subcommands
// (plan, workloads) to it from their init functions.
var loadgenCmd = &cli.Command{
	Name:  "loadgen",
	Usage: "generate load against model servers and measure latency, throughput and SLO attainment",
	Description: `Open-loop arrivals (fixed, Poisson, gamma) run on an absolute, seeded timeline
and latency is measured from each request's intended send time, so a slow
server cannot hide its queueing (no coordinated omission). See docs/loadgen.md.`,
}

func init() {
	loadgenCmd.Subcommands = append(loadgenCmd.Subcommands, loadgenRunCmd)
	register(loadgenCmd)
}

var loadgenRunCmd = &cli.Command{
	Name:      "run",
	Usage:     "run one load test: from a task manifest, or from flags",
	ArgsUsage: "[WORKLOAD [PARAMS...]]",
	Description: `Two forms:

  gpuorch loadgen run --manifest tasks/0/manifest.json
      Runs one task of an experiment (what the executors call). Outputs go next
      to the manifest: summary.json, snapshots.jsonl (one line per interval) and
      metrics.lp (InfluxDB line protocol; also InfluxDB when configured).

  gpuorch loadgen run --target http://127.0.0.1:8000 --protocol kserve \
      --model resnet50 --arrival poisson --rate 500 --duration 30s
      An ad-hoc run from flags. Add --out DIR to keep the same files, --json to
      print the summary as JSON.

A named workload may also be given positionally, with its parameters after it
(Clockwork's form): gpuorch loadgen run --target URL WORKLOAD PARAMS...

Arrivals: poisson (exponential gaps), fixed (constant rate), gamma (--burstiness
= shape; 1 is Poisson, < 1 burstier), closed (--concurrency clients, each sending
the next request when the previous answers, after --think-time).

The sending thread asks for real-time priority (see --pacer-priority and
docs/loadgen.md): as root, or with CAP_SYS_NICE or an RLIMIT_RTPRIO, requests
leave on time even when the server under test shares the cores. The summary's
"pacer" field says what it got.

Exit codes: 0 completed, 1 failed, 2 bad flags or manifest, 3 target
unreachable, 130 interrupted (what was measured so far is still written).`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "manifest", Usage: "task manifest (JSON `FILE`, a loadgen.Config); outputs default to its directory"},
		&cli.StringFlag{Name: "shard", Usage: "a sharded task's part: `I/K` (shard I of K), slurm (SLURM_PROCID of the job step) or merge (the shards' summaries, once they ended); see docs/slurm.md"},
		&cli.StringFlag{Name: "out", Usage: "write summary.json, snapshots.jsonl and metrics.lp into `DIR`"},
		&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON on stdout"},
		&cli.BoolFlag{Name: "no-progress", Usage: "no live progress line even on a terminal"},
		&cli.StringFlag{Name: "target", Usage: "target `URL` (base URL for kserve/openai; the full URL for http)"},
		cliargs.Choice(&cli.StringFlag{Name: "protocol", Value: "http", Usage: "http, kserve, openai (/v1/completions) or openai-chat (/v1/chat/completions)"}, loadgen.Protocols...),
		&cli.StringSliceFlag{Name: "model", Usage: "model `NAME` (repeat for several; the rate is split evenly)"},
		cliargs.Choice(&cli.StringFlag{Name: "arrival", Usage: "poisson, fixed, gamma, closed, or a named workload (default poisson)"}, loadgen.Arrivals()...),
		&cli.Float64Flag{Name: "rate", Usage: "total requests/s (open loop)"},
		&cli.Float64Flag{Name: "burstiness", Usage: "gamma shape (1 = Poisson)"},
		&cli.IntFlag{Name: "concurrency", Usage: "closed-loop clients"},
		&cli.DurationFlag{Name: "think-time", Usage: "closed loop: pause between an answer and the next request"},
		&cli.Int64Flag{Name: "max-requests", Usage: "stop after this many requests"},
		&cli.DurationFlag{Name: "duration", Usage: "length of the schedule (e.g. 30s)"},
		&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "snapshot interval"},
		&cli.Int64Flag{Name: "seed", Usage: "random seed of the arrival schedule"},
		&cli.DurationFlag{Name: "timeout", Value: loadgen.DefaultTimeout, Usage: "per-request timeout"},
		&cli.DurationFlag{Name: "drain", Usage: "after the schedule, wait this long for answers before cancelling (default 5s)"},
		&cli.IntFlag{Name: "max-connections", Usage: "connection cap (default 4096); connections are opened as needed, and beyond the cap requests wait, the wait counting as send lateness"},
		cliargs.Choice(&cli.StringFlag{Name: "pacer-priority", Usage: "scheduling priority of the sending thread: auto (real-time when allowed and on 2+ CPUs, else nice -20, else normal), realtime, nice or normal; overrides the manifest"}, loadgen.PacerPriorities...),
		&cli.IntFlag{Name: "max-in-flight", Usage: "cap on outstanding requests; arrivals beyond it are counted as dropped (default 20000)"},
		&cli.StringFlag{Name: "method", Usage: "HTTP method for --protocol http (default GET)"},
		&cli.StringFlag{Name: "body", Usage: "request body for --protocol http"},
		&cli.StringSliceFlag{Name: "header", Usage: "extra request header `\"Name: value\"` (repeatable)"},
		&cli.StringFlag{Name: "credential-env", Usage: "environment variable holding a bearer token (the token is never logged)"},
		&cli.IntFlag{Name: "input-tokens", Usage: "LLM prompt length in tokens (default 128)"},
		&cli.IntFlag{Name: "output-tokens", Usage: "LLM answer length in tokens (default 32)"},
		&cli.BoolFlag{Name: "no-stream", Usage: "LLM: ask for a non-streamed answer"},
		&cli.DurationFlag{Name: "slo", Usage: "deadline per request, from its intended send time"},
		&cli.Float64Flag{Name: "slo-factor", Usage: "deadline = factor × the model's batch-1 latency (measured first)"},
		&cli.DurationFlag{Name: "ttft-slo", Usage: "LLM goodput: time-to-first-token limit"},
		&cli.DurationFlag{Name: "tpot-slo", Usage: "LLM goodput: time-per-output-token limit"},
		&cli.DurationFlag{Name: "e2el-slo", Usage: "LLM goodput: end-to-end latency limit"},
	},
	Action: loadgenRun,
}

// loadgenFlagsToConfig builds a Config from ad-hoc flags.
func loadgenFlagsToConfig(c *cli.Context) (*loadgen.Config, error) {
	if c.String("target") == "" {
		return nil, errors.New("give --manifest FILE, or --target URL with the workload flags")
	}
	cfg := &loadgen.Config{
		Seed:        c.Int64("seed"),
		Duration:    loadgen.Duration(c.Duration("duration")),
		Interval:    loadgen.Duration(c.Duration("interval")),
		Drain:       loadgen.Duration(c.Duration("drain")),
		MaxInFlight: c.Int("max-in-flight"),
		Target: loadgen.TargetConfig{
			URL: c.String("target"), Protocol: c.String("protocol"), Models: c.StringSlice("model"),
			Method: c.String("method"), Body: c.String("body"), Timeout: loadgen.Duration(c.Duration("timeout")),
			InputTokens: c.Int("input-tokens"), OutputTokens: c.Int("output-tokens"), NoStream: c.Bool("no-stream"),
			CredentialEnv: c.String("credential-env"), MaxConnections: c.Int("max-connections"),
		},
		Workload: loadgen.WorkloadConfig{
			Arrival: c.String("arrival"), Rate: c.Float64("rate"), Burstiness: c.Float64("burstiness"),
			Concurrency: c.Int("concurrency"), ThinkTime: loadgen.Duration(c.Duration("think-time")),
			MaxRequests: c.Int64("max-requests"),
		},
		SLO: loadgen.SLOConfig{
			Deadline: loadgen.Duration(c.Duration("slo")), Factor: c.Float64("slo-factor"),
			TTFT: loadgen.Duration(c.Duration("ttft-slo")), TPOT: loadgen.Duration(c.Duration("tpot-slo")),
			E2EL: loadgen.Duration(c.Duration("e2el-slo")),
		},
	}
	for _, h := range c.StringSlice("header") {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("bad --header %s: want \"Name: value\"", clip.Quote(h))
		}
		if cfg.Target.Headers == nil {
			cfg.Target.Headers = map[string]string{}
		}
		cfg.Target.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if args := c.Args().Slice(); len(args) > 0 {
		if cfg.Workload.Arrival != "" {
			return nil, fmt.Errorf("both --arrival %s and a positional workload %s given", cfg.Workload.Arrival, clip.Quote(args[0]))
		}
		cfg.Workload.Arrival, cfg.Workload.Args = args[0], args[1:]
	}
	if cfg.Workload.Arrival == "" {
		if cfg.Workload.Concurrency > 0 && cfg.Workload.Rate == 0 {
			cfg.Workload.Arrival = "closed"
		} else {
			cfg.Workload.Arrival = "poisson"
		}
	}
	return cfg, nil
}

func loadgenRun(c *cli.Context) error {
	var cfg *loadgen.Config
	outDir := c.String("out")
	if m := c.String("manifest"); m != "" {
		if c.IsSet("target") || c.Args().Len() > 0 {
			return errkind.Invalidf("--manifest runs the manifest as written; don't combine it with --target or a positional workload")
		}
		var err error
		if cfg, err = taskrun.ReadManifest(m); err != nil {
			return err
		}
		if outDir == "" {
			outDir = filepath.Dir(m)
		}
	} else {
		var err error
		if cfg, err = loadgenFlagsToConfig(c); err != nil {
			return errkind.Invalid(err)
		}
	}
	if c.IsSet("pacer-priority") {
		cfg.PacerPriority = c.String("pacer-priority")
	}
	w, err := taskrun.Prepare(cfg)
	if err != nil {
		if c.String("manifest") != "" {
			return fmt.Errorf("manifest %s: %w", c.String("manifest"), err)
		}
		return asFlagError(err, loadgenRunFlags)
	}
	if p := os.Getenv("GPUORCH_CPUPROFILE"); p != "" {
		// For profiling the load generator itself (docs/benchmarks.md).
		f, err := os.Create(p)
		if err != nil {
			return errkind.Invalid(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return errkind.Invalid(err)
		}
		defer pprof.StopCPUProfile()
	}
	if os.Getenv("GOGC") == "" {
		// The generator's heap is mostly buffers that live for the run:
		// collecting at 1.5× rather than 2× the live heap keeps 10,000
		// streams under 200 MB for ~1% of CPU (docs/benchmarks.md).
		debug.SetGCPercent(50)
	}
	jsonOut := c.Bool("json")
	opts := taskrun.Options{Dir: outDir, Shard: c.String("shard")}
	var prog *loadProgress
	if !jsonOut && !c.Bool("no-progress") && isTerminal(c.App.ErrWriter) {
		prog = &loadProgress{w: c.App.ErrWriter}
		opts.OnProgress = prog.update
	} else {
		opts.OnSnapshot = func(s loadgen.Snapshot) {
			slog.Info("interval", "i", s.Interval, "offered", s.Offered, "completed", s.Completed,
				"errors", s.Errors, "timeouts", s.Timeouts, "dropped", s.Dropped,
				"p99", s.Latency.P99, "lateness_p99", s.Lateness.P99)
		}
	}
	run := taskrun.Run
	if c.String("manifest") != "" && deploy.Planned(outDir) {
		run = deploy.RunTask // replicas first, then the load over them (docs/deployments.md)
	}
	sum, runErr := run(c.Context, cfg, w, opts)
	if prog != nil {
		prog.clear()
	}
	if sum != nil {
		if jsonOut {
			_ = printJSON(c.App.Writer, sum)
		} else {
			sum.WriteText(c.App.Writer)
		}
	}
	return loadRunErr(runErr, sum)
}

// loadgenRunFlags names the flag that sets each manifest key (for errors
// about flag values; see asFlagError).
var loadgenRunFlags = map[string]string{
	"duration": "--duration", "interval": "--interval", "drain": "--drain", "max_in_flight": "--max-in-flight",
	"pacer_priority": "--pacer-priority", "workload.arrival": "--arrival", "workload.rate": "--rate",
	"workload.burstiness": "--burstiness", "workload.concurrency": "--concurrency", "workload.think_time": "--think-time",
	"workload.max_requests": "--max-requests", "target.url": "--target", "target.protocol": "--protocol",
	"target.method": "--method", "target.headers": "--header", "target.timeout": "--timeout",
	"target.input_tokens": "--input-tokens", "target.output_tokens": "--output-tokens",
	"target.max_connections": "--max-connections", "slo.deadline": "--slo", "slo.factor": "--slo-factor",
	"slo.ttft": "--ttft-slo", "slo.tpot": "--tpot-slo", "slo.e2el": "--e2el-slo",
}

// asFlagError rewrites a *loadgen.FieldError about a key that a flag sets
// as an error about the flag ("--rate 1e-300: out of range; want …"),
// of kind errkind.ErrInvalid; other errors keep their kind.
func asFlagError(err error, flags map[string]string) error {
	var fe *loadgen.FieldError
	if errors.As(err, &fe) {
		if f, ok := flags[fe.Key]; ok {
			return errkind.Invalidf("%s %s: %s", f, fe.Value, fe.Want)
		}
	}
	return err
}

// loadRunErr gives the outcome of a load run its kind: an unreachable target
// (exit 3), an interruption with partial results written (130), or another
// failure (1).
func loadRunErr(runErr error, sum *loadgen.Summary) error {
	switch {
	case runErr == nil:
		return nil
	case errors.Is(runErr, errkind.ErrUnavailable):
		return runErr
	case sum != nil && sum.Status == loadgen.StatusInterrupted:
		return errkind.Interrupted(errors.New("interrupted; partial results written"))
	}
	return runErr
}

// loadProgress redraws one status line on a terminal.
type loadProgress struct {
	w    io.Writer
	mu   sync.Mutex
	last int
}

func (p *loadProgress) update(pr loadgen.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := pr.Line()
	pad := ""
	if n := len(line); n < p.last {
		pad = strings.Repeat(" ", p.last-n)
	}
	p.last = len(line)
	fmt.Fprint(p.w, "\r"+line+pad)
}

func (p *loadProgress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last > 0 {
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.last)+"\r")
	}
}
