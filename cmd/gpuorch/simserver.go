package main

import (
	"fmt"
	"net"

	"github.com/BurntSushi/toml"
	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/loadgen/simserver"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "sim-server",
		Usage:     "serve simulated models over KServe v2 and the OpenAI API (for demos, tests and dry runs)",
		UsageText: "gpuorch sim-server [--config FILE] [--dnn SPEC]... [--llm SPEC]... [--listen ADDR] [--addr-file PATH]",
		Description: `A real HTTP server on loopback that answers like a model server but runs no
model: every response arrives when its latency model says it would.

DNN models (Clockwork-style): a batch of b requests takes b1 × (1 + batch_alpha × (b−1));
requests queue FIFO per model; a request with header X-Request-Deadline-Ms that
cannot finish in time gets 503 with X-Dropped: deadline, as early as that is known.
LLM models: TTFT = queueing + ttft_base + prefill_per_token × prompt tokens, then
one token per tpot; at most 'concurrency' requests generate at once.

Models come from --config (TOML, see examples/sim-models.toml) and/or flags:
  --dnn resnet50_v2:copies=4000:b1=3ms:max_batch=16     serves resnet50_v2-0 … resnet50_v2-3999
  --llm sim-llm:prefill_per_token=1ms:tpot=10ms:concurrency=8
With neither, it serves 16 copies of resnet50_v2 and one LLM named sim-llm.

Endpoints: /v2/health/{live,ready}, /v2/models/NAME[/ready|/infer], /v1/models,
/v1/completions, /v1/chat/completions (stream or not), /stats (JSON), /metrics,
/truth (with --truth-records: when each streamed chunk was written, JSON lines).

Examples:
  gpuorch sim-server --config examples/sim-models.toml
  gpuorch sim-server --listen 127.0.0.1:0 --addr-file /tmp/sim.addr --dnn resnet50_v2:copies=4000 &
  curl -s http://$(cat /tmp/sim.addr)/v2/models/resnet50_v2-7/infer \
    -d '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}'

See docs/sim-server.md.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "TOML file with [server], [[dnn]] and [[llm]] entries"},
			&cli.StringFlag{Name: "listen", Usage: "address to listen on; port 0 picks a free one (default: the config's server.listen, else " + simserver.DefaultListen + ")"},
			&cli.StringFlag{Name: "addr-file", Usage: "write the bound host:port to this file once listening (for scripts)"},
			&cli.StringSliceFlag{Name: "dnn", Usage: "add a DNN model: NAME[:key=value]... (keys: copies, b1, max_batch, batch_alpha, instances, jitter, drop, output_shape)"},
			&cli.StringSliceFlag{Name: "llm", Usage: "add an LLM model: NAME[:key=value]... (keys: copies, prefill_per_token, ttft_base, tpot, concurrency, batch_slowdown, max_tokens, eos_after)"},
			&cli.IntFlag{Name: "workers", Value: -1, Usage: "simulated GPUs shared by all DNN models (0: each model has its own executor) (default: the config's, else 0)"},
			&cli.Float64Flag{Name: "fail-rate", Value: -1, Usage: "fraction of inference requests answered 500 (default: the config's, else 0)"},
			&cli.Float64Flag{Name: "hang-rate", Value: -1, Usage: "fraction of inference requests never answered until the client gives up (default: the config's, else 0)"},
			&cli.Uint64Flag{Name: "seed", Usage: "seed of the fail/hang draws (default: the config's, else 0)"},
			&cli.IntFlag{Name: "truth-records", Value: -1, Usage: "record when every streamed chunk was written, keeping up to `N` requests for GET /truth (0: off) (default: the config's, else 0)"},
			&cli.BoolFlag{Name: "print-config", Usage: "print the effective configuration (TOML, defaults filled in) and exit"},
		},
		Action: simServerAction,
	})
}

func simServerAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return errkind.Invalidf("sim-server takes no arguments (got %s)", clip.Quote(c.Args().First()))
	}
	var cfg simserver.Config
	if path := c.String("config"); path != "" {
		var err error
		if cfg, err = simserver.LoadFile(path); err != nil {
			return errkind.Invalid(err)
		}
	}
	for _, s := range c.StringSlice("dnn") {
		d, _, err := simserver.ParseModelFlag("dnn", s)
		if err != nil {
			return errkind.Invalid(err)
		}
		cfg.DNN = append(cfg.DNN, *d)
	}
	for _, s := range c.StringSlice("llm") {
		_, l, err := simserver.ParseModelFlag("llm", s)
		if err != nil {
			return errkind.Invalid(err)
		}
		cfg.LLM = append(cfg.LLM, *l)
	}
	if len(cfg.DNN)+len(cfg.LLM) == 0 {
		def := simserver.DefaultModels()
		cfg.DNN, cfg.LLM = def.DNN, def.LLM
	}
	if c.IsSet("listen") {
		cfg.Server.Listen = c.String("listen")
	}
	if cfg.Server.Listen == "" {
		cfg.Server.Listen = simserver.DefaultListen
	}
	if c.Int("workers") >= 0 {
		cfg.Server.Workers = c.Int("workers")
	}
	if c.Float64("fail-rate") >= 0 {
		cfg.Server.FailRate = c.Float64("fail-rate")
	}
	if c.Float64("hang-rate") >= 0 {
		cfg.Server.HangRate = c.Float64("hang-rate")
	}
	if c.IsSet("seed") {
		cfg.Server.Seed = c.Uint64("seed")
	}
	if c.Int("truth-records") >= 0 {
		cfg.Server.TruthRecords = c.Int("truth-records")
	}
	srv, err := simserver.New(cfg)
	if err != nil {
		return errkind.Invalid(err)
	}
	if c.Bool("print-config") {
		return toml.NewEncoder(c.App.Writer).Encode(srv.Config())
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return errkind.Unavailablef("sim-server: listen on %s: %w", cfg.Server.Listen, err)
	}
	addr := ln.Addr().String()
	if path := c.String("addr-file"); path != "" {
		// Atomically, so a script polling for the file never reads half an address.
		if err := atomicfile.WriteFile(path, []byte(addr+"\n"), 0o644); err != nil {
			ln.Close()
			return fmt.Errorf("sim-server: write --addr-file: %w", err)
		}
	}
	fmt.Fprintf(c.App.ErrWriter, "gpuorch sim-server: %d models (%d DNN entries, %d LLM entries); listening on %s\n",
		srv.NumModels(), len(cfg.DNN), len(cfg.LLM), addr)
	if err := srv.Serve(c.Context, ln); err != nil {
		return err
	}
	fmt.Fprintln(c.App.ErrWriter, "gpuorch sim-server: stopped")
	return nil
}
