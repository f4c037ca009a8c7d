package gpuslice

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLimitFromSliceEnv(t *testing.T) {
	m := mustModel(t, testModel)
	s, err := m.PlanOverride(Override{Profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := LimitFromEnv(func(k string) string { return s.Env[k] })
	if err != nil {
		t.Fatal(err)
	}
	// The plan's env round-trips into the enforcer's limit.
	if l.VRAM != 3*GiB || l.ComputePercent != 5 || l.QoS != "medium" || l.OnOverrun != ActionRequeue || l.Grace != 30*time.Second {
		t.Fatalf("%+v", l)
	}
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "no limit in the environment"},
		{map[string]string{EnvVRAMLimit: "lots"}, "bad memory quantity"},
		{map[string]string{EnvVRAMLimit: "1Gi", EnvOnOverrun: "explode"}, "want requeue, terminate or report"},
		{map[string]string{EnvThreadPct: "120"}, "want 0..100"},
		{map[string]string{EnvVRAMLimit: "1Gi", EnvGrace: "-1s"}, "duration"},
		{map[string]string{EnvThreadPct: "20", EnvOnComputeOverrun: "throttle"}, "want report, terminate or requeue"},
		{map[string]string{EnvThreadPct: "20", EnvComputeWindow: "soon"}, "want a duration such as 10s"},
	} {
		if _, err := LimitFromEnv(func(k string) string { return c.env[k] }); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q", c.env, err, c.want)
		}
	}
}

// The QoS's compute policy reaches the enforcer: on_compute_overrun and
// compute_window through the slice's environment; the defaults (report, the
// enforcer's window) add no variable.
func TestComputePolicyFromSliceEnv(t *testing.T) {
	m := mustModel(t, strings.Replace(testModel, "[qos.high]\n", "[qos.high]\non_compute_overrun = \"requeue\"\ncompute_window = \"20s\"\n", 1))
	s, err := m.PlanOverride(Override{Profile: "p", QoS: "high"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := LimitFromEnv(func(k string) string { return s.Env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if l.OnComputeOverrun != ActionRequeue || l.ComputeWindow != 20*time.Second || l.ComputePercent != 5 || !s.Requeue {
		t.Fatalf("%+v (requeue %v)", l, s.Requeue)
	}
	s, err = m.PlanOverride(Override{Profile: "p"}) // medium: defaults
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Env[EnvOnComputeOverrun]; ok {
		t.Errorf("default policy in the env: %v", s.Env)
	}
	if _, ok := s.Env[EnvComputeWindow]; ok {
		t.Errorf("default window in the env: %v", s.Env)
	}
	if l, err := LimitFromEnv(func(k string) string { return s.Env[k] }); err != nil || l.OnComputeOverrun != ActionReport || l.ComputeWindow != 0 {
		t.Fatalf("%+v %v", l, err)
	}
}

func TestRegisterAndDirLimits(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{EnvVRAMLimit: "2147483648", EnvQoS: "high", EnvOnOverrun: ActionTerminate, EnvGrace: "5s"}
	if err := RegisterLimits(dir, "77", func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	d := &DirLimits{Dir: dir}
	l, ok := d.Limit("77")
	if !ok || l.VRAM != 2*GiB || l.QoS != "high" || l.Grace != 5*time.Second {
		t.Fatalf("%+v %v", l, ok)
	}
	if _, ok := d.Limit("78"); ok {
		t.Fatal("unregistered job has a limit")
	}
	if _, ok := d.Limit("../77"); ok {
		t.Fatal("path in job id accepted")
	}
	if err := RegisterLimits(dir, "../x", func(k string) string { return env[k] }); err == nil {
		t.Fatal("bad job id registered")
	}
	// A rewritten file is read again (mtime changes).
	later := time.Now().Add(2 * time.Second)
	env[EnvVRAMLimit] = "1Gi"
	if err := RegisterLimits(dir, "77", func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Join(dir, "77"), later, later)
	if l, _ := d.Limit("77"); l.VRAM != GiB {
		t.Fatalf("stale limit %+v", l)
	}
}

func TestProcFSCgroupBeatsEnviron(t *testing.T) {
	root := t.TempDir()
	mk := func(pid, cgroup, environ string) {
		d := filepath.Join(root, pid)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "stat"), []byte(pid+" (sleep) S 1 1 1 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 12345 1000 100"), 0o644)
		os.WriteFile(filepath.Join(d, "cgroup"), []byte(cgroup), 0o644)
		os.WriteFile(filepath.Join(d, "environ"), []byte(environ), 0o644)
	}
	mk("100", "0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0\n", "SLURM_JOB_ID=9999\x00")
	mk("101", "12:memory:/slurm/uid_0/job_55/step_batch\n", "")
	mk("102", "0::/user.slice\n", "PATH=/bin\x00SLURM_JOB_ID=31\x00")
	mk("103", "0::/user.slice\n", "PATH=/bin\x00")
	p := &ProcFS{Root: root}
	for pid, want := range map[int]string{100: "4242", 101: "55", 102: "31", 103: "", 104: ""} {
		got, ok := p.JobOf(pid)
		if got != want || ok != (want != "") {
			t.Errorf("pid %d: %q %v, want %q", pid, got, ok, want)
		}
	}
}
