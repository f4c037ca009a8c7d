package results

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AppendLine appends p in InfluxDB line protocol (nanosecond precision,
// tags sorted by key, fields sorted by key) followed by '\n'.
func AppendLine(b []byte, p Point) ([]byte, error) {
	if p.Measurement == "" {
		return b, fmt.Errorf("point has no measurement")
	}
	if len(p.Fields) == 0 {
		return b, fmt.Errorf("point %q has no fields", p.Measurement)
	}
	b = appendEscaped(b, p.Measurement, ", ")
	for _, k := range sortedKeys(p.Tags) {
		v := p.Tags[k]
		if k == "" || v == "" { // line protocol cannot carry empty tag keys or values
			continue
		}
		b = append(b, ',')
		b = appendEscaped(b, k, ",= ")
		b = append(b, '=')
		b = appendEscaped(b, v, ",= ")
	}
	sep := byte(' ')
	for _, k := range sortedKeys(p.Fields) {
		b = append(b, sep)
		sep = ','
		b = appendEscaped(b, k, ",= ")
		b = append(b, '=')
		var err error
		if b, err = appendFieldValue(b, p.Fields[k]); err != nil {
			return b, fmt.Errorf("field %q of %q: %w", k, p.Measurement, err)
		}
	}
	if !p.Time.IsZero() {
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Time.UnixNano(), 10)
	}
	return append(b, '\n'), nil
}

func appendFieldValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return b, fmt.Errorf("non-finite float %v", x)
		}
		return strconv.AppendFloat(b, x, 'g', -1, 64), nil
	case float32:
		return appendFieldValue(b, float64(x))
	case int:
		return append(strconv.AppendInt(b, int64(x), 10), 'i'), nil
	case int64:
		return append(strconv.AppendInt(b, x, 10), 'i'), nil
	case uint64:
		return append(strconv.AppendUint(b, x, 10), 'u'), nil
	case time.Duration:
		return append(strconv.AppendInt(b, int64(x), 10), 'i'), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case string:
		b = append(b, '"')
		b = appendEscaped(b, x, `"\`)
		return append(b, '"'), nil
	default:
		return b, fmt.Errorf("unsupported field type %T", v)
	}
}

// appendEscaped backslash-escapes the characters in special; newlines, which
// line protocol cannot carry in any element, become spaces.
func appendEscaped(b []byte, s, special string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\n' || c == '\r' {
			b = append(b, ' ')
			continue
		}
		if strings.IndexByte(special, c) >= 0 {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
