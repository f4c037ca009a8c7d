package results

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// Only a check that found nothing answering is an unavailable service; a
// wrong token or a missing database is the user's to fix.
func TestCheckErrorKind(t *testing.T) {
	tests := []struct {
		kind        CheckKind
		unavailable bool
	}{
		{CheckUnreachable, true},
		{CheckUnauthorized, false},
		{CheckForbidden, false},
		{CheckNoDatabase, false},
		{CheckFluxDisabled, false},
		{CheckOther, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			err := fmt.Errorf("sink: %w", &CheckError{Kind: tt.kind, URL: "http://x:8086", Msg: "m", Err: errors.New("cause")})
			if got := errors.Is(err, errkind.ErrUnavailable); got != tt.unavailable {
				t.Errorf("errors.Is(%v, ErrUnavailable) = %v, want %v", err, got, tt.unavailable)
			}
			if got, want := err.Error(), "sink: influxdb at http://x:8086: m"; got != want {
				t.Errorf("message %q, want %q", got, want)
			}
		})
	}
}
