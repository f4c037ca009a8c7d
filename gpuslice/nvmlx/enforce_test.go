package nvmlx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/results"
)

// gpuState is what the mock devices report: per device, the compute
// processes and their SM utilisation. Tests change it while the enforcer
// runs, the way a real workload's allocations change what NVML reports.
type gpuState struct {
	mu    sync.Mutex
	procs map[int][]nvml.ProcessInfo
	sm    map[int]map[uint32]uint32
	ts    uint64
}

func (g *gpuState) set(dev, pid int, mem gpuslice.Bytes, sm uint32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ps := g.procs[dev]
	for i := range ps {
		if ps[i].Pid == uint32(pid) {
			ps = slices.Delete(ps, i, i+1)
			break
		}
	}
	g.procs[dev] = append(ps, nvml.ProcessInfo{Pid: uint32(pid), UsedGpuMemory: uint64(mem)})
	if g.sm[dev] == nil {
		g.sm[dev] = map[uint32]uint32{}
	}
	g.sm[dev][uint32(pid)] = sm
}

// wire fills in the functions go-nvml's mock servers leave unset, so the
// same nvmlx code that runs on a real GPU runs on the mock.
func wire(srv *server.Server) *gpuState {
	g := &gpuState{procs: map[int][]nvml.ProcessInfo{}, sm: map[int]map[uint32]uint32{}}
	for i, d := range srv.Devices {
		dev := d.(*server.Device)
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
			g.mu.Lock()
			defer g.mu.Unlock()
			return slices.Clone(g.procs[i]), nvml.SUCCESS
		}
		dev.GetProcessUtilizationFunc = func(last uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.ts++
			var out []nvml.ProcessUtilizationSample
			for pid, sm := range g.sm[i] {
				out = append(out, nvml.ProcessUtilizationSample{Pid: pid, SmUtil: sm, TimeStamp: g.ts})
			}
			if len(out) == 0 {
				return nil, nvml.ERROR_NOT_FOUND
			}
			return out, nvml.SUCCESS
		}
	}
	return g
}

// child is a real process in a (pretend) Slurm job: SLURM_JOB_ID is in its
// environment, which is where ProcFS finds it on a cluster without job
// cgroups.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	sig  syscall.Signal // the signal that ended it
}

func spawn(t *testing.T, job string, ignoreTERM bool) *child {
	t.Helper()
	c := start(t, job, ignoreTERM)
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.done })
	return c
}

func spawnNoCleanup(t *testing.T, job string) *child { return start(t, job, false) }

