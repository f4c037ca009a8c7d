package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gpuorch/gpuorch/internal/cliargs"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/llmbench"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/perfmodel"
	"github.com/gpuorch/gpuorch/sbatch"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

func init() {
	specArg := "SPEC (TOML or JSON benchmark spec; see docs/bench.md)"
	register(&cli.Command{
		Name:  "bench",
		Usage: "LLM serving benchmarks: TTFT, TPOT, ITL, E2EL per concurrency level, measured or simulated",
		Description: `A benchmark spec names the model (a local server command or SIF image
started inside each task, or a cloud OpenAI-compatible URL with a credential),
the concurrency levels to sweep, the prompt lengths (configuration) or
prompt files (dataset), the cluster and nodes. One closed-loop task per level
sends num_prompts requests (default 3 × the level).

  gpuorch bench plan examples/bench-sim.toml       # everything that will happen
  gpuorch bench simulate examples/bench-llama.toml # roofline prediction, no GPU needed
  gpuorch bench run --yes examples/bench-sim.toml  # run it (asks on a terminal without --yes)
  gpuorch bench show bench-sim                     # measured vs predicted
  gpuorch bench new > my.toml                      # build a spec by answering questions
  gpuorch bench step step1.json                    # the workflow, one step payload at a time`,
		Subcommands: []*cli.Command{
			{
				Name: "plan", Usage: "check a spec against the inventory and print everything that will happen", ArgsUsage: specArg,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the plan as JSON"},
					&cli.BoolFlag{Name: "simulate", Usage: "also print the predicted values"},
				},
				Action: benchPlan,
			},
			{
				Name: "run", Usage: "run a benchmark (or --simulate it)", ArgsUsage: specArg,
				Description: `Validates the spec (nodes against the inventory, datasets, the model, the
credential; a cloud endpoint must accept the credential), shows the plan and
asks for confirmation on a terminal; --yes skips the question (required when
stdin is not a terminal). Then it creates the experiment and runs one task per
concurrency level through the executor (local, or one Slurm array job). The
prediction, when the spec allows one, is stored beside the measurements.
Exit codes: 0 done, 1 a task failed, 2 bad spec or not confirmed, 3 the
endpoint or Slurm is unreachable, 130 interrupted.`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation"},
					&cli.BoolFlag{Name: "simulate", Usage: "predict instead of running (same as bench simulate)"},
					cliargs.Choice(&cli.StringFlag{Name: "executor", Usage: "local or slurm", DefaultText: "local for cluster \"local\", else slurm"}, orchestrator.ExecutorNames()...),
					&cli.BoolFlag{Name: "per-request", Usage: "write per-request rows (tasks/<i>/requests.jsonl)"},
					&cli.BoolFlag{Name: "json", Usage: "print {id, dir, state} as JSON when done"},
					&cli.StringFlag{Name: "resume", Usage: "resume benchmark experiment `EXP`: run its levels that did not complete (no SPEC)"},
					&cli.StringFlag{Name: "binary", Usage: "gpuorch binary the tasks run (default: this one)", Hidden: true},
				},
				Action: benchRun,
			},
			{
				Name: "simulate", Usage: "predict TTFT, TPOT, E2EL and throughput per level with a roofline model", ArgsUsage: specArg,
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print predictions as JSON"}},
				Action: benchSimulate,
			},
			{
				Name: "show", Usage: "a benchmark's metrics per level, beside the prediction with its error", ArgsUsage: "EXP",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
					&cli.BoolFlag{Name: "per-request", Usage: "print the per-request rows (needs run --per-request)"},
				},
				Action: benchShow,
			},
			{
				Name: "new", Usage: "build a spec by answering questions on stdin",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the spec to `FILE` (default stdout)"}},
				Action: benchNew,
			},
			{
				Name: "step", Usage: "apply one workflow step payload (JSON, steps 1-8); step 8 with trigger_workflow runs or simulates", ArgsUsage: "FILE.json|-",
				Description: `The benchmark workflow as step payloads (docs/bench.md): 1 basic info, 2 tokens
or datasets, 3 cluster, 4 nodes, 5 model, 6 credential (cloud models),
7 user_confirmation, 8 run_as_simulation + trigger_workflow. The first payload
(without workflow_id) creates a workflow; later ones name it. A workflow_id
gpuorch did not issue continues --workflow ID, or the one workflow in
progress of the payload's name, which then answers to it. Ids of clusters,
models and datasets are looked up in the registries (bench clusters|models|
datasets). Each payload is checked, merged and saved under
$GPUORCH_HOME/workflows/<id>.json; the state is printed. --show ID prints a
saved workflow.`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the workflow state as JSON"},
					&cli.StringFlag{Name: "show", Usage: "print workflow `ID` and exit"},
					&cli.StringFlag{Name: "workflow", Usage: "continue workflow `ID` (a payload without workflow_id, or with one gpuorch did not issue)"},
					&cli.StringFlag{Name: "binary", Usage: "gpuorch binary the tasks run", Hidden: true},
				},
				Action: benchStep,
			},
			registryCmd(llmbench.Clusters, "clusters", `"local"|SLURM-CLUSTER`, &cli.StringSliceFlag{Name: "node", Usage: "`NAME=NODE`: a node the payloads name NAME is the inventory's NODE (repeatable)"}),
			registryCmd(llmbench.Models, "models", "MODEL.json (the [model] keys)"),
			registryCmd(llmbench.Datasets, "datasets", "FILE (ShareGPT JSON or JSONL)"),
			{
				Name: "task", Hidden: true, SkipFlagParsing: true,
				Usage:  "internal: run one benchmark task (start the model server, then the load)",
				Action: benchTask,
			},
		},
	})
}

