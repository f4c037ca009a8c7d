package orchestrator

// positions maps spec keys to the lines that define them.
type positions struct {
	lines map[string]int
}
