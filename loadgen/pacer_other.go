//go:build !linux

package loadgen

// raisePacerPriority is Linux-only; elsewhere the pacer runs at normal
// priority.
func raisePacerPriority(string) string { return PacerNormal }

// threadRealtime is Linux-only; elsewhere no thread is taken as real-time.
func threadRealtime() bool { return false }
