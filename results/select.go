package results

import (
	"context"
	"errors"
	"fmt"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// EnvSource is the variable that picks where review reads points from:
// "local" (the experiment's local store), "influxdb", or "auto"/"" (InfluxDB
// when it is configured, else the local store).
const EnvSource = "GPUORCH_RESULTS_SOURCE"

// Selected is the source review reads an experiment from.
type Selected struct {
	Source Source
	// Experiment is the id to filter on ("" = everything in the source).
	Experiment string
	// Name says where the points come from, for people.
	Name string
}

// SelectSource picks where `results show`, `compare` and `report` read an
// experiment's points: InfluxDB when it is configured and the experiment
// has an id (the same points, the same output), else the experiment's local
// store in dir. A bad setting is of kind errkind.ErrInvalid; an InfluxDB
// that cannot be reached is errkind.ErrUnavailable.
func SelectSource(ctx context.Context, getenv func(string) string, dir, expID string, onMalformed func(*LineError)) (*Selected, error) {
	local := func() (*Selected, error) {
		st := NewLocalStore(dir)
		st.OnMalformed = onMalformed
		return &Selected{Source: st, Name: "local store " + dir}, nil
	}
	want := getenv(EnvSource)
	switch want {
	case "", "auto", "influxdb":
	case "local":
		return local()
	default:
		return nil, errkind.Invalidf("%s=%q: want local, influxdb or auto", EnvSource, want)
	}
	cfg, err := LoadInfluxConfig(getenv)
	if err != nil {
		return nil, errkind.Invalidf("influxdb configuration: %w", err)
	}
	if !cfg.Configured() || expID == "" { // a bare directory has no experiment id to query by
		if want == "influxdb" {
			return nil, errkind.Invalidf("%s=influxdb but InfluxDB is not configured or %s has no experiment id", EnvSource, dir)
		}
		return local()
	}
	if err := Check(ctx, cfg); err != nil {
		err = fmt.Errorf("%w (set %s=local to read the local store)", err, EnvSource)
		if errors.Is(err, errkind.ErrUnavailable) {
			return nil, err
		}
		return nil, errkind.Invalid(err)
	}
	return &Selected{Source: NewInfluxSource(cfg), Experiment: expID,
		Name: fmt.Sprintf("InfluxDB %s, bucket %s", cfg.URL, cfg.Bucket)}, nil
}
