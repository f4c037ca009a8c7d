package nvmlx

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/gpuorch/gpuorch/gpuslice"
)

// smSample is one NVML process utilisation sample: process proc (an index
// into the test's processes) at sm % for one sample period.
type smSample struct {
	proc int
	sm   uint32
}

// unsupported is a batch for which NVML answers NOT_SUPPORTED (no reading).
var unsupported = []smSample{{proc: -1}}

// utilSeq feeds a device's nvmlDeviceGetProcessUtilization one batch of
// samples per call (the enforcer calls it once per poll), as the driver
// hands out the samples taken since lastSeen: NOT_FOUND for an empty batch,
// and only samples newer than lastSeen.
type utilSeq struct {
	mu      sync.Mutex
	batches [][]smSample
	pids    []int
	ts      uint64
	calls   int
}

func (q *utilSeq) install(srv *server.Server, dev int) {
	srv.Devices[dev].(*server.Device).GetProcessUtilizationFunc = func(last uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
		q.mu.Lock()
		defer q.mu.Unlock()
		var b []smSample
		if q.calls < len(q.batches) {
			b = q.batches[q.calls]
		}
		q.calls++
		if len(b) == 1 && b[0].proc < 0 {
			return nil, nvml.ERROR_NOT_SUPPORTED
		}
		var out []nvml.ProcessUtilizationSample
		for _, s := range b {
			q.ts += 1000
			if q.ts > last {
				out = append(out, nvml.ProcessUtilizationSample{Pid: uint32(q.pids[s.proc]), SmUtil: s.sm, TimeStamp: q.ts})
			}
		}
		if len(out) == 0 {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return out, nvml.SUCCESS
	}
}

// repeat is n copies of a batch.
func repeat(n int, b ...smSample) [][]smSample {
	out := make([][]smSample, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func seq(parts ...[][]smSample) [][]smSample { return slices.Concat(parts...) }

// TestComputeWindowAndHysteresis drives the enforcer with sequences of NVML
// process utilisation samples, one poll a second, and checks at which polls
// a job over its compute limit (25 %, hysteresis releasing at 20 %) is
// reported. Job "A" runs processes 0 and 1 on GPU 0; job "B" process 2,
// limited to 50 %.
func TestComputeWindowAndHysteresis(t *testing.T) {
	const lim = 25
	for _, tc := range []struct {
		name    string
		window  time.Duration
		polls   [][]smSample
		wantAt  []int // polls with a report for job A
		wantUse uint64
	}{
		{"one busy sample does nothing", time.Nanosecond, seq(repeat(1, smSample{0, 90}), repeat(5)), nil, 0},
		// A spike among the samples of one poll is averaged out: max would be 100.
		{"a busy sample within a poll is averaged", time.Nanosecond, repeat(4, smSample{0, 100}, smSample{0, 1}, smSample{0, 1}, smSample{0, 1}, smSample{0, 1}), nil, 0},
		{"sustained over the window", 3 * time.Second, repeat(8, smSample{0, 60}), []int{3}, 60},
		{"two polls suffice with a short window", time.Nanosecond, repeat(3, smSample{0, 60}), []int{1}, 60},
		{"dips above the release level keep the episode", 3 * time.Second,
			seq(repeat(1, smSample{0, 60}), repeat(1, smSample{0, 22}), repeat(1, smSample{0, 60}), repeat(1, smSample{0, 22}), repeat(1, smSample{0, 60})), []int{3}, 41},
		{"a dip to the release level starts over", 3 * time.Second,
			seq(repeat(2, smSample{0, 60}), repeat(1, smSample{0, 20}), repeat(5, smSample{0, 60})), []int{6}, 60},
		{"idle (no samples) starts over", 3 * time.Second,
			seq(repeat(1, smSample{0, 60}), repeat(1), repeat(5, smSample{0, 60})), []int{5}, 60},
		{"no reading leaves the episode running", 3 * time.Second,
			seq(repeat(1, smSample{0, 60}), [][]smSample{unsupported}, repeat(3, smSample{0, 60})), []int{3}, 60},
		{"a mean below the limit is not acted on", 3 * time.Second, seq(repeat(1, smSample{0, 30}), repeat(8, smSample{0, 21})), nil, 0},
		{"a job's processes on one GPU add up", 2 * time.Second, repeat(4, smSample{0, 15}, smSample{1, 15}, smSample{2, 40}), []int{2}, 30},
		{"reported again after a new episode", time.Nanosecond,
			seq(repeat(3, smSample{0, 60}), repeat(1, smSample{0, 5}), repeat(2, smSample{0, 70})), []int{1, 5}, 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := dgxa100.New()
			g := wire(srv)
			procs := []*child{spawn(t, "A", false), spawn(t, "A", false), spawn(t, "B", false)}
			q := &utilSeq{batches: tc.polls}
			for _, p := range procs {
				g.set(0, p.pid(), gpuslice.GiB, 0)
				q.pids = append(q.pids, p.pid())
			}
			q.install(srv, 0)
			e, rec, clk, _ := newEnforcer(t, srv, gpuslice.StaticLimits{
				"A": {ComputePercent: lim, ComputeWindow: tc.window, OnComputeOverrun: gpuslice.ActionReport, QoS: "medium"},
				"B": {ComputePercent: 50, ComputeWindow: time.Nanosecond, OnComputeOverrun: gpuslice.ActionTerminate, Grace: time.Second},
			})
			var at []int
			var first gpuslice.Event
			for i := range tc.polls {
				evs, err := e.Poll(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range evs {
					if ev.Job != "A" || ev.Kind != gpuslice.KindCompute || ev.Action != gpuslice.ActionReport || ev.Limit != lim {
						t.Fatalf("poll %d: unexpected event %+v", i, ev)
					}
					if at = append(at, i); len(at) == 1 {
						first = ev
					}
				}
				clk.Add(time.Second)
			}
			if !slices.Equal(at, tc.wantAt) {
				t.Fatalf("reports at polls %v, want %v", at, tc.wantAt)
			}
			if len(at) > 0 && first.Used != tc.wantUse {
				t.Errorf("used %d, want %d (the episode's mean)", first.Used, tc.wantUse)
			}
			if len(rec.signalled()) != 0 {
				t.Errorf("signalled %v", rec.signalled())
			}
		})
	}
}

// TestComputeOverrunPolicies: terminate signals the job's GPU processes
// (SIGKILL after the grace time to one that ignores SIGTERM), requeue asks
// Slurm, report touches nothing; a job under its limit on the same GPU is
// never touched.
func TestComputeOverrunPolicies(t *testing.T) {
	for _, tc := range []struct {
		action   string
		want     []string // actions in order
		requeued bool
	}{
		{gpuslice.ActionTerminate, []string{"sigterm", "sigkill"}, false},
		{gpuslice.ActionRequeue, []string{gpuslice.ActionRequeue, "sigkill"}, true},
		{gpuslice.ActionReport, []string{gpuslice.ActionReport}, false},
	} {
		t.Run(tc.action, func(t *testing.T) {
			srv := dgxa100.New()
			g := wire(srv)
			hog, bystander := spawn(t, "7001", true), spawn(t, "7002", false) // hog ignores SIGTERM
			g.set(2, hog.pid(), gpuslice.GiB, 0)
			g.set(2, bystander.pid(), gpuslice.GiB, 0)
			q := &utilSeq{batches: repeat(20, smSample{0, 80}, smSample{1, 10}), pids: []int{hog.pid(), bystander.pid()}}
			q.install(srv, 2)
			e, rec, clk, sink := newEnforcer(t, srv, gpuslice.StaticLimits{
				"7001": {ComputePercent: 30, ComputeWindow: 2 * time.Second, OnComputeOverrun: tc.action, Grace: 3 * time.Second, QoS: "low"},
				"7002": {ComputePercent: 30, ComputeWindow: 2 * time.Second, OnComputeOverrun: tc.action, Grace: 3 * time.Second, QoS: "low"},
			})
			rec.requeueOK = true
			var got []string
			for i := 0; i < 8; i++ {
				evs, _ := e.Poll(context.Background())
				for _, ev := range evs {
					if ev.Job != "7001" || ev.Kind != gpuslice.KindCompute || ev.Used != 80 || ev.Limit != 30 {
						t.Fatalf("poll %d: %+v", i, ev)
					}
					if i < 2 {
						t.Fatalf("acted at poll %d, before the 2 s window", i)
					}
					got = append(got, ev.Action)
				}
				clk.Add(time.Second)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("actions %v, want %v", got, tc.want)
			}
			if tc.requeued != (len(rec.requeues) == 1) {
				t.Errorf("requeues %v", rec.requeues)
			}
			if tc.action == gpuslice.ActionReport {
				if len(rec.signalled()) != 0 || !hog.alive() {
					t.Fatalf("report signalled %v", rec.signalled())
				}
			} else if sig := hog.waitDead(t, 2*time.Second); sig != syscall.SIGKILL {
				t.Errorf("hog ended by %v, want SIGKILL after the grace time", sig)
			}
			if _, ok := rec.signalled()[bystander.pid()]; ok || !bystander.alive() {
				t.Error("the job under its limit was signalled")
			}
			if len(sink.pts) != len(tc.want) || sink.pts[0].Tags["kind"] != gpuslice.KindCompute {
				t.Errorf("points %+v", sink.pts)
			}
		})
	}
}

// TestVRAMAndComputeShareOneEscalation: a job SIGTERMed for VRAM is not
// SIGTERMed again when its compute window runs out; it gets SIGKILL at the
// grace time.
func TestVRAMAndComputeShareOneEscalation(t *testing.T) {
	srv := dgxa100.New()
	g := wire(srv)
	p := spawn(t, "8001", true)
	g.set(1, p.pid(), 2*gpuslice.GiB, 0)
	q := &utilSeq{batches: repeat(10, smSample{0, 90}), pids: []int{p.pid()}}
	q.install(srv, 1)
	e, _, clk, _ := newEnforcer(t, srv, gpuslice.StaticLimits{"8001": {VRAM: gpuslice.GiB, OnOverrun: gpuslice.ActionTerminate,
		ComputePercent: 10, ComputeWindow: time.Second, OnComputeOverrun: gpuslice.ActionTerminate, Grace: 4 * time.Second}})
	var got []string
	for i := 0; i < 6; i++ {
		evs, _ := e.Poll(context.Background())
		for _, ev := range evs {
			got = append(got, ev.Kind+":"+ev.Action)
		}
		clk.Add(time.Second)
	}
	if want := []string{"vram:sigterm", "vram:sigkill"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// TestSampleMeanPerProcess: Sample reports each process's mean SM % over
// the samples since the last poll, 0 for a listed process without a sample
// (NVML samples only processes with some use), and -1 where the device
// reports none.
func TestSampleMeanPerProcess(t *testing.T) {
	srv := dgxa100.New()
	g := wire(srv)
	g.set(0, 101, gpuslice.MiB, 0)
	g.set(0, 102, gpuslice.MiB, 0)
	g.set(1, 201, gpuslice.MiB, 0)
	q0 := &utilSeq{batches: [][]smSample{{{0, 10}, {0, 31}, {0, 20}}, nil}, pids: []int{101, 102}}
	q0.install(srv, 0)
	q1 := &utilSeq{batches: [][]smSample{unsupported, unsupported}, pids: []int{201}}
	q1.install(srv, 1)
	s, err := Open(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := [][]int{{20, 0}, {0, 0}} // poll 1: mean 20.3 → 20; poll 2: NOT_FOUND → idle
	for poll, w := range want {
		ds, err := s.Sample()
		if err != nil {
			t.Fatal(err)
		}
		got := map[int]int{}
		for _, d := range ds[:2] {
			for _, p := range d.Procs {
				got[p.PID] = p.SMUtil
			}
		}
		if got[101] != w[0] || got[102] != w[1] || got[201] != -1 {
			t.Errorf("poll %d: %v, want 101:%d 102:%d 201:-1", poll, got, w[0], w[1])
		}
	}
}
