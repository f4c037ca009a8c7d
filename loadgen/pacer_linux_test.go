//go:build linux

package loadgen

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// The pacer's raised priority must not spread: threads the runtime starts
// from the pacer's thread get the normal policy and nice value back
// (SCHED_FLAG_RESET_ON_FORK).
func TestPacerPriorityResetsOnFork(t *testing.T) {
	type got struct {
		mode string
		attr *unix.SchedAttr
		err  error
	}
	for _, mode := range []string{PacerAuto, PacerNice} {
		c := make(chan got, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			m := raisePacerPriority(mode)
			a, err := unix.SchedGetAttr(0, 0)
			c <- got{m, a, err}
		}()
		g := <-c
		if g.err != nil {
			t.Fatal(g.err)
		}
		if g.mode == PacerNormal {
			t.Skipf("%s: no privilege to raise the priority (not root, no CAP_SYS_NICE); nothing to reset", mode)
		}
		if g.attr.Flags&unix.SCHED_FLAG_RESET_ON_FORK == 0 {
			t.Errorf("%s → %s: policy %d flags %#x, want SCHED_FLAG_RESET_ON_FORK", mode, g.mode, g.attr.Policy, g.attr.Flags)
		}
		want := uint32(unix.SCHED_FIFO)
		if g.mode == PacerNice {
			want = unix.SCHED_NORMAL
			if g.attr.Nice != -20 {
				t.Errorf("%s: nice %d, want -20", mode, g.attr.Nice)
			}
		}
		if g.attr.Policy != want {
			t.Errorf("%s → %s: policy %d, want %d", mode, g.mode, g.attr.Policy, want)
		}
	}
}

// On one CPU "auto" must not take SCHED_FIFO (a real-time pacer starves the
// readers and the runtime there); "realtime" still does when asked for.
func TestPacerAutoOnOneCPU(t *testing.T) {
	for _, c := range []struct {
		mode, want string
	}{
		{PacerAuto, PacerNice},
		{PacerRealtime, PacerRealtime},
	} {
		got := make(chan string, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			// One CPU of those the thread may use (CPU 0 may not be one:
			// a container's cpuset).
			var all, one unix.CPUSet
			if err := unix.SchedGetaffinity(0, &all); err != nil {
				got <- "affinity: " + err.Error()
				return
			}
			for cpu := range 1024 {
				if all.IsSet(cpu) {
					one.Set(cpu)
					break
				}
			}
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				got <- "affinity: " + err.Error()
				return
			}
			got <- raisePacerPriority(c.mode)
		}()
		g := <-got
		if g == PacerNormal {
			t.Skipf("%s: no privilege to raise the priority (not root, no CAP_SYS_NICE)", c.mode)
		}
		if g != c.want {
			t.Errorf("%s on one CPU: %s, want %s", c.mode, g, c.want)
		}
	}
}

// A run in a process at a real-time policy (every thread SCHED_FIFO, as
// under chrt) adds no P for its pacer: with more Ps than CPUs, one spinning
// real-time thread is never preempted by another. Not parallel: it reads
// the process's GOMAXPROCS.
func TestNoPacerPWhenRealtime(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	base := runtime.GOMAXPROCS(0)
	got := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}
		if unix.SchedSetAttr(0, &attr, 0) != nil {
			got <- -1
			return
		}
		release := addPacerP()
		got <- runtime.GOMAXPROCS(0)
		release()
	}()
	g := <-got
	if g == -1 {
		t.Skip("no privilege to take SCHED_FIFO (not root, no CAP_SYS_NICE)")
	}
	if g != base {
		t.Errorf("a real-time thread's run: GOMAXPROCS %d, want %d as it was", g, base)
	}
}
