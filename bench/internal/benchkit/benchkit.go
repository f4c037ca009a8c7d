// Package benchkit holds what the benchmark programs under bench/ share:
// the state of the machine they report beside their figures, and their
// comma-separated flag lists.
package benchkit

import (
	"os"
	"strconv"
	"strings"
)

// Ints parses a comma-separated list of integers ("1000,2000"), skipping
// what is not one.
func Ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// LoadAvg is the machine's 1, 5 and 15 minute load averages ("?" where
// /proc/loadavg cannot be read).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// NumCPU is how many CPUs the machine has (/proc/cpuinfo), whatever this
// process may use.
func NumCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
