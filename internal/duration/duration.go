// Package duration holds Duration, the one duration type of gpuorch's files:
// a time.Duration written as text ("250ms", "1m30s") in TOML and JSON, so
// specs, configs and manifests stay readable.
package duration

import (
	"fmt"
	"time"
)

// Duration is a time.Duration that reads and writes as text. It accepts
// whatever time.ParseDuration accepts, negative values included; a reader
// for which a negative value makes no sense says so in its own checks.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats as time.Duration does ("1.5s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the String form, which is what JSON manifests hold.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"500ms\", \"30s\", \"2m\")", string(b))
	}
	*d = Duration(v)
	return nil
}