func start(t *testing.T, job string, ignoreTERM bool) *child {
	args := []string{"sleep", "300"}
	if ignoreTERM {
		args = []string{"sh", "-c", `trap "" TERM; exec sleep 300`}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "SLURM_JOB_ID="+job)
	if job == "" {
		cmd.Env = os.Environ()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			c.sig = ws.Signal()
		}
		close(c.done)
	}()
	// Wait until the exec'd program's environment is visible in /proc.
	for i := 0; i < 200; i++ {
		if j, ok := (&gpuslice.ProcFS{}).JobOf(cmd.Process.Pid); (ok && j == job) || job == "" {
			if !ignoreTERM || isSleep(cmd.Process.Pid) {
				return c
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("child %d never showed job %q", cmd.Process.Pid, job)
	return nil
}

func isSleep(pid int) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return string(b) == "sleep\n"
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *child) waitDead(t *testing.T, within time.Duration) syscall.Signal {
	t.Helper()
	select {
	case <-c.done:
		return c.sig
	case <-time.After(within):
		t.Fatalf("pid %d still alive after %s", c.pid(), within)
	}
	return 0
}

// recorder is a Signaller that does the real kill(2) and records it;
// Requeue records and fails (these processes are in no real Slurm job) or
// succeeds when requeueOK.
type recorder struct {
	gpuslice.OSSignaller
	mu        sync.Mutex
	signals   map[int][]syscall.Signal
	requeues  []string
	requeueOK bool
}

func (r *recorder) Signal(pid int, sig syscall.Signal) error {
	r.mu.Lock()
	if r.signals == nil {
		r.signals = map[int][]syscall.Signal{}
	}
	r.signals[pid] = append(r.signals[pid], sig)
	r.mu.Unlock()
	return r.OSSignaller.Signal(pid, sig)
}

func (r *recorder) Requeue(_ context.Context, job string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requeues = append(r.requeues, job)
	if r.requeueOK {
		return nil
	}
	return errors.New("scontrol requeue " + job + ": Job is no longer pending execution")
}

func (r *recorder) signalled() map[int][]syscall.Signal {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int][]syscall.Signal{}
	for k, v := range r.signals {
		out[k] = slices.Clone(v)
	}
	return out
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// memSink collects points (a results.Sink for assertions).
type memSink struct {
	mu  sync.Mutex
	pts []results.Point
}

func (s *memSink) Write(_ context.Context, p ...results.Point) error {
	s.mu.Lock()
	s.pts = append(s.pts, p...)
	s.mu.Unlock()
	return nil
}
func (s *memSink) Flush(context.Context) error { return nil }
func (s *memSink) Close() error                { return nil }

func newEnforcer(t *testing.T, srv *server.Server, lim gpuslice.StaticLimits) (*gpuslice.Enforcer, *recorder, *fakeClock, *memSink) {
	t.Helper()
	s, err := Open(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rec, clk, sink := &recorder{}, &fakeClock{t: time.Unix(1_800_000_000, 0)}, &memSink{}
	return &gpuslice.Enforcer{GPU: s, Procs: &gpuslice.ProcFS{}, Sig: rec, Limits: lim, Clock: clk, Sink: sink,
		Config: gpuslice.EnforcerConfig{Node: "testnode", Interval: 500 * time.Millisecond}}, rec, clk, sink
}

func TestEnforcerSignalsExactlyTheOffendingJob(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  func() *server.Server
	}{{"dgxa100", dgxa100.New}, {"dgxh100", dgxh100.New}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.srv()
			g := wire(srv)
			term := gpuslice.JobLimit{VRAM: 4 * gpuslice.GiB, QoS: "high", OnOverrun: gpuslice.ActionTerminate, Grace: time.Hour}
			e, rec, _, sink := newEnforcer(t, srv, gpuslice.StaticLimits{"1001": term, "1002": term})
			over1, over2 := spawn(t, "1001", false), spawn(t, "1001", false) // job 1001: 3 + 2 GiB on two GPUs
			under := spawn(t, "1002", false)                                 // job 1002: 4 GiB, at its limit
			nolimit := spawn(t, "1003", false)                               // job 1003: no limit known
			nojob := spawn(t, "", false)                                     // not in a job
			idle := spawn(t, "1001", false)                                  // job 1001 but not on a GPU
			g.set(0, over1.pid(), 3*gpuslice.GiB, 0)
			g.set(1, over2.pid(), 2*gpuslice.GiB, 0)
			g.set(1, under.pid(), 4*gpuslice.GiB, 0)
			g.set(2, nolimit.pid(), 30*gpuslice.GiB, 0)
			g.set(3, nojob.pid(), 30*gpuslice.GiB, 0)

			evs, err := e.Poll(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0].Job != "1001" || evs[0].Action != "sigterm" || evs[0].Used != uint64(5*gpuslice.GiB) {
				t.Fatalf("events %+v", evs)
			}
			want := map[int][]syscall.Signal{over1.pid(): {syscall.SIGTERM}, over2.pid(): {syscall.SIGTERM}}
			if got := rec.signalled(); !mapsEqual(got, want) {
				t.Fatalf("signalled %v, want %v", got, want)
			}
			for _, c := range []*child{over1, over2} {
				if sig := c.waitDead(t, 2*time.Second); sig != syscall.SIGTERM {
					t.Errorf("pid %d ended by %v", c.pid(), sig)
				}
			}
			time.Sleep(50 * time.Millisecond)
			for _, c := range []*child{under, nolimit, nojob, idle} {
				if !c.alive() {
					t.Errorf("pid %d (not offending) died", c.pid())
				}
			}
			if len(sink.pts) != 1 || sink.pts[0].Measurement != "slice_violation" || sink.pts[0].Tags["job"] != "1001" ||
				sink.pts[0].Tags["action"] != "sigterm" || sink.pts[0].Tags["kind"] != "vram" || sink.pts[0].Fields["n_pids"] != int64(2) {
				t.Errorf("points %+v", sink.pts)
			}
			if _, err := results.AppendLine(nil, sink.pts[0]); err != nil {
				t.Errorf("point does not encode: %v", err)
			}
		})
	}
}

