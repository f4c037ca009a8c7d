package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/gpuslice/mps"
	"github.com/gpuorch/gpuorch/gpuslice/nvmlx"
	"github.com/gpuorch/gpuorch/internal/cliargs"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/orchestrator"
)

func init() {
	register(&cli.Command{
		Name:  "slice",
		Usage: "fractional GPUs: map a (tflops, vram) request to Slurm shards and MPS limits, and enforce it",
		Description: `A slice is a share of one GPU: TFLOPS (of the model's peak dense FP16) and
VRAM, each with a request (what scheduling reserves) and a limit (what the
job may use). 'slice plan' shows how a request becomes a partition, QOS,
--gres=shard:N and the MPS environment; 'slice enforce' watches the GPUs
through NVML and stops jobs over their VRAM limit. See docs/gpu-slicing.md.`,
		Subcommands: []*cli.Command{
			{
				Name:  "plan",
				Usage: "show the shards, QOS and MPS env of a slice request",
				Description: `  gpuorch slice plan --pools examples/pools.toml --profile small-infer
  gpuorch slice plan --pools examples/pools.toml --pool h100 --tflops-request 100 --tflops-limit 200 --vram-limit 20Gi
  gpuorch slice plan --pools examples/pools.toml --profile small-infer --script -- python serve.py

Explicit flags override the profile's values (like TensorFusion annotations
over a WorkloadProfile). A request that cannot fit on one GPU of the pool is
rejected with the numbers (exit 2).`,
				ArgsUsage: "[-- COMMAND ARGS… (with --script)]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "pools", Required: true, Usage: "pools `FILE` (see examples/pools.toml)"},
					&cli.StringFlag{Name: "profile", Usage: "workload profile `NAME` from the pools file"},
					&cli.StringFlag{Name: "pool", Usage: "pool `NAME` (overrides the profile)"},
					cliargs.Choice(&cli.StringFlag{Name: "qos", Usage: "QoS level: low, medium, high, critical (default: high if requests == limits, else the pool's default, else medium)"}, gpuslice.QoSLevels...),
					&cli.Float64Flag{Name: "tflops-request", Usage: "requested FP16 `TFLOPS`"},
					&cli.Float64Flag{Name: "tflops-limit", Usage: "FP16 `TFLOPS` limit (MPS active thread %)"},
					&cli.StringFlag{Name: "vram-request", Usage: "requested VRAM, e.g. 4Gi"},
					&cli.StringFlag{Name: "vram-limit", Usage: "VRAM limit, e.g. 4Gi (MPS pinned memory limit, enforcer)"},
					&cli.BoolFlag{Name: "json", Usage: "print the slice as JSON"},
					&cli.BoolFlag{Name: "script", Usage: "print an sbatch script running COMMAND in the slice, with the enforcer beside it"},
				},
				Action: slicePlan,
			},
			{
				Name:  "enforce",
				Usage: "poll NVML and act on jobs over their VRAM or compute limit (per job, or as a node daemon)",
				Description: `Per job (the default; what 'slice plan --script' starts in the background):
the job id is $SLURM_JOB_ID and the limits come from the GPUORCH_SLICE_*
variables of the rendered script. Only that job's processes are ever acted on.

Node daemon: --limits-dir DIR serves every job on the node that registered its
limits with 'gpuorch slice enforce --register DIR' from inside the job.

Each poll (default 500 ms) lists every GPU's compute processes, maps each PID
to its job (/proc/PID/cgroup job_N, else SLURM_JOB_ID in /proc/PID/environ)
and sums the job's VRAM. Over the limit, by the QoS's on_vram_overrun:
  requeue    scontrol requeue JOB; processes still on the GPU after the grace
             time are killed (a job Slurm cannot requeue is terminated)
  terminate  SIGTERM to the job's GPU processes, SIGKILL after the grace time
  report     only record it
SM use over the compute limit for the QoS's compute_window (else --compute-sustain,
with hysteresis) gets its on_compute_overrun: report (default), terminate, requeue.
Events go to stdout and, with --metrics, as slice_violation points to a
line-protocol file. --dry-run acts on nothing.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "job", Usage: "job `ID` to watch (default $SLURM_JOB_ID)"},
					&cli.StringFlag{Name: "limits-dir", Usage: "daemon mode: read each job's limits from `DIR`/<jobid>"},
					&cli.StringFlag{Name: "register", Usage: "write this job's limits to `DIR`/<jobid> for a node daemon, then exit"},
					&cli.DurationFlag{Name: "interval", Value: 500 * time.Millisecond, Usage: "poll period"},
					&cli.DurationFlag{Name: "compute-sustain", Value: 10 * time.Second, Usage: "how long SM use must stay over the compute limit before the compute policy applies, for jobs whose QoS sets no compute_window"},
					&cli.StringFlag{Name: "metrics", Usage: "append slice_violation points to `FILE` (line protocol)"},
					&cli.BoolFlag{Name: "dry-run", Usage: "report what would be done; signal nothing, requeue nothing"},
					&cli.BoolFlag{Name: "once", Usage: "poll once and exit (a read-only check with --dry-run)"},
				},
				Action: sliceEnforce,
			},
			{Name: "mps", Usage: "the MPS hook's part, as root: start (prolog) or stop (epilog) this job's MPS daemon (docs/gpu-slicing.md)", ArgsUsage: "prolog|epilog", Action: sliceMPS},
		},
	})
}

func sliceMPS(c *cli.Context) error {
	msg, err := mps.Config{}.Hook(c.Context, c.Args().First(), os.Getenv)
	fmt.Fprintln(c.App.Writer, msg)
	return err
}

func sliceOverride(c *cli.Context) (gpuslice.Override, error) {
	o := gpuslice.Override{Profile: c.String("profile"), Pool: c.String("pool"), QoS: c.String("qos"),
		TFLOPSRequest: c.Float64("tflops-request"), TFLOPSLimit: c.Float64("tflops-limit")}
	if c.IsSet("tflops-request") && o.TFLOPSRequest == 0 || c.IsSet("tflops-limit") && o.TFLOPSLimit == 0 {
		return o, fmt.Errorf("--tflops-request or --tflops-limit 0: %s", gpuslice.TFLOPSProblem(0, nil))
	}
	for _, f := range []struct {
		flag string
		dst  *gpuslice.Bytes
	}{{"vram-request", &o.VRAMRequest}, {"vram-limit", &o.VRAMLimit}} {
		if v := c.String(f.flag); v != "" {
			b, err := gpuslice.ParseBytes(v)
			if err != nil {
				return o, fmt.Errorf("--%s: %w", f.flag, err)
			}
			*f.dst = b
		}
	}
	return o, nil
}

func slicePlan(c *cli.Context) error {
	m, err := gpuslice.LoadModel(c.String("pools"))
	if err != nil {
		return errkind.Invalid(err)
	}
	o, err := sliceOverride(c)
	if err != nil {
		return errkind.Invalid(err)
	}
	s, err := m.PlanOverride(o)
	if err != nil {
		return errkind.Invalid(err)
	}
	if c.Bool("script") {
		if c.NArg() == 0 {
			return errkind.Invalidf("--script needs the command to run: gpuorch slice plan … --script -- COMMAND ARGS…")
		}
		script, err := orchestrator.SliceJob(s, "gpuorch", c.Args().Slice()).Render()
		if err != nil {
			return errkind.Invalid(err)
		}
		_, err = io.WriteString(c.App.Writer, script)
		return err
	}
	return printJSONOrText(c, s, s.WriteText)
}

func sliceEnforce(c *cli.Context) error {
	opts := gpuslice.EnforcerOptions{Job: c.String("job"), LimitsDir: c.String("limits-dir"), Metrics: c.String("metrics"),
		Interval: c.Duration("interval"), ComputeSustain: c.Duration("compute-sustain"), DryRun: c.Bool("dry-run")}
	w := c.App.Writer
	if dir := c.String("register"); dir != "" {
		job, err := opts.Register(dir)
		if err != nil {
			return errkind.Invalidf("register: %w", err)
		}
		fmt.Fprintf(w, "registered job %s limits in %s/%s\n", job, dir, job)
		return nil
	}
	e, err := nvmlx.NewEnforcer(nil, opts)
	if err != nil {
		return err
	}
	defer e.Close()
	show := func(ev gpuslice.Event) { ev.WriteText(w) }
	if c.Bool("once") {
		evs, err := e.Poll(c.Context)
		for _, ev := range evs {
			show(ev)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "polled %d GPU(s); %d event(s)\n", e.GPUs(), len(evs))
		if e.Sink != nil {
			return e.Sink.Flush(c.Context)
		}
		return nil
	}
	// The job script kills the enforcer with SIGTERM when the work ends.
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, os.Interrupt)
	defer stop()
	return e.Run(ctx, show)
}
