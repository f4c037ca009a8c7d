package results

import (
	"context"
	"errors"
)

// Tee writes every point to a primary sink (the local store, whose errors
// stop the run) and to secondary sinks (InfluxDB, which spools rather than
// fail). Flush and Close reach every sink and join their errors.
func Tee(primary Sink, secondary ...Sink) Sink {
	return &tee{primary: primary, secondary: secondary}
}

type tee struct {
	primary   Sink
	secondary []Sink
}

func (t *tee) Write(ctx context.Context, pts ...Point) error {
	if err := t.primary.Write(ctx, pts...); err != nil {
		return err
	}
	var errs []error
	for _, s := range t.secondary {
		errs = append(errs, s.Write(ctx, pts...))
	}
	return errors.Join(errs...)
}

func (t *tee) Flush(ctx context.Context) error {
	errs := []error{t.primary.Flush(ctx)}
	for _, s := range t.secondary {
		errs = append(errs, s.Flush(ctx))
	}
	return errors.Join(errs...)
}

func (t *tee) Close() error {
	errs := []error{t.primary.Close()}
	for _, s := range t.secondary {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