func mapsEqual(a, b map[int][]syscall.Signal) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestEnforcerGraceThenKill(t *testing.T) {
	srv := dgxa100.New()
	g := wire(srv)
	e, rec, clk, _ := newEnforcer(t, srv, gpuslice.StaticLimits{"2001": {VRAM: gpuslice.GiB, OnOverrun: gpuslice.ActionTerminate, Grace: 10 * time.Second}})
	stubborn := spawn(t, "2001", true) // ignores SIGTERM
	neighbour := spawn(t, "2002", true)
	g.set(0, stubborn.pid(), 2*gpuslice.GiB, 0)
	g.set(0, neighbour.pid(), 20*gpuslice.GiB, 0)
	ctx := context.Background()

	evs, _ := e.Poll(ctx)
	if len(evs) != 1 || evs[0].Action != "sigterm" {
		t.Fatalf("first poll: %+v", evs)
	}
	time.Sleep(100 * time.Millisecond)
	if !stubborn.alive() {
		t.Fatal("SIGTERM-ignoring process died on SIGTERM")
	}
	clk.Add(9999 * time.Millisecond)
	if evs, _ := e.Poll(ctx); len(evs) != 0 {
		t.Fatalf("acted before the grace time: %+v", evs)
	}
	clk.Add(time.Millisecond)
	evs, _ = e.Poll(ctx)
	if len(evs) != 1 || evs[0].Action != "sigkill" || !slices.Equal(evs[0].PIDs, []int{stubborn.pid()}) {
		t.Fatalf("after grace: %+v", evs)
	}
	if sig := stubborn.waitDead(t, 2*time.Second); sig != syscall.SIGKILL {
		t.Errorf("ended by %v, want SIGKILL", sig)
	}
	clk.Add(time.Minute)
	if evs, _ := e.Poll(ctx); len(evs) != 0 {
		t.Fatalf("acted again: %+v", evs)
	}
	if got := rec.signalled(); len(got) != 1 || !neighbour.alive() {
		t.Fatalf("signalled %v; neighbour alive %v", got, neighbour.alive())
	}
}

func TestEnforcerRequeue(t *testing.T) {
	srv := dgxh100.New()
	g := wire(srv)
	lim := gpuslice.JobLimit{VRAM: gpuslice.GiB, QoS: "low", OnOverrun: gpuslice.ActionRequeue, Grace: 5 * time.Second}
	e, rec, clk, _ := newEnforcer(t, srv, gpuslice.StaticLimits{"3001": lim, "3002": lim})
	a, b := spawn(t, "3001", false), spawn(t, "3002", false)
	g.set(0, a.pid(), 2*gpuslice.GiB, 0)
	g.set(1, b.pid(), 2*gpuslice.GiB, 0)
	rec.requeueOK = true
	e.Limits = gpuslice.StaticLimits{"3001": lim}
	evs, _ := e.Poll(context.Background())
	if len(evs) != 1 || evs[0].Action != gpuslice.ActionRequeue || !slices.Equal(rec.requeues, []string{"3001"}) {
		t.Fatalf("events %+v requeues %v", evs, rec.requeues)
	}
	if len(rec.signalled()) != 0 {
		t.Fatalf("requeue signalled processes itself: %v", rec.signalled())
	}
	// Still on the GPU after the grace time: killed.
	clk.Add(5 * time.Second)
	evs, _ = e.Poll(context.Background())
	if len(evs) != 1 || evs[0].Action != "sigkill" {
		t.Fatalf("after grace: %+v", evs)
	}
	a.waitDead(t, 2*time.Second)

	// A job Slurm cannot requeue is terminated instead.
	rec.requeueOK = false
	e.Limits = gpuslice.StaticLimits{"3002": lim}
	evs, _ = e.Poll(context.Background())
	if len(evs) != 1 || evs[0].Action != "sigterm" || evs[0].Err == "" {
		t.Fatalf("fallback: %+v", evs)
	}
	if sig := b.waitDead(t, 2*time.Second); sig != syscall.SIGTERM {
		t.Errorf("ended by %v", sig)
	}
}

func TestEnforcerComputeSustained(t *testing.T) {
	srv := dgxa100.New()
	g := wire(srv)
	e, rec, clk, sink := newEnforcer(t, srv, gpuslice.StaticLimits{"4001": {ComputePercent: 25, QoS: "medium", OnOverrun: gpuslice.ActionTerminate, Grace: time.Second}})
	e.Config.ComputeSustain = 3 * time.Second
	p := spawn(t, "4001", false)
	g.set(0, p.pid(), gpuslice.MiB, 60)
	ctx := context.Background()
	for i := 0; i < 3; i++ { // 0 s, 1 s, 2 s: not yet sustained
		if evs, _ := e.Poll(ctx); len(evs) != 0 {
			t.Fatalf("poll %d: %+v", i, evs)
		}
		clk.Add(time.Second)
	}
	evs, _ := e.Poll(ctx) // 3 s
	if len(evs) != 1 || evs[0].Kind != "compute" || evs[0].Action != gpuslice.ActionReport || evs[0].Used != 60 || evs[0].Limit != 25 {
		t.Fatalf("sustained: %+v", evs)
	}
	clk.Add(time.Second)
	if evs, _ := e.Poll(ctx); len(evs) != 0 {
		t.Fatalf("reported twice: %+v", evs)
	}
	if len(rec.signalled()) != 0 || !p.alive() {
		t.Fatal("compute overrun must only be reported")
	}
	if len(sink.pts) != 1 || sink.pts[0].Tags["kind"] != "compute" {
		t.Fatalf("points %+v", sink.pts)
	}
}