// loadBench loads a spec (the one argument) and plans it.
func loadBench(c *cli.Context) (*llmbench.Planned, error) {
	if c.Args().Len() != 1 {
		return nil, errkind.Invalidf("bench %s: want one SPEC argument", c.Command.Name)
	}
	spec, err := llmbench.LoadSpec(c.Args().First())
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	simOnly := c.Command.Name == "simulate" || (c.Command.Name == "run" && c.Bool("simulate"))
	return llmbench.Resolve(c.Context, spec, llmbench.DefaultEnv(),
		llmbench.ResolveOptions{Executor: c.String("executor"), PerRequest: c.Bool("per-request"), SimulateOnly: simOnly})
}

func benchPlan(c *cli.Context) error {
	p, err := loadBench(c)
	if err != nil {
		return err
	}
	w := c.App.Writer
	if c.Bool("json") {
		r := p.Resolved
		return printJSON(w, map[string]any{"benchmark": r.Spec, "executor": r.Executor, "input_tokens": r.InputTokens,
			"output_tokens": r.OutputTokens, "dataset": r.Dataset, "server_argv": p.Task.ServerArgv, "tasks": p.Plan.Tasks, "predictions": p.Task.Predictions})
	}
	fmt.Fprint(w, p.Describe())
	if c.Bool("simulate") {
		if _, err := p.Predict(); err != nil {
			return err
		}
		fmt.Fprintln(w)
		perfmodel.WriteTable(w, p.Task.Predictions)
	}
	return nil
}

func benchSimulate(c *cli.Context) error {
	p, err := loadBench(c)
	if err != nil {
		return err
	}
	preds, err := p.Predict()
	if err != nil {
		return err
	}
	w := c.App.Writer
	if c.Bool("json") {
		return printJSON(w, preds)
	}
	r := p.Resolved
	dev, _ := r.Spec.Device(r.Nodes)
	arch, _ := r.Spec.Arch()
	fmt.Fprintf(w, "simulated %s (%.2fB params, %.0f KV bytes/token) on %s (%.0f TFLOPS FP16, %.0f GB/s, %.0f GB) × tp %d; %d input / %d output tokens\n",
		r.Spec.Model.Name, arch.Params/1e9, arch.KVBytesPerToken, dev.Name, dev.PeakTFLOPS, dev.BandwidthGBps, dev.MemoryGB, max(r.Spec.Hardware.TP, 1), r.InputTokens, r.OutputTokens)
	perfmodel.WriteTable(w, preds)
	return nil
}

