package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/llmbench"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/perfmodel"
	"github.com/gpuorch/gpuorch/results"
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
					&cli.StringFlag{Name: "executor", Usage: "local or slurm", DefaultText: "local for cluster \"local\", else slurm"},
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
(without workflow_id) creates a workflow; later ones name it. Each is checked,
merged and saved under $GPUORCH_HOME/workflows/<id>.json; the state is
printed. --show ID prints a saved workflow.`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the workflow state as JSON"},
					&cli.StringFlag{Name: "show", Usage: "print workflow `ID` and exit"},
					&cli.StringFlag{Name: "workflow", Usage: "workflow `ID` for a payload without workflow_id (resume a saved workflow)"},
					&cli.StringFlag{Name: "binary", Usage: "gpuorch binary the tasks run", Hidden: true},
				},
				Action: benchStep,
			},
			{
				Name: "task", Hidden: true, SkipFlagParsing: true,
				Usage:  "internal: run one benchmark task (start the model server, then the load)",
				Action: benchTask,
			},
		},
	})
}

// inventory lists a cluster's nodes: "local" is this machine (also known
// as "localhost" and "local"); another name must be the Slurm cluster's.
func inventory(ctx context.Context, cluster string) ([]gpuslice.Node, error) {
	if cluster == "local" {
		host, _ := os.Hostname()
		var out []gpuslice.Node
		for _, h := range []string{host, "localhost", "local"} {
			out = append(out, gpuslice.Node{Hostname: h, Status: "Ready", Devices: []gpuslice.NodeDevice{gpuslice.CPUDevice()}})
		}
		return out, nil
	}
	cmd := exec.CommandContext(ctx, "scontrol", "show", "config")
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: scontrol show config: %v", orchestrator.ErrUnavailable, err)
	}
	name := ""
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == "ClusterName" {
			name = strings.TrimSpace(v)
		}
	}
	if name != cluster {
		return nil, fmt.Errorf("unknown cluster (this Slurm cluster is %q; or use \"local\")", name)
	}
	return gpuslice.ClusterNodes(ctx, nil, nil)
}

func credentialStore() *llmbench.Credentials {
	return &llmbench.Credentials{Path: llmbench.DefaultCredentialsPath()}
}

func benchEnv() llmbench.Env {
	return llmbench.Env{Inventory: inventory, Credential: credentialStore().Get}
}

func specExit(err error) error {
	var se *orchestrator.SpecError
	if errors.As(err, &se) {
		return cli.Exit(err.Error(), exitUsage)
	}
	if errors.Is(err, orchestrator.ErrUnavailable) {
		return cli.Exit(err.Error(), exitUnavailable)
	}
	return cli.Exit(err.Error(), exitFailure)
}

// loadBench loads and validates a spec and plans it.
func loadBench(c *cli.Context) (*llmbench.Resolved, *orchestrator.Plan, *llmbench.TaskInfo, error) {
	if c.Args().Len() != 1 {
		return nil, nil, nil, cli.Exit("bench "+c.Command.Name+": want one SPEC argument (flags go before it)", exitUsage)
	}
	spec, err := llmbench.LoadSpec(c.Args().First())
	if err != nil {
		return nil, nil, nil, specExit(err)
	}
	simOnly := c.Command.Name == "simulate" || (c.Command.Name == "run" && c.Bool("simulate"))
	return resolveBench(c.Context, spec, c.String("executor"), c.Bool("per-request"), simOnly)
}

func resolveBench(ctx context.Context, spec *llmbench.Spec, executor string, perRequest, simOnly bool) (*llmbench.Resolved, *orchestrator.Plan, *llmbench.TaskInfo, error) {
	if perRequest {
		spec.Run.PerRequest = true
	}
	env := benchEnv()
	env.SimulateOnly = simOnly
	r, err := spec.Validate(ctx, env)
	if err != nil {
		return nil, nil, nil, specExit(err)
	}
	if executor != "" {
		r.Executor = executor
	}
	plan, bt, err := r.Plan()
	if err != nil {
		return nil, nil, nil, specExit(err)
	}
	// A prediction is made whenever the spec has what it needs.
	if preds, err := spec.Simulate(r); err == nil {
		bt.Predictions = preds
	}
	return r, plan, bt, nil
}

func benchPlan(c *cli.Context) error {
	r, plan, bt, err := loadBench(c)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(map[string]any{"benchmark": r.Spec, "executor": r.Executor, "input_tokens": r.InputTokens,
			"output_tokens": r.OutputTokens, "dataset": r.Dataset, "server_argv": bt.ServerArgv, "tasks": plan.Tasks, "predictions": bt.Predictions})
	}
	fmt.Print(r.Describe(plan, bt))
	if c.Bool("simulate") {
		if _, err := r.Spec.Simulate(r); err != nil {
			return specExit(err)
		}
		fmt.Println()
		printPredictions(os.Stdout, bt.Predictions)
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func printPredictions(w io.Writer, ps []perfmodel.Prediction) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONCURRENCY\tBATCH\tTTFT_MS\tTPOT_MS\tE2EL_MS\tOUTPUT_TOK/S\tREQ/S\tQUEUE_MS\tPREFILL\tDECODE")
	for _, p := range ps {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%.1f\t%.2f\t%.1f\t%s-bound\t%s-bound\n", p.Concurrency, p.Batch, ms(p.TTFT), ms(p.TPOT), ms(p.E2EL),
			p.OutputTokensPerS, p.RequestsPerS, p.QueueS*1000, p.PrefillBound, p.DecodeBound)
	}
	tw.Flush()
}

func benchSimulate(c *cli.Context) error {
	r, _, _, err := loadBench(c)
	if err != nil {
		return err
	}
	preds, err := r.Spec.Simulate(r)
	if err != nil {
		return specExit(err)
	}
	if c.Bool("json") {
		return printJSON(preds)
	}
	dev, _ := r.Spec.Device(r.Nodes)
	arch, _ := r.Spec.Arch()
	fmt.Printf("simulated %s (%.2fB params, %.0f KV bytes/token) on %s (%.0f TFLOPS FP16, %.0f GB/s, %.0f GB) × tp %d; %d input / %d output tokens\n",
		r.Spec.Model.Name, arch.Params/1e9, arch.KVBytesPerToken, dev.Name, dev.PeakTFLOPS, dev.BandwidthGBps, dev.MemoryGB, max(r.Spec.Hardware.TP, 1), r.InputTokens, r.OutputTokens)
	printPredictions(os.Stdout, preds)
	return nil
}

// confirm asks on a terminal; without one it refuses (exit 2).
func confirm(c *cli.Context, what string) error {
	if c.Bool("yes") {
		return nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return cli.Exit("bench run: stdin is not a terminal, so nothing can be confirmed; pass --yes to run without asking", exitUsage)
	}
	fmt.Fprintf(os.Stderr, "%s? [y/N] ", what)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return cli.Exit("not confirmed; nothing was run", exitUsage)
	}
	return nil
}

func benchRun(c *cli.Context) error {
	if c.IsSet("resume") {
		return benchResume(c)
	}
	r, plan, bt, err := loadBench(c)
	if err != nil {
		return err
	}
	if c.Bool("simulate") {
		return benchSimulate(c)
	}
	fmt.Fprint(os.Stderr, r.Describe(plan, bt))
	if err := confirm(c, "Run this benchmark"); err != nil {
		return err
	}
	return startBench(c, r, plan, bt, c.String("binary"), c.Bool("json"), nil)
}

// benchResume runs the levels of a benchmark experiment that did not
// complete, through the experiment's own wrapper (so local servers start).
func benchResume(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return cli.Exit("bench run --resume EXP takes no SPEC", exitUsage)
	}
	exp, err := orchestrator.Open(orchestrator.Home(), c.String("resume"))
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	spec, err := llmbench.LoadSpec(filepath.Join(exp.Dir, "bench-spec.json"))
	if err != nil {
		return cli.Exit(fmt.Sprintf("%s is not a benchmark experiment: %v", exp.ID(), err), exitUsage)
	}
	if err := prepareCloud(c.Context, &spec.Model); err != nil {
		return err
	}
	st := exp.Snapshot()
	name := st.Executor
	if c.IsSet("executor") {
		name = c.String("executor")
	}
	wrapper, _ := filepath.Abs(filepath.Join(exp.Dir, llmbench.Wrapper))
	ex, err := orchestrator.NewExecutor(name, orchestrator.ExecutorOptions{Binary: wrapper})
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	fmt.Fprintf(os.Stderr, "resuming %s: %d level(s) to run\n", exp.ID(), len(st.Incomplete()))
	execErr := orchestrator.Execute(c.Context, exp, ex, nil)
	st = exp.Snapshot()
	if c.Bool("json") {
		_ = printJSON(map[string]any{"id": st.ID, "dir": exp.Dir, "state": st.State})
	} else {
		fmt.Fprintf(os.Stderr, "experiment %s: %s (gpuorch bench show %s)\n", st.ID, st.State, st.ID)
	}
	return runExit(c.Context, st, execErr)
}

// prepareCloud puts a cloud model's secret into this process's environment
// (the tasks inherit it) and checks that the endpoint accepts it.
func prepareCloud(ctx context.Context, m *llmbench.Model) error {
	if !m.Cloud() {
		return nil
	}
	secret := ""
	if m.Credential != "" {
		var err error
		if secret, err = credentialStore().Get(m.Credential); err != nil {
			return cli.Exit(err.Error(), exitUsage)
		}
		// The only way the secret leaves this process: the environment of
		// the tasks (inherited by local tasks and by sbatch's default
		// --export=ALL), under the name the manifest names.
		if err := os.Setenv(llmbench.CredentialEnv(m.Credential), secret); err != nil {
			return cli.Exit(err.Error(), exitFailure)
		}
	}
	if err := llmbench.CheckEndpoint(ctx, m.URL, secret); err != nil {
		return specExit(err)
	}
	return nil
}

// startBench does the readiness check of a cloud endpoint, hands the secret
// to the tasks through the environment, creates the experiment and runs it.
func startBench(c *cli.Context, r *llmbench.Resolved, plan *orchestrator.Plan, bt *llmbench.TaskInfo, binary string, jsonOut bool, done func(orchestrator.State)) error {
	ctx := c.Context
	if err := prepareCloud(ctx, &r.Spec.Model); err != nil {
		return err
	}
	if binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return cli.Exit("find the gpuorch binary: "+err.Error(), exitFailure)
		}
		binary = exe
	}
	if abs, err := filepath.Abs(binary); err == nil {
		binary = abs
	}
	// Build the executor first so a bad --executor leaves nothing behind.
	if _, err := orchestrator.NewExecutor(plan.Run.Executor, orchestrator.ExecutorOptions{}); err != nil {
		return cli.Exit("bench run: "+err.Error(), exitUsage)
	}
	exp, err := llmbench.Create(orchestrator.Home(), r.Spec, plan, bt, binary)
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	wrapper, _ := filepath.Abs(filepath.Join(exp.Dir, llmbench.Wrapper))
	ex, err := orchestrator.NewExecutor(plan.Run.Executor, orchestrator.ExecutorOptions{Binary: wrapper})
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	if !jsonOut {
		fmt.Println(exp.ID())
	}
	execErr := orchestrator.Execute(ctx, exp, ex, nil)
	st := exp.Snapshot()
	if done != nil {
		done(st)
	}
	if jsonOut {
		_ = printJSON(map[string]any{"id": st.ID, "dir": exp.Dir, "state": st.State, "predictions": bt.Predictions})
	} else {
		fmt.Fprintf(os.Stderr, "experiment %s: %s (gpuorch bench show %s)\n", st.ID, st.State, st.ID)
	}
	return runExit(ctx, st, execErr)
}

// benchTask is what the wrapper runs: `gpuorch bench task loadgen run
// --manifest M`. It starts the local model server (if any), points the
// manifest's target at it, runs the load in this process (so it can write
// per-request rows), and stops the server.
func benchTask(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) != 4 || args[0] != "loadgen" || args[1] != "run" || args[2] != "--manifest" {
		return cli.Exit("bench task: want `loadgen run --manifest FILE` (this command is run by the executors)", exitUsage)
	}
	manifest := args[3]
	expDir := os.Getenv("GPUORCH_EXPERIMENT_DIR")
	if expDir == "" {
		expDir = "."
	}
	if !filepath.IsAbs(manifest) {
		manifest = filepath.Join(expDir, manifest)
	}
	cfg, err := readManifest(manifest)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	bt, err := llmbench.ReadTaskInfo(expDir)
	if err != nil {
		return cli.Exit("bench task: "+err.Error(), exitUsage)
	}
	taskDir := filepath.Dir(manifest)
	if len(bt.ServerArgv) > 0 {
		// The wrapper says which gpuorch it ran; "gpuorch" in the server
		// command means that one.
		self := os.Getenv("GPUORCH_BIN")
		if self == "" {
			self, _ = os.Executable()
		}
		fmt.Fprintf(os.Stderr, "starting model server: %s\n", strings.Join(bt.ServerArgv, " "))
		srv, err := llmbench.StartServer(c.Context, bt.ServerArgv, self, filepath.Join(taskDir, "server.log"), bt.ReadyTimeout.D())
		if err != nil {
			if errors.Is(err, orchestrator.ErrUnavailable) {
				return cli.Exit(err.Error(), exitUnavailable)
			}
			return cli.Exit(err.Error(), exitFailure)
		}
		defer srv.Stop()
		fmt.Fprintf(os.Stderr, "model server ready at %s\n", srv.URL)
		cfg.Target.URL = srv.URL
	}
	w, err := loadgen.BuildWorkload(cfg)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	out := &loadOutputs{dir: taskDir}
	meta := loadgen.Summary{Experiment: cfg.Experiment, Task: cfg.Task, Workload: w.Name, Target: cfg.Target.URL,
		Protocol: cfg.Target.Protocol, Tags: cfg.Tags, Started: time.Now()}
	if err := out.open(meta); err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	defer out.close()
	// The prediction goes through the task sink too, so that InfluxDB has
	// it beside the measurements for `gpuorch results show` (same tags and
	// time each run: a rerun overwrites the point).
	if err := copyPrediction(c.Context, taskDir, out.sink); err != nil {
		slog.Warn("prediction not written to the task sink", "err", err)
	}
	opts := loadgen.RunOptions{OnSnapshot: out.snapshot}
	var rows *rowWriter
	if bt.PerRequest {
		if rows, err = newRowWriter(filepath.Join(taskDir, llmbench.RequestsFile)); err != nil {
			return cli.Exit(err.Error(), exitFailure)
		}
		opts.OnResult = rows.write
	}
	sum, runErr := loadgen.Run(c.Context, cfg, w, opts)
	if rows != nil {
		if err := rows.close(); err != nil && runErr == nil {
			runErr = err
		}
	}
	if sum != nil {
		if err := out.summary(sum); err != nil && runErr == nil {
			runErr = err
		}
		printLoadSummary(os.Stdout, sum)
	}
	return loadRunExit(runErr, sum)
}

