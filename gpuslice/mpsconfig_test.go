package gpuslice

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const mpsModel = testModel + `
[mps]
enabled = true
dir = "/run/t-mps"
control = "/opt/nvidia/nvidia-cuda-mps-control"
`

func TestMPSConfigAndRequest(t *testing.T) {
	m := mustModel(t, mpsModel)
	if m.MPS.Hook != DefaultMPSHook || m.MPS.Dir != "/run/t-mps" || m.MPS.Gpuorch != "" {
		t.Fatalf("%+v", m.MPS)
	}
	s, err := m.PlanOverride(Override{Profile: "p"}) // 15 TFLOPS of 312, 3Gi
	if err != nil {
		t.Fatal(err)
	}
	if s.MPS == nil || *s.MPS != (MPSRequest{ThreadPercent: 5, PinnedMiB: 3072, Dir: "/run/t-mps"}) || s.MPS.Token() != "gpuorch-mps=5,3072M" {
		t.Fatalf("%+v", s.MPS)
	}
	// A VRAM-only slice has no compute limit: no MPS request.
	if s, err := m.PlanOverride(Override{Pool: "a100", VRAMLimit: GiB}); err != nil || s.MPS != nil {
		t.Fatalf("%+v %v", s.MPS, err)
	}
	// Without [mps] enabled, no slice asks for MPS.
	if s, err := mustModel(t, testModel).PlanOverride(Override{Profile: "p"}); err != nil || s.MPS != nil {
		t.Fatalf("%+v %v", s.MPS, err)
	}
	for _, c := range []struct{ comment, err string }{
		{"gpuorch experiment x gpuorch-mps=25", ""},
		{"gpuorch-mps=100,81920M note", ""},
		{"gpuorch-mps=101", "want 1..100"},
		{"gpuorch-mps=25,3G", "want MiB"},
	} {
		r, ok, err := ParseMPSComment(c.comment)
		if !ok || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: %+v %v %v", c.comment, r, ok, err)
		}
		if err == nil && !strings.Contains(c.comment, r.Token()) {
			t.Errorf("%q: token %q does not round-trip", c.comment, r.Token())
		}
	}
	if _, ok, _ := ParseMPSComment("gpuorch experiment x"); ok {
		t.Error("token found in a comment without one")
	}
}

func TestMPSConfigErrors(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{mpsModel + "hook = \"relative/hook\"\n", `: mps.hook "relative/hook": want an absolute path`},
		{strings.Replace(mpsModel, `"/run/t-mps"`, `"/run/a b"`, 1), `: mps.dir "/run/a b": want an absolute path`},
		{strings.Replace(mpsModel, `"/run/t-mps"`, `"/"`, 1), `: mps.dir "/": the epilog removes job directories under it`},
		{mpsModel + "gpuorch = \"/x/../y\"\n", `mps.gpuorch "/x/../y"`},
		{mpsModel + "enable = true\n", `unknown key "mps.enable"`},
	} {
		_, err := ParseModel([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
}

// The hook, as apply renders it, costs other jobs a case statement, never
// fails, and hands MPS jobs to gpuorch with the [mps] paths.
func TestMPSHookScript(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "gpuorch")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@ $GPUORCH_MPS_DIR $GPUORCH_MPS_CONTROL\" >>"+dir+"/args\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := mustModel(t, mpsModel)
	hook := filepath.Join(dir, "hook")
	if err := os.WriteFile(hook, []byte(m.MPSHook(fake)), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(comment, context string) string {
		t.Helper()
		os.Remove(dir + "/args")
		cmd := exec.Command(hook)
		cmd.Env = []string{"SLURM_JOB_COMMENT=" + comment, "SLURM_SCRIPT_CONTEXT=" + context, "SLURM_JOB_ID=5"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hook failed (a prolog failure drains the node): %v %s", err, out)
		}
		b, _ := os.ReadFile(dir + "/args")
		return string(b)
	}
	if got := run("gpuorch experiment x", "prolog_slurmd"); got != "" {
		t.Errorf("a job without a request ran gpuorch: %q", got)
	}
	want := "slice mps prolog /run/t-mps /opt/nvidia/nvidia-cuda-mps-control\n"
	if got := run("x gpuorch-mps=5,3072M", "prolog_slurmd"); got != want {
		t.Errorf("prolog: %q, want %q", got, want)
	}
	if got := run("gpuorch-mps=5", "epilog_slurmd"); !strings.HasPrefix(got, "slice mps epilog ") {
		t.Errorf("epilog: %q", got)
	}
	os.Remove(fake)
	if got := run("gpuorch-mps=5", "prolog_slurmd"); got != "" {
		t.Errorf("missing gpuorch: %q", got)
	}
}

func TestDiffInstallsMPSHook(t *testing.T) {
	m := mustModel(t, mpsModel)
	a := &Admin{SlurmConf: "/nonexistent", Gpuorch: "/usr/local/bin/gpuorch"}
	st := stateOf(m, "")
	st.Hook, st.Prolog, st.Epilog = m.MPSHook("/usr/local/bin/gpuorch"), "/etc/slurm/gpuorch-mps-*", DefaultMPSHook+",/etc/slurm/other"
	if p := a.Diff(m, st); len(p.Actions) != 0 {
		t.Fatalf("installed hook: %v", p.Actions)
	}
	st.Hook, st.Prolog = "", "/etc/slurm/site-prolog"
	p := a.Diff(m, st)
	if len(p.Actions) != 2 || p.Actions[0].Kind != KindInstallHook || p.Actions[1].Kind != KindManual || p.Changes() != 1 ||
		!strings.Contains(p.Actions[1].Detail, "Prolog=/etc/slurm/gpuorch-mps-hook and Epilog=/etc/slurm/gpuorch-mps-hook") ||
		!strings.Contains(p.Actions[0].Detail, "runs /usr/local/bin/gpuorch") {
		t.Fatalf("%v", p.Actions)
	}
	if !strings.Contains(p.Hook, "\nGPUORCH=/usr/local/bin/gpuorch\nMPS_DIR=/run/t-mps\nMPS_CONTROL=/opt/nvidia/nvidia-cuda-mps-control\n") {
		t.Errorf("hook:\n%s", p.Hook)
	}
}

func FuzzParseMPSComment(f *testing.F) {
	for _, s := range []string{"gpuorch-mps=25", "x gpuorch-mps=100,81920M y", "gpuorch-mps=", "gpuorch-mps=5,M", "gpuorch-mps=7,0M"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, ok, err := ParseMPSComment(s)
		if !ok || err != nil {
			return
		}
		// A request read from a comment is one the prolog can act on, and
		// its token reads back as the same request.
		if r.ThreadPercent < 1 || r.ThreadPercent > 100 {
			t.Fatalf("%q: thread percentage %d", s, r.ThreadPercent)
		}
		r2, ok, err := ParseMPSComment("comment " + r.Token())
		if !ok || err != nil || r2 != r {
			t.Fatalf("%q → %+v → %q → %+v %v", s, r, r.Token(), r2, err)
		}
	})
}
