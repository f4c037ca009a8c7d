package errkind

import (
	"errors"
	"fmt"
	"testing"
)

func TestKindsSurviveWrapping(t *testing.T) {
	base := errors.New("port 99999 out of range")
	cases := []struct {
		name string
		err  error
		kind error
	}{
		{"invalid", Invalid(base), ErrInvalid},
		{"invalidf", Invalidf("spec: %w", base), ErrInvalid},
		{"unavailable", Unavailable(base), ErrUnavailable},
		{"unavailablef", Unavailablef("slurm: %w", base), ErrUnavailable},
		{"interrupted", Interrupted(base), ErrInterrupted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wrapped := fmt.Errorf("run: %w", c.err)
			if !errors.Is(wrapped, c.kind) {
				t.Fatalf("%v: kind lost through wrapping", wrapped)
			}
			if !errors.Is(wrapped, base) {
				t.Fatalf("%v: cause lost", wrapped)
			}
			for _, other := range []error{ErrInvalid, ErrUnavailable, ErrInterrupted} {
				if other != c.kind && errors.Is(wrapped, other) {
					t.Fatalf("%v: also of kind %v", wrapped, other)
				}
			}
		})
	}
}

func TestMessageIsTheErrorsOwn(t *testing.T) {
	err := Invalidf("spec.toml:3: unknown key %q", "rat")
	if got, want := err.Error(), `spec.toml:3: unknown key "rat"`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if Invalid(nil) != nil || Unavailable(nil) != nil || Interrupted(nil) != nil || Reported(nil) != nil {
		t.Fatal("a nil error must stay nil")
	}
}

func TestReported(t *testing.T) {
	err := fmt.Errorf("run: %w", Reported(Unavailable(errors.New("2 tasks could not reach the target"))))
	if !IsReported(err) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v: want reported and unavailable", err)
	}
	if IsReported(Invalid(errors.New("x"))) {
		t.Fatal("an unmarked error is not reported")
	}
}