// rowWriter writes per-request rows from the sender goroutines.
type rowWriter struct {
	mu  sync.Mutex
	f   *os.File
	bw  *bufio.Writer
	n   int
	err error
}

func newRowWriter(path string) (*rowWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &rowWriter{f: f, bw: bufio.NewWriter(f)}, nil
}

func (w *rowWriter) write(res *loadgen.Result) {
	f := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	row := llmbench.RequestRow{SentMS: f(res.Sent), Outcome: res.Outcome.String(), Status: res.Status,
		InputTokens: res.InputTokens, OutputTokens: res.OutputTokens, TTFTMS: f(res.TTFT()), TPOTMS: f(res.TPOT())}
	if res.Done > res.Sent && res.Sent > 0 {
		row.E2ELMS = f(res.E2EL())
	}
	if res.Err != nil {
		row.Error = res.Err.Error()
	}
	for _, d := range res.ITLs(nil) {
		row.ITLMS = append(row.ITLMS, f(d))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	row.Index = w.n
	w.n++
	if _, err := w.bw.Write(llmbench.MarshalRow(row)); err != nil && w.err == nil {
		w.err = err
	}
}

func (w *rowWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
	if err := w.f.Close(); err != nil && w.err == nil {
		w.err = err
	}
	return w.err
}

// benchLevel is one level's measured metrics and prediction.
type benchLevel struct {
	Task        string              `json:"task"`
	Concurrency int                 `json:"concurrency"`
	State       string              `json:"state"`
	Summary     *loadgen.Summary    `json:"-"`
	Metrics     map[string]any      `json:"metrics,omitempty"`
	Predicted   *results.Prediction `json:"predicted,omitempty"`
	// ErrorPct repeats Predicted.ErrorPct with output_throughput for
	// output_tokens_per_s, the key this output has always had.
	ErrorPct map[string]float64 `json:"error_pct,omitempty"`
}

func durMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func quantMS(q loadgen.Quantiles) map[string]float64 {
	f := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return map[string]float64{"mean": f(q.Mean), "median": f(q.P50), "p25": f(q.P25), "p75": f(q.P75),
		"p95": f(q.P95), "p99": f(q.P99), "min": f(q.Min), "max": f(q.Max)}
}

// benchLevels reads an experiment's summaries and predictions.
func benchLevels(exp *orchestrator.Experiment) []benchLevel {
	st := exp.Snapshot()
	var out []benchLevel
	for i, t := range exp.Plan.Tasks {
		l := benchLevel{Task: t.Name, Concurrency: t.Config.Workload.Concurrency}
		if i < len(st.Tasks) {
			l.State = string(st.Tasks[i].State)
		}
		var sum loadgen.Summary
		if b, err := os.ReadFile(filepath.Join(exp.Dir, orchestrator.SummaryPath(i))); err == nil && json.Unmarshal(b, &sum) == nil && sum.Task != "" {
			l.Summary = &sum
			tot := sum.Total
			dur := sum.Ended.Sub(sum.Started).Seconds()
			m := map[string]any{"completed": tot.Completed, "failed": tot.Errors + tot.Timeouts + tot.Dropped + tot.Cancelled,
				"input_tokens": tot.InputTokens, "output_tokens": tot.OutputTokens, "duration_s": dur,
				"ttft_ms": quantMS(tot.TTFT), "tpot_ms": quantMS(tot.TPOT), "itl_ms": quantMS(tot.ITL), "e2el_ms": quantMS(tot.E2EL)}
			if dur > 0 {
				m["request_throughput"] = float64(tot.Completed) / dur
				m["input_throughput"] = float64(tot.InputTokens) / dur
				m["output_throughput"] = float64(tot.OutputTokens) / dur
				// Completed requests meeting every SLO per second of the
				// task (= request_throughput when no SLO is set).
				m["goodput"] = float64(tot.SLOMet) / dur
			}
			l.Metrics = m
		}
		if pr, err := results.ReadTaskPrediction(exp.TaskDir(i)); err == nil && pr != nil {
			// The error is the one `gpuorch results show` prints: against
			// the measured means and the task's output tokens/s.
			if l.Summary != nil {
				tot := l.Summary.Total
				m := results.Measured{TTFT: durMS(tot.TTFT.Mean), TPOT: durMS(tot.TPOT.Mean), E2EL: durMS(tot.E2EL.Mean)}
				m.OutputTokensPerS, _ = l.Metrics["output_throughput"].(float64)
				pr.Against(m)
				for k, v := range pr.ErrorPct {
					if l.ErrorPct == nil {
						l.ErrorPct = map[string]float64{}
					}
					if k == results.ErrKeyOutTokens {
						k = "output_throughput"
					}
					l.ErrorPct[k] = v
				}
			}
			l.Predicted = pr
		}
		out = append(out, l)
	}
	return out
}

// copyPrediction writes the points of a task's prediction.lp to sink.
func copyPrediction(ctx context.Context, taskDir string, sink results.Sink) error {
	path := filepath.Join(taskDir, results.PredictionFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var pts []results.Point
	if err := results.ReadLineFile(path, results.MeasServingPrediction, func(p results.Point) { pts = append(pts, p) }, nil); err != nil {
		return err
	}
	if len(pts) == 0 {
		return nil
	}
	return sink.Write(ctx, pts...)
}

// predictedMS is the predicted value of latency metric k (ITL has none).
func predictedMS(p *results.Prediction, k string) (float64, bool) {
	if p == nil {
		return 0, false
	}
	switch k {
	case "ttft":
		return p.TTFT, true
	case "tpot":
		return p.TPOT, true
	case "e2el":
		return p.E2EL, true
	}
	return 0, false
}

func benchShow(c *cli.Context) error {
	if c.Args().Len() != 1 {
		return cli.Exit("bench show: want one EXP argument (id, id prefix, name or directory)", exitUsage)
	}
	exp, err := orchestrator.Open(orchestrator.Home(), c.Args().First())
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	levels := benchLevels(exp)
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"experiment": exp.ID(), "levels": levels})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "experiment %s\n", exp.ID())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONCURRENCY\tSTATE\tCOMPLETED\tFAILED\tREQ/S\tIN_TOK/S\tOUT_TOK/S\tGOODPUT/S")
	for _, l := range levels {
		if l.Metrics == nil {
			fmt.Fprintf(tw, "%d\t%s\t-\t-\t-\t-\t-\t-\n", l.Concurrency, l.State)
			continue
		}
		m := l.Metrics
		good := "-"
		if g, ok := m["goodput"].(float64); ok {
			good = fmt.Sprintf("%.2f", g)
		}
		fmt.Fprintf(tw, "%d\t%s\t%v\t%v\t%.2f\t%.1f\t%.1f\t%s\n", l.Concurrency, l.State, m["completed"], m["failed"],
			m["request_throughput"], m["input_throughput"], m["output_throughput"], good)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONCURRENCY\tMETRIC_MS\tMEAN\tMEDIAN\tP25\tP75\tP95\tP99\tMIN\tMAX\tPREDICTED\tERROR")
	for _, l := range levels {
		if l.Metrics == nil {
			continue
		}
		for _, k := range []string{"ttft", "tpot", "itl", "e2el"} {
			q := l.Metrics[k+"_ms"].(map[string]float64)
			pred, errs := "-", "-"
			if pv, ok := predictedMS(l.Predicted, k); ok {
				pred = fmt.Sprintf("%.2f", pv)
			}
			if e, ok := l.ErrorPct[k]; ok {
				errs = fmt.Sprintf("%+.1f%%", e)
			}
			fmt.Fprintf(tw, "%d\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\n", l.Concurrency, k, q["mean"], q["median"], q["p25"], q["p75"], q["p95"], q["p99"], q["min"], q["max"], pred, errs)
		}
		if l.Predicted != nil {
			pv := l.Predicted.OutputTokensPerS
			e := "-"
			if v, ok := l.ErrorPct["output_throughput"]; ok {
				e = fmt.Sprintf("%+.1f%%", v)
			}
			fmt.Fprintf(tw, "%d\tout_tok/s\t%.1f\t\t\t\t\t\t\t\t%.1f\t%s\n", l.Concurrency, l.Metrics["output_throughput"], pv, e)
		}
	}
	tw.Flush()
	if c.Bool("per-request") {
		for i, l := range levels {
			b, err := os.ReadFile(filepath.Join(exp.TaskDir(i), llmbench.RequestsFile))
			if err != nil {
				fmt.Fprintf(w, "\n%s: no per-request rows (run with --per-request)\n", l.Task)
				continue
			}
			fmt.Fprintf(w, "\n%s\n", l.Task)
			tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "#\tOUTCOME\tIN\tOUT\tTTFT_MS\tTPOT_MS\tE2EL_MS")
			var rows []llmbench.RequestRow
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var r llmbench.RequestRow
				if json.Unmarshal([]byte(line), &r) == nil {
					rows = append(rows, r)
				}
			}
			sort.Slice(rows, func(a, b int) bool { return rows[a].SentMS < rows[b].SentMS })
			for _, r := range rows {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%.2f\t%.2f\t%.2f\n", r.Index, r.Outcome, r.InputTokens, r.OutputTokens, r.TTFTMS, r.TPOTMS, r.E2ELMS)
			}
			tw.Flush()
		}
	}
	return nil
}