// confirm asks on a terminal; without one it refuses (exit 2).
func confirm(c *cli.Context, what string) error {
	if c.Bool("yes") {
		return nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return errkind.Invalidf("bench run: stdin is not a terminal, so nothing can be confirmed; pass --yes to run without asking")
	}
	fmt.Fprintf(c.App.ErrWriter, "%s? [y/N] ", what)
	line, err := limitio.NewLineReader(c.Context, c.App.Reader, "<stdin>", limitio.Small.As("answer")).ReadLine()
	if err != nil && err != io.EOF {
		return err // interrupted, or an answer over the limit
	}
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return errkind.Invalidf("not confirmed; nothing was run")
	}
	return nil
}

func benchRun(c *cli.Context) error {
	if c.IsSet("resume") {
		if c.Args().Len() > 0 {
			return errkind.Invalidf("bench run --resume EXP takes no SPEC")
		}
		s, err := llmbench.Reopen(c.Context, orchestrator.Home(), c.String("resume"), c.String("executor"))
		if err != nil {
			return err
		}
		st := s.Experiment.Snapshot()
		fmt.Fprintf(c.App.ErrWriter, "resuming %s: %d level(s) to run\n", st.ID, len(st.Incomplete()))
		return executeBench(c, s, nil, nil)
	}
	p, err := loadBench(c)
	if err != nil {
		return err
	}
	if c.Bool("simulate") {
		return benchSimulate(c)
	}
	fmt.Fprint(c.App.ErrWriter, p.Describe())
	if err := confirm(c, "Run this benchmark"); err != nil {
		return err
	}
	return startBench(c, p, nil)
}

// startBench creates the benchmark's experiment and runs it; done (if not
// nil) is told the experiment's state when it has run.
func startBench(c *cli.Context, p *llmbench.Planned, done func(orchestrator.State)) error {
	s, err := llmbench.Start(c.Context, orchestrator.Home(), p, c.String("binary"))
	if err != nil {
		return err
	}
	if !c.Bool("json") {
		fmt.Fprintln(c.App.Writer, s.Experiment.ID())
	}
	return executeBench(c, s, p.Task.Predictions, done)
}

func executeBench(c *cli.Context, s *llmbench.Started, preds []perfmodel.Prediction, done func(orchestrator.State)) error {
	exp := s.Experiment
	execErr := orchestrator.Execute(c.Context, exp, s.Executor, nil)
	st := exp.Snapshot()
	if done != nil {
		done(st)
	}
	if c.Bool("json") {
		v := map[string]any{"id": st.ID, "dir": exp.Dir, "state": st.State}
		if preds != nil {
			v["predictions"] = preds
		}
		_ = printJSON(c.App.Writer, v)
	} else {
		fmt.Fprintf(c.App.ErrWriter, "experiment %s: %s (%s)\n", st.ID, st.State, sbatch.CommandLine("gpuorch", "bench", "show", st.ID))
	}
	return orchestrator.Outcome(c.Context, st, execErr)
}

// benchTask is what the wrapper runs: `gpuorch bench task loadgen run
// --manifest M` (llmbench.RunTask).
func benchTask(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) != 4 || args[0] != "loadgen" || args[1] != "run" || args[2] != "--manifest" {
		return errkind.Invalidf("bench task: want `loadgen run --manifest FILE` (this command is run by the executors)")
	}
	expDir := os.Getenv("GPUORCH_EXPERIMENT_DIR")
	if expDir == "" {
		expDir = "."
	}
	sum, err := llmbench.RunTask(c.Context, expDir, args[3], llmbench.Self(), c.App.ErrWriter)
	if sum != nil {
		sum.WriteText(c.App.Writer)
	}
	return loadRunErr(err, sum)
}

func benchShow(c *cli.Context) error {
	if c.Args().Len() != 1 {
		return errkind.Invalidf("bench show: want one EXP argument (id, id prefix, name or directory)")
	}
	exp, err := orchestrator.Open(orchestrator.Home(), c.Args().First())
	if err != nil {
		return errkind.Invalid(err)
	}
	levels := llmbench.Levels(exp)
	w := c.App.Writer
	if c.Bool("json") {
		return printJSON(w, map[string]any{"experiment": exp.ID(), "levels": levels})
	}
	if err := llmbench.WriteLevels(w, exp.ID(), levels); err != nil {
		return err
	}
	if c.Bool("per-request") {
		return llmbench.WriteRequestRows(c.Context, w, exp, levels)
	}
	return nil
}

