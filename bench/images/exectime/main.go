// Command exectime runs a command N times and prints the median wall time
// and the median CPU time (user+sys, from the child's rusage), in ms:
// precise figures for short commands, without the fork of a `date` per
// sample that shell timing loops add.
//
// Usage: exectime [-n 20] command args...
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 20, "runs (after one warm-up run)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: exectime [-n N] command args...")
		os.Exit(2)
	}
	run := func() (wall, cpu time.Duration, err error) {
		cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
		start := time.Now()
		err = cmd.Run()
		wall = time.Since(start)
		if cmd.ProcessState != nil {
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
		}
		return wall, cpu, err
	}
	if _, _, err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "exectime: warm-up run:", err)
	}
	walls, cpus := make([]float64, *n), make([]float64, *n)
	for i := range walls {
		w, c, _ := run()
		walls[i], cpus[i] = float64(w.Microseconds())/1000, float64(c.Microseconds())/1000
	}
	fmt.Printf("%7.1f / %5.1f\n", median(walls), median(cpus))
}

func median(x []float64) float64 {
	sort.Float64s(x)
	if len(x)%2 == 1 {
		return x[len(x)/2]
	}
	return (x[len(x)/2-1] + x[len(x)/2]) / 2
}