// benchNew asks for each part of a spec on stdin (one answer a line; an
// empty answer takes the default in brackets) and writes the spec.
func benchNew(c *cli.Context) error {
	in := bufio.NewReader(os.Stdin)
	eof := false
	ask := func(q, def string) string {
		if def != "" {
			fmt.Fprintf(os.Stderr, "%s [%s]: ", q, def)
		} else {
			fmt.Fprintf(os.Stderr, "%s: ", q)
		}
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			eof = true
		}
		if v := strings.TrimSpace(line); v != "" {
			return v
		}
		return def
	}
	list := func(s string) []string {
		var out []string
		for _, f := range strings.Split(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
		return out
	}
	var b strings.Builder
	kv := func(k string, v any) { b.WriteString(tomlLine(k, v)) }
	kv("name", ask("name (lowercase letters, digits, . _ -)", ""))
	if d := ask("description", ""); d != "" {
		kv("description", d)
	}
	if t := list(ask("tags, comma-separated", "")); len(t) > 0 {
		kv("tags", t)
	}
	var levels []int
	for _, f := range list(ask("concurrent requests, comma-separated levels", "1,4,16")) {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil {
			return cli.Exit(fmt.Sprintf("bench new: concurrent requests: %q is not an integer", f), exitUsage)
		}
		levels = append(levels, n)
	}
	kv("concurrent_requests", levels)
	eval := ask("evaluate with: configuration or dataset", "configuration")
	kv("eval_with", eval)
	kv("cluster", ask("cluster: local or the Slurm cluster's name", "local"))
	if n := list(ask("nodes, comma-separated (empty: any)", "")); len(n) > 0 {
		kv("nodes", n)
	}
	switch eval {
	case "dataset":
		b.WriteString("\n[dataset]\n")
		kv("files", list(ask("dataset files (ShareGPT JSON or JSONL), comma-separated", "")))
	default:
		b.WriteString("\n[configuration]\n")
		var inT, outT int
		fmt.Sscan(ask("max input tokens", "128"), &inT)
		fmt.Sscan(ask("max output tokens", "128"), &outT)
		kv("max_input_tokens", inT)
		kv("max_output_tokens", outT)
	}
	b.WriteString("\n[model]\n")
	kv("name", ask("model name (what requests carry)", ""))
	switch ask("model runs as: command, image or url", "command") {
	case "image":
		kv("image", ask("SIF image path", ""))
		if a := strings.Fields(ask("arguments after the image (use {port})", "")); len(a) > 0 {
			kv("args", a)
		}
	case "url":
		kv("url", ask("OpenAI-compatible base URL", ""))
		if cr := ask("credential name (gpuorch credentials add NAME)", ""); cr != "" {
			kv("credential", cr)
		}
	default:
		kv("command", strings.Fields(ask("server command (use {port} for the port)", "")))
	}
	if a := ask("architecture for simulate ("+strings.Join(perfmodel.KnownArchs(), ", ")+"; empty: none)", ""); a != "" {
		kv("arch", a)
	}
	if d := ask("GPU model for simulate (e.g. H100, A100 80GB; empty: none)", ""); d != "" {
		b.WriteString("\n[hardware]\n")
		kv("device", d)
		var tp int
		fmt.Sscan(ask("tensor parallelism", "1"), &tp)
		kv("tp", tp)
	}
	fmt.Fprintln(os.Stderr)
	if eof {
		fmt.Fprintln(os.Stderr, "bench new: stdin ended; defaults were used for the remaining questions")
	}
	text := b.String()
	out := c.String("out")
	name := out
	if name == "" {
		name = "spec"
	}
	if _, err := llmbench.ParseSpec(name+".toml", []byte(text)); err != nil {
		fmt.Fprint(os.Stderr, text)
		return cli.Exit("bench new: the answers do not make a valid spec: "+err.Error(), exitUsage)
	}
	if out == "" {
		fmt.Print(text)
		return nil
	}
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	fmt.Fprintf(os.Stderr, "wrote %s; check it with: gpuorch bench plan %s\n", out, out)
	return nil
}