// benchNew asks for each part of a spec on stdin (one answer a line; an
// empty answer takes the default in brackets) and writes the spec.
func benchNew(c *cli.Context) error {
	in := limitio.NewLineReader(c.Context, c.App.Reader, "<stdin>", limitio.Small.As("answer"))
	ew := c.App.ErrWriter
	eof := false
	var readErr error
	ask := func(q, def string) string {
		if def != "" {
			fmt.Fprintf(ew, "%s [%s]: ", q, def)
		} else {
			fmt.Fprintf(ew, "%s: ", q)
		}
		line, err := in.ReadLine()
		if err != nil && err != io.EOF && readErr == nil {
			readErr = err
		}
		if err != nil && line == "" {
			eof = true
		}
		if v := strings.TrimSpace(line); v != "" {
			return v
		}
		return def
	}
	out := c.String("out")
	name := out
	if name == "" {
		name = "spec"
	}
	text, err := llmbench.Interview(ask, name+".toml")
	fmt.Fprintln(ew)
	if readErr != nil {
		return readErr // interrupted, or an answer over the limit: nothing is written
	}
	if eof {
		fmt.Fprintln(ew, "bench new: stdin ended; defaults were used for the remaining questions")
	}
	if err != nil {
		ew.Write(text)
		return err
	}
	if out == "" {
		_, err := c.App.Writer.Write(text)
		return err
	}
	if err := os.WriteFile(out, text, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(ew, "wrote %s; check it with: %s\n", out, sbatch.CommandLine("gpuorch", "bench", "plan", out))
	return nil
}

func benchStep(c *cli.Context) error {
	home := orchestrator.Home()
	if id := c.String("show"); id != "" {
		w, err := llmbench.LoadWorkflow(home, id)
		if err != nil {
			return errkind.Invalid(err)
		}
		return printWorkflow(c.App.Writer, w, c.Bool("json"))
	}
	if c.Args().Len() != 1 {
		return errkind.Invalidf("bench step: want one FILE.json argument (or - for stdin)")
	}
	var payload []byte
	var err error
	if f := c.Args().First(); f == "-" {
		payload, err = limitio.ReadAll(c.Context, c.App.Reader, "<stdin>", limitio.Config.As("step payload"))
	} else {
		payload, err = limitio.ReadFile(f, limitio.Config.As("step payload"))
	}
	if err != nil {
		return errkind.Invalidf("bench step: %w", err)
	}
	res, err := llmbench.ApplyStepTo(c.Context, home, payload, c.String("workflow"), llmbench.DefaultEnv())
	if err != nil {
		return fmt.Errorf("bench step: %w", err)
	}
	w := res.Workflow
	if res.Trigger == nil {
		return printWorkflow(c.App.Writer, w, c.Bool("json"))
	}
	p, err := llmbench.Resolve(c.Context, res.Trigger, llmbench.DefaultEnv(), llmbench.ResolveOptions{SimulateOnly: res.Simulate})
	if err != nil {
		return w.Fail(home, err)
	}
	if res.Simulate {
		preds, err := p.Predict()
		if err != nil {
			return w.Fail(home, err)
		}
		w.Status = "simulated"
		if err := w.Save(home); err != nil {
			return err
		}
		if c.Bool("json") {
			return printJSON(c.App.Writer, map[string]any{"workflow": w, "predictions": preds})
		}
		_ = printWorkflow(c.App.Writer, w, false)
		perfmodel.WriteTable(c.App.Writer, preds)
		return nil
	}
	fmt.Fprint(c.App.ErrWriter, p.Describe())
	err = startBench(c, p, func(st orchestrator.State) { _ = w.Follow(home, st) })
	if w.Experiment == "" && err != nil {
		_ = w.Fail(home, err)
	}
	if !c.Bool("json") {
		_ = printWorkflow(c.App.Writer, w, false)
	}
	return err
}

func printWorkflow(out io.Writer, w *llmbench.Workflow, jsonOut bool) error {
	if jsonOut {
		return printJSON(out, w)
	}
	return w.WriteText(out)
}
