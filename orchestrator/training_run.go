package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/results/trainlog"
	"github.com/gpuorch/gpuorch/sbatch"
	"github.com/gpuorch/gpuorch/sif"
	"github.com/gpuorch/gpuorch/taskrun"
)

// LoadTraining reads a spec and its [training] table, with defaults applied
// and validated. Every error is of kind errkind.ErrInvalid.
func LoadTraining(path string, overrides []string) (*Spec, TrainingSpec, error) {
	spec, err := LoadSpec(path, overrides)
	if err != nil {
		return nil, TrainingSpec{}, errkind.Invalid(err)
	}
	if spec.Training == nil {
		return nil, TrainingSpec{}, errkind.Invalidf("%s: no [training] table (see docs/training.md)", spec.File)
	}
	tr := spec.Training.WithDefaults(spec.Slurm)
	if err := tr.Validate(); err != nil {
		return nil, tr, errkind.Invalidf("%s: %w", spec.File, err)
	}
	return spec, tr, nil
}

// TrainingRunDir names a new training run of spec: its id and the absolute
// directory under the spec's output directory (else $GPUORCH_HOME).
func TrainingRunDir(spec *Spec) (id, dir string, err error) {
	home := spec.Output.Dir
	if home == "" {
		home = Home()
	}
	id = NewID(spec.Experiment.Name, time.Now())
	dir, err = filepath.Abs(filepath.Join(home, id))
	return id, dir, err
}

// CheckTrainingImage validates the image for the job: whole, squashfs, the
// nodes' architecture, the expected version, and the script inside it. A
// failed check says every failure, and nothing is submitted.
func CheckTrainingImage(ctx context.Context, tr TrainingSpec) error {
	if tr.Image == "" {
		return nil
	}
	req := append([]string(nil), tr.RequiredPaths...)
	if tr.ScriptOnHost() {
		// The seed's layout: the script beside the image, bound in.
		if st, err := os.Stat(tr.Script); err != nil || st.IsDir() {
			return fmt.Errorf("image check failed, nothing submitted:\n  training.script: %s: not a file in image_dir", tr.Script)
		}
	} else if tr.Script != "" && tr.Runtime != RuntimeNone {
		req = append(req, tr.Script)
	}
	rep, err := sif.Validate(ctx, tr.Image, sif.ValidateOptions{Arch: tr.Arch, Version: tr.ImageVersion, RequiredPaths: req})
	if err != nil {
		return fmt.Errorf("image check: %w (use --skip-image-check if the image is only on the nodes)", err)
	}
	if !rep.OK {
		var msgs []string
		for _, e := range rep.Failures() {
			msgs = append(msgs, "  "+e.Error())
		}
		return errors.New("image check failed, nothing submitted:\n" + strings.Join(msgs, "\n"))
	}
	return nil
}

// TrainingRun is a submitted training job; job.json in its directory.
type TrainingRun struct {
	ID      string            `json:"id"`
	Dir     string            `json:"dir"`
	JobID   string            `json:"job_id"`
	Summary *trainlog.Summary `json:"summary,omitempty"`
	State   string            `json:"state,omitempty"`
}

// Log is the run's training log.
func (r *TrainingRun) Log() string { return filepath.Join(r.Dir, TrainingLogName) }

// SubmitTraining creates the run directory of spec's training (it must be
// on a filesystem every node sees), writes spec.toml and the sbatch script
// there and submits it. When Slurm cannot be reached the directory is kept
// and the error (of kind errkind.ErrUnavailable) says how to resubmit.
func SubmitTraining(ctx context.Context, client *sbatch.Client, spec *Spec, tr TrainingSpec, preflight bool) (*TrainingRun, error) {
	id, dir, err := TrainingRunDir(spec)
	if err != nil {
		return nil, err
	}
	job, err := tr.TrainingJob(TrainingJobOptions{Name: spec.Experiment.Name, RunDir: dir, Preflight: preflight})
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	script, err := job.Render()
	if err != nil {
		return nil, errkind.Invalid(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(layout.Experiment(dir).Spec(), spec.Source, 0o644); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, TrainingScriptName)
	if err := atomicfile.WriteFile(path, []byte(script), 0o644); err != nil {
		return nil, err
	}
	jobID, err := client.SubmitFile(ctx, path)
	if err != nil {
		if errors.Is(err, errkind.ErrUnavailable) {
			return nil, errkind.Unavailablef("submit: %w (run directory %s kept; resubmit with: %s)", err, dir, sbatch.CommandLine("sbatch", path))
		}
		return nil, fmt.Errorf("submit: %w", err)
	}
	run := &TrainingRun{ID: id, Dir: dir, JobID: jobID}
	if err := atomicfile.WriteJSON(filepath.Join(dir, TrainingJobFile), run, 0o644); err != nil {
		// The job is submitted; job.json only records it.
		slog.Warn("record the training job", "err", err)
	}
	return run, nil
}

// FollowOptions configure FollowTraining.
type FollowOptions struct {
	// JobID, when set, ends the follow when the Slurm job ends; without it
	// the follow ends at metaseq's "done training" line.
	JobID string
	// Client asks Slurm about JobID.
	Client *sbatch.Client
	// Poll is how often Slurm is asked (default 5 s).
	Poll time.Duration
	// OnError sees malformed log lines and failed Slurm polls.
	OnError func(error)
}

// FollowTraining follows a training log into the task sink of dir (its
// metrics.lp, and InfluxDB when configured) until the job ends, and returns
// what was seen and the job's final state ("" without a job).
func FollowTraining(ctx context.Context, logPath, dir string, tags map[string]string, o FollowOptions) (trainlog.Result, string, error) {
	sink, err := taskrun.OpenSink(ctx, layout.Task(dir))
	if err != nil {
		return trainlog.Result{}, "", err
	}
	defer sink.Close()
	if o.Poll <= 0 {
		o.Poll = 5 * time.Second
	}
	onError := func(err error) {
		if o.OnError != nil {
			o.OnError(err)
		}
	}
	var mu sync.Mutex
	state := ""
	var lastPoll time.Time
	done := func() bool {
		if o.JobID == "" {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if time.Since(lastPoll) < o.Poll {
			return false
		}
		lastPoll = time.Now()
		tasks, err := o.Client.Tasks(ctx, o.JobID)
		if err != nil {
			// Slurm may come back: say so, and keep following.
			onError(fmt.Errorf("job %s: %w", o.JobID, err))
			return false
		}
		if len(tasks) == 0 {
			return false
		}
		for _, t := range tasks {
			state = string(t.State)
			if !t.State.Terminal() {
				return false
			}
		}
		return true
	}
	res, err := trainlog.Follow(ctx, logPath, trainlog.FollowOptions{
		Sink: sink, Collector: &trainlog.Collector{Tags: tags}, Done: done,
		StopAtDone: o.JobID == "",
		OnError:    func(e error) { onError(fmt.Errorf("%s: %w", logPath, e)) },
	})
	if err == nil && o.JobID != "" && state == "" {
		lastPoll = time.Time{}
		done()
	}
	return res, state, err
}
