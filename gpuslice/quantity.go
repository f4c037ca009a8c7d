package gpuslice

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Bytes is an amount of memory. In TOML it is written as a Kubernetes-style
// quantity string ("4Gi", "512Mi", "80GiB", "16GB") or a plain integer of
// bytes, so profiles can be copied from TensorFusion annotations unchanged.
type Bytes uint64

const (
	KiB Bytes = 1 << 10
	MiB Bytes = 1 << 20
	GiB Bytes = 1 << 30
)

var byteUnits = []struct {
	suffix string
	mult   float64
}{
	// Longest suffixes first so "GiB" is not read as "G" + "iB".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	{"B", 1},
}

// ParseBytes reads a memory quantity: a number (integer or decimal) followed
// by an optional unit (Ki, Mi, Gi, Ti with optional B are powers of 1024;
// K, M, G, T with optional B are powers of 1000; B or nothing is bytes).
func ParseBytes(s string) (Bytes, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty memory quantity")
	}
	mult := 1.0
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	if t == "" || strings.ContainsAny(t, "+-eEnN_xX") {
		// No sign, exponent, NaN/Inf or hex: a quantity is a plain decimal.
		return 0, fmt.Errorf("bad memory quantity %q (want e.g. 4Gi, 512Mi, 16GB)", s)
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil {
		return 0, fmt.Errorf("bad memory quantity %q (want e.g. 4Gi, 512Mi, 16GB)", s)
	}
	b := v * mult
	if b > math.MaxInt64 {
		return 0, fmt.Errorf("memory quantity %q too large", s)
	}
	return Bytes(math.Round(b)), nil
}

// UnmarshalTOML accepts a quantity string or a non-negative integer (bytes).
func (b *Bytes) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		n, err := ParseBytes(x)
		if err != nil {
			return err
		}
		*b = n
	case int64:
		if x < 0 {
			return fmt.Errorf("negative memory quantity %d", x)
		}
		*b = Bytes(x)
	default:
		return fmt.Errorf("memory quantity must be a string like \"4Gi\" or an integer of bytes, not %T", v)
	}
	return nil
}

// MarshalText writes the quantity in the largest binary unit that divides it.
func (b Bytes) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText is ParseBytes, for flags and JSON.
func (b *Bytes) UnmarshalText(p []byte) error {
	n, err := ParseBytes(string(p))
	if err != nil {
		return err
	}
	*b = n
	return nil
}

func (b Bytes) String() string {
	switch {
	case b == 0:
		return "0"
	case b%(1<<40) == 0:
		return strconv.FormatUint(uint64(b>>40), 10) + "Ti"
	case b%GiB == 0:
		return strconv.FormatUint(uint64(b/GiB), 10) + "Gi"
	case b%MiB == 0:
		return strconv.FormatUint(uint64(b/MiB), 10) + "Mi"
	case b%KiB == 0:
		return strconv.FormatUint(uint64(b/KiB), 10) + "Ki"
	}
	return strconv.FormatUint(uint64(b), 10)
}

// GiBf is b in GiB as a float, for messages and metrics.
func (b Bytes) GiBf() float64 { return float64(b) / float64(GiB) }
