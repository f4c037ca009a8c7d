//go:build linux

package loadgen

import (
	"golang.org/x/sys/unix"
)

// raisePacerPriority gives the calling thread (the pacer's, locked with
// runtime.LockOSThread and never unlocked, so the thread dies with its
// settings) what it needs to keep the schedule on a busy machine, and says
// what it got. Timer slack goes to 1 ns, so nanosleep wakes when asked
// rather than up to 50 µs later. With "auto" or "realtime" the thread asks
// for SCHED_FIFO at the lowest real-time priority: a woken pacer then runs at
// once instead of waiting for the scheduler to preempt the server or the
// answer readers, which is what sets the lateness tail when generator and
// server share the cores. Without that privilege (root, CAP_SYS_NICE or
// RLIMIT_RTPRIO) "auto" tries nice -20, then stays at normal priority.
//
// "auto" takes SCHED_FIFO only when the thread may run on two CPUs or more:
// confined to one (taskset, or a Slurm step of one CPU under task/affinity
// or cgroups) a real-time pacer takes that CPU from the answer readers and
// the Go runtime whenever it runs behind, and lateness grew to seconds
// (p99 1.2–1.7 s at 10,000/s, against 0.08 ms at nice -20 on the same CPU;
// docs/benchmarks.md). There it asks for nice -20 instead.
//
// Either way the priority is set with SCHED_FLAG_RESET_ON_FORK: the Go
// runtime starts new threads from whichever thread needs one, the pacer's
// included, and a thread inherits its creator's policy and nice value.
// Without the flag a run ended with many real-time threads (readers,
// workers, the GC), which took the cores from everything else, the server
// under test and other jobs on the machine too.
func raisePacerPriority(mode string) string {
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	if mode == PacerNormal {
		return PacerNormal
	}
	if mode == PacerRealtime || (mode == PacerAuto && usableCPUs() >= 2) {
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1, Flags: unix.SCHED_FLAG_RESET_ON_FORK}
		if unix.SchedSetAttr(0, &attr, 0) == nil {
			return PacerRealtime
		}
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL, Nice: -20, Flags: unix.SCHED_FLAG_RESET_ON_FORK}
	if unix.SchedSetAttr(0, &attr, 0) == nil {
		return PacerNice
	}
	return PacerNormal
}

// threadRealtime says whether the calling thread runs at a real-time
// policy (SCHED_FIFO or SCHED_RR): in a process started under chrt, every
// thread does.
func threadRealtime() bool {
	a, err := unix.SchedGetAttr(0, 0)
	return err == nil && (a.Policy == unix.SCHED_FIFO || a.Policy == unix.SCHED_RR)
}

// usableCPUs is how many CPUs the calling thread may run on (its affinity
// mask); 0 when that cannot be read.
func usableCPUs() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return 0
	}
	return set.Count()
}