// tomlLine encodes one key = value line with the TOML encoder's quoting.
func tomlLine(k string, v any) string {
	var b strings.Builder
	_ = toml.NewEncoder(&b).Encode(map[string]any{k: v})
	return b.String()
}

func benchStep(c *cli.Context) error {
	home := orchestrator.Home()
	if id := c.String("show"); id != "" {
		w, err := llmbench.LoadWorkflow(home, id)
		if err != nil {
			return cli.Exit(err.Error(), exitUsage)
		}
		return printWorkflow(w, c.Bool("json"))
	}
	if c.Args().Len() != 1 {
		return cli.Exit("bench step: want one FILE.json argument (or - for stdin)", exitUsage)
	}
	var payload []byte
	var err error
	if f := c.Args().First(); f == "-" {
		payload, err = io.ReadAll(os.Stdin)
	} else {
		payload, err = os.ReadFile(f)
	}
	if err != nil {
		return cli.Exit("bench step: "+err.Error(), exitUsage)
	}
	if id := c.String("workflow"); id != "" {
		var p map[string]any
		if json.Unmarshal(payload, &p) == nil && p != nil {
			if _, has := p["workflow_id"]; !has {
				p["workflow_id"] = id
				delete(p, "workflow_total_steps")
				payload, _ = json.Marshal(p)
			}
		}
	}
	res, err := llmbench.ApplyStep(c.Context, home, payload, benchEnv())
	if err != nil {
		var se *llmbench.StepError
		if errors.As(err, &se) || !errors.Is(err, orchestrator.ErrUnavailable) {
			return cli.Exit("bench step: "+err.Error(), exitUsage)
		}
		return cli.Exit("bench step: "+err.Error(), exitUnavailable)
	}
	w := res.Workflow
	if res.Trigger == nil {
		return printWorkflow(w, c.Bool("json"))
	}
	fail := func(err error) error {
		w.Status, w.Reason = "failed", err.Error()
		_ = w.Save(home)
		return err
	}
	r, plan, bt, err := resolveBench(c.Context, res.Trigger, "", false, res.Simulate)
	if err != nil {
		return fail(err)
	}
	if res.Simulate {
		preds, err := r.Spec.Simulate(r)
		if err != nil {
			return fail(specExit(err))
		}
		w.Status = "simulated"
		if err := w.Save(home); err != nil {
			return cli.Exit(err.Error(), exitFailure)
		}
		if c.Bool("json") {
			return printJSON(map[string]any{"workflow": w, "predictions": preds})
		}
		_ = printWorkflow(w, false)
		printPredictions(os.Stdout, preds)
		return nil
	}
	fmt.Fprint(os.Stderr, r.Describe(plan, bt))
	err = startBench(c, r, plan, bt, c.String("binary"), c.Bool("json"), func(st orchestrator.State) {
		w.Experiment, w.Status = st.ID, string(st.State)
		if st.Error != "" {
			w.Reason = st.Error
		}
		_ = w.Save(home)
	})
	if w.Experiment == "" && err != nil {
		_ = fail(err)
	}
	if !c.Bool("json") {
		_ = printWorkflow(w, false)
	}
	return err
}