func TestEnforcerDryRunTouchesNothing(t *testing.T) {
	srv := dgxa100.New()
	g := wire(srv)
	e, rec, _, _ := newEnforcer(t, srv, gpuslice.StaticLimits{"5001": {VRAM: 1, OnOverrun: gpuslice.ActionTerminate}})
	e.Config.DryRun = true
	p := spawn(t, "5001", false)
	g.set(0, p.pid(), gpuslice.GiB, 0)
	evs, _ := e.Poll(context.Background())
	if len(evs) != 1 || evs[0].Action != "dry-run:terminate" || len(rec.signalled()) != 0 {
		t.Fatalf("%+v %v", evs, rec.signalled())
	}
}

// TestEnforcerActsWithinOnePollInterval runs the enforcer loop in real time
// and measures from the moment the mock starts reporting the overrun to the
// moment the process is dead.
func TestEnforcerActsWithinOnePollInterval(t *testing.T) {
	srv := dgxh100.New()
	g := wire(srv)
	e, _, _, _ := newEnforcer(t, srv, gpuslice.StaticLimits{"6001": {VRAM: gpuslice.GiB, OnOverrun: gpuslice.ActionTerminate, Grace: time.Minute}})
	e.Clock = nil // real time
	const iv = 200 * time.Millisecond
	e.Config.Interval = iv
	p := spawn(t, "6001", false)
	g.set(0, p.pid(), 512*gpuslice.MiB, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, nil) }()
	time.Sleep(iv + iv/2) // a couple of polls below the limit
	if !p.alive() {
		t.Fatal("killed below its limit")
	}
	start := time.Now()
	g.set(0, p.pid(), 2*gpuslice.GiB, 0)
	p.waitDead(t, 5*time.Second)
	lat := time.Since(start)
	t.Logf("overrun → process dead: %s (interval %s)", lat, iv)
	// One interval, plus scheduling slack on a busy 2-core CI machine (the
	// benchmark OverrunLatency measures the real figure at 500 ms).
	if lat > iv+250*time.Millisecond {
		t.Errorf("acted after %s, want within one poll interval (%s)", lat, iv)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// countingLib fails Init and records every other call: after a failed Init
// nothing may be called (on a machine without the library it would kill
// the process).
type countingLib struct {
	Lib
	calls []string
}

func (c *countingLib) Init() nvml.Return {
	c.calls = append(c.calls, "Init")
	return nvml.ERROR_LIBRARY_NOT_FOUND
}
func (c *countingLib) Shutdown() nvml.Return {
	c.calls = append(c.calls, "Shutdown")
	return nvml.SUCCESS
}
func (c *countingLib) DeviceGetCount() (int, nvml.Return) {
	c.calls = append(c.calls, "DeviceGetCount")
	return 0, nvml.SUCCESS
}
func (c *countingLib) SystemGetDriverVersion() (string, nvml.Return) {
	c.calls = append(c.calls, "SystemGetDriverVersion")
	return "", nvml.SUCCESS
}

func TestNoCallAfterFailedInit(t *testing.T) {
	c := &countingLib{}
	n := Probe(c, nil)
	if !slices.Equal(c.calls, []string{"Init"}) {
		t.Fatalf("calls after failed Init: %v", c.calls)
	}
	if n.Note == "" || len(n.Devices) != 1 || n.Devices[0].Type != "cpu" {
		t.Fatalf("node without GPU: %+v", n)
	}
}

// TestRealLibraryWithoutGPU runs the real go-nvml on this machine: with no
// libnvidia-ml the process must survive and say so.
func TestRealLibraryWithoutGPU(t *testing.T) {
	s, err := Open(Default())
	if err == nil {
		defer s.Close()
		t.Skipf("this machine has NVML with %d GPUs; the no-GPU path is not testable here", s.Count())
	}
	if !errors.Is(err, ErrNoNVML) {
		t.Fatalf("err = %v, want ErrNoNVML", err)
	}
	n := Probe(Default(), nil)
	if n.Note == "" || n.Devices[0].Type != "cpu" || n.Devices[0].DeviceInfo["num_virtual_cores"].(int) < 1 {
		t.Fatalf("probe: %+v", n)
	}
}

func TestProbeMockShape(t *testing.T) {
	srv := dgxh100.New()
	n := Probe(srv, nil)
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Hostname string `json:"hostname"`
		Status   string `json:"status"`
		Driver   string `json:"driver_version"`
		Devices  []struct {
			Name         string         `json:"name"`
			Type         string         `json:"type"`
			DeviceInfo   map[string]any `json:"device_info"`
			DeviceConfig struct {
				Peak *float64 `json:"peak_fp16_TFLOPS"`
			} `json:"device_config"`
			Count int `json:"available_count"`
		} `json:"devices"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Status != "Ready" || back.Driver != "550.54.15" || len(back.Devices) != 2 {
		t.Fatalf("node %s", b)
	}
	d := back.Devices[0]
	if d.Name != "NVIDIA H100 80GB HBM3" || d.Type != "gpu" || d.Count != 8 || d.DeviceConfig.Peak == nil || *d.DeviceConfig.Peak != 989 ||
		d.DeviceInfo["memory_total_bytes"].(float64) != 81920*1024*1024 || d.DeviceInfo["driver_version"] != "550.54.15" {
		t.Fatalf("gpu device %s", b)
	}
	if mig := d.DeviceInfo["mig_mode"].([]any); len(mig) != 8 || mig[0] != "disabled" {
		t.Fatalf("mig %v", mig)
	}
	// MIG enabled on one device shows up.
	srv.Devices[3].SetMigMode(nvml.DEVICE_MIG_ENABLE)
	if m := Probe(srv, nil).Devices[0].DeviceInfo["mig_mode"].([]string); m[3] != "enabled" {
		t.Fatalf("mig after enable: %v", m)
	}
	if back.Devices[1].Type != "cpu" {
		t.Fatalf("cpu device missing: %s", b)
	}
}

func TestEnforcerActsDespiteOneFailingGPU(t *testing.T) {
	srv := dgxa100.New()
	g := wire(srv)
	srv.Devices[5].(*server.Device).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return nil, nvml.ERROR_GPU_IS_LOST
	}
	e, _, _, _ := newEnforcer(t, srv, gpuslice.StaticLimits{"8001": {VRAM: gpuslice.GiB, OnOverrun: gpuslice.ActionTerminate, Grace: time.Minute}})
	p := spawn(t, "8001", false)
	g.set(0, p.pid(), 2*gpuslice.GiB, 0)
	evs, err := e.Poll(context.Background())
	if err == nil || len(evs) != 1 || evs[0].Action != "sigterm" {
		t.Fatalf("events %+v, err %v: want the overrun acted on and GPU 5's error returned", evs, err)
	}
	p.waitDead(t, 2*time.Second)
}

// TestEnforcerSeesMIGProcesses: on a MIG GPU the processes are listed on
// the MIG devices, not the parent; the enforcer must still see them.
func TestEnforcerSeesMIGProcesses(t *testing.T) {
	srv := dgxh100.New()
	wire(srv)
	parent := srv.Devices[2].(*server.Device)
	parent.SetMigMode(nvml.DEVICE_MIG_ENABLE)
	p := spawn(t, "8101", false)
	other := spawn(t, "8102", false)
	migDev := func(pid int, mem gpuslice.Bytes) nvml.Device {
		return &mock.Device{GetComputeRunningProcessesFunc: func() ([]nvml.ProcessInfo, nvml.Return) {
			return []nvml.ProcessInfo{{Pid: uint32(pid), UsedGpuMemory: uint64(mem)}}, nvml.SUCCESS
		}}
	}
	parent.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
	parent.GetMigDeviceHandleByIndexFunc = func(k int) (nvml.Device, nvml.Return) {
		switch k {
		case 0:
			return migDev(p.pid(), 3*gpuslice.GiB), nvml.SUCCESS
		case 3:
			return migDev(other.pid(), 3*gpuslice.GiB), nvml.SUCCESS
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	lim := gpuslice.JobLimit{VRAM: 2 * gpuslice.GiB, OnOverrun: gpuslice.ActionTerminate, Grace: time.Minute}
	e, rec, _, _ := newEnforcer(t, srv, gpuslice.StaticLimits{"8101": lim})
	evs, err := e.Poll(context.Background())
	if err != nil || len(evs) != 1 || evs[0].Job != "8101" || !slices.Equal(evs[0].Devices, []int{2}) {
		t.Fatalf("events %+v, err %v", evs, err)
	}
	p.waitDead(t, 2*time.Second)
	if got := rec.signalled(); len(got) != 1 || !other.alive() {
		t.Fatalf("signalled %v", got)
	}
}
