package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/results/trainlog"
	"github.com/gpuorch/gpuorch/sbatch"
)

// Reviewed is an experiment named for review (results show, compare,
// report): an experiment under home, or a directory of task metrics.
type Reviewed struct {
	Label string      // what tables call it: its id, or the directory name
	ID    string      // experiment id ("" when only a directory is known)
	Dir   string      // experiment directory (local store)
	Exp   *Experiment // nil for a bare directory of metrics files
	// Training is set for a training run's directory (gpuorch train
	// submit: job.json, train.log and metrics.lp).
	Training bool
	// Runs are the training runs among the experiment's points (Load).
	Runs []trainlog.Run
	// Deployments are what the deployments of its tasks did (Load).
	Deployments []results.Deployment
}

// OpenReview finds arg: an experiment id, unique id prefix or name under
// home (Open), an experiment directory, or a directory holding task metrics
// where the layout puts them — tasks/<i>/metrics.lp (e.g. copied from a
// cluster), or metrics.lp itself (`gpuorch loadgen run --out DIR`). Any
// other directory ($GPUORCH_HOME itself, /usr) is refused, not searched. An
// experiment that is not there is an error of kind errkind.ErrInvalid.
func OpenReview(home, arg string) (*Reviewed, error) {
	e, err := Open(home, arg)
	if err == nil {
		return &Reviewed{Label: e.ID(), ID: e.ID(), Dir: e.Dir, Exp: e}, nil
	}
	if r := openTrainingRun(home, arg); r != nil {
		return r, nil
	}
	if st, serr := os.Stat(arg); serr == nil && st.IsDir() {
		if !isReviewDir(arg) {
			return nil, errkind.Invalidf("%s is not an experiment directory: it has no %s or %s, and no tasks/<i>/%s (nor %s of one task's directory)%s",
				clip.String(arg), layout.StateFile, layout.PlanFile, layout.MetricsFile, layout.MetricsFile, homeHint(arg))
		}
		abs, _ := filepath.Abs(arg)
		return &Reviewed{Label: filepath.Base(abs), Dir: arg}, nil
	}
	if errors.Is(err, ErrNotFound) {
		return nil, errkind.Invalidf("%w\n(list experiments with `gpuorch experiments list`, or pass an experiment directory)", err)
	}
	return nil, err
}

// isReviewDir reports whether dir can be reviewed: an experiment directory
// (state.json, or at least plan.json) or one with task metrics.
func isReviewDir(dir string) bool {
	for _, f := range []string{layout.Experiment(dir).State(), layout.Experiment(dir).Plan()} {
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
			return true
		}
	}
	return results.HasMetrics(dir)
}

// homeHint points at the experiments when dir holds experiment directories.
func homeHint(dir string) string {
	if list, err := List(dir); err == nil && len(list) > 0 {
		return fmt.Sprintf("; it holds %d experiment(s): name one (%s)", len(list), sbatch.CommandLine("gpuorch", "experiments", "list", "--home", dir))
	}
	return ""
}

// Load reads the experiment's review model from its source (see
// results.SelectSource), completed with the executor's task states when
// the experiment directory has them, and its training runs (r.Runs).
func (r *Reviewed) Load(ctx context.Context, sel *results.Selected) (*results.Results, error) {
	res, err := results.Load(ctx, sel.Source, sel.Experiment)
	if err != nil {
		return nil, fmt.Errorf("results of %s: %w", r.Label, err)
	}
	if r.Runs, err = r.LoadTraining(ctx, sel); err != nil {
		return nil, err
	}
	if r.Deployments, err = results.LoadDeployments(ctx, sel.Source, sel.Experiment); err != nil {
		return nil, fmt.Errorf("results of %s: %w", r.Label, err)
	}
	if r.Exp != nil {
		st := r.Exp.Snapshot()
		infos := make([]results.TaskInfo, 0, len(st.Tasks))
		for _, ts := range st.Tasks {
			ti := results.TaskInfo{Experiment: r.ID, Task: ts.Name, State: string(ts.State), Error: ts.Error}
			if ts.Index >= 0 && ts.Index < len(r.Exp.Plan.Tasks) {
				pt := r.Exp.Plan.Tasks[ts.Index]
				ti.Workload, ti.Params = pt.Workload, pt.Config.Tags
			}
			infos = append(infos, ti)
		}
		res.AddTaskStates(infos)
	}
	return res, nil
}

// TrainingJobFile records a submitted training job in its run directory.
const TrainingJobFile = "job.json"

// openTrainingRun finds a training run: the directory arg, or the run id
// arg under home, holding job.json.
func openTrainingRun(home, arg string) *Reviewed {
	dirs := []string{arg}
	if !strings.ContainsRune(arg, filepath.Separator) {
		dirs = append(dirs, filepath.Join(home, arg))
	}
	for _, d := range dirs {
		var run TrainingRun
		if readJSON(filepath.Join(d, TrainingJobFile), &run) != nil {
			continue
		}
		id := run.ID
		if id == "" {
			id = filepath.Base(d)
		}
		return &Reviewed{Label: id, ID: id, Dir: d, Training: true}
	}
	return nil
}

// LoadTraining reads the training runs among the experiment's points (a
// training run's own, or training points anywhere in the directory), one
// summary per experiment, task and job.
func (r *Reviewed) LoadTraining(ctx context.Context, sel *results.Selected) ([]trainlog.Run, error) {
	q := results.Query{Measurement: results.MeasTraining}
	if sel.Experiment != "" {
		q.Experiments = []string{sel.Experiment}
	}
	pts, err := sel.Source.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("training results of %s: %w", r.Label, err)
	}
	return trainlog.SummarizeRuns(pts), nil
}