func printWorkflow(w *llmbench.Workflow, jsonOut bool) error {
	if jsonOut {
		return printJSON(w)
	}
	fmt.Printf("workflow %s: %s, step %d of %d\n", w.ID, w.Status, w.CurrentStep, w.TotalSteps)
	if w.Experiment != "" {
		fmt.Printf("experiment %s (gpuorch bench show %s)\n", w.Experiment, w.Experiment)
	}
	if w.Reason != "" {
		fmt.Printf("reason: %s\n", w.Reason)
	}
	data := w.Data()
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := data[k]
		if k == "nodes" {
			var hs []string
			for _, n := range v.([]any) {
				if m, ok := n.(map[string]any); ok {
					hs = append(hs, fmt.Sprint(m["hostname"]))
				} else {
					hs = append(hs, fmt.Sprint(n))
				}
			}
			v = strings.Join(hs, ", ")
		}
		b, _ := json.Marshal(v)
		fmt.Printf("  %-22s %s\n", k, b)
	}
	var missing []string
	for n := 1; n <= llmbench.WorkflowSteps; n++ {
		if _, ok := w.Steps[fmt.Sprint(n)]; !ok {
			missing = append(missing, fmt.Sprint(n))
		}
	}
	if len(missing) > 0 && w.Status == "in_progress" {
		fmt.Printf("steps not sent yet: %s (step 6 only for cloud models)\n", strings.Join(missing, ", "))
	}
	return nil
}
