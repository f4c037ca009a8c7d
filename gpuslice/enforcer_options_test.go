package gpuslice

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

func TestEnforcerOptions(t *testing.T) {
	host, _ := os.Hostname()
	slice := map[string]string{EnvVRAMLimit: "1Gi", EnvQoS: "low"}
	with := func(extra map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return slice[k]
		}
	}
	cases := []struct {
		name     string
		o        EnforcerOptions
		job      string
		node     string
		limits   string // "static" (the job's own), "dir", or the error wanted
		dirLimit string
	}{
		{"job from the environment", EnforcerOptions{Getenv: with(map[string]string{EnvJobID: "42", EnvNodeName: "node3"})}, "42", "node3", "static", ""},
		{"job from the option", EnforcerOptions{Job: "7", Getenv: with(map[string]string{EnvJobID: "42"})}, "7", host, "static", ""},
		{"node from the option", EnforcerOptions{Job: "7", Node: "n9", Getenv: with(map[string]string{EnvNodeName: "node3"})}, "7", "n9", "static", ""},
		{"daemon needs no job", EnforcerOptions{LimitsDir: "/run/x", Getenv: with(nil)}, "", host, "dir", "/run/x"},
		{"no job", EnforcerOptions{Getenv: with(nil)}, "", host, "no job: run inside a Slurm job", ""},
		{"bad limit", EnforcerOptions{Job: "7", Getenv: with(map[string]string{EnvVRAMLimit: "lots"})}, "7", host, "bad memory quantity", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.o.JobID(); got != c.job {
				t.Errorf("JobID %q, want %q", got, c.job)
			}
			if got := c.o.Config().Node; got != c.node {
				t.Errorf("node %q, want %q", got, c.node)
			}
			lim, err := c.o.JobLimits()
			switch c.limits {
			case "static":
				l, ok := lim.(StaticLimits)[c.job]
				if err != nil || !ok || l.VRAM != GiB || l.QoS != "low" {
					t.Fatalf("limits %+v, %v", lim, err)
				}
			case "dir":
				if d, ok := lim.(*DirLimits); err != nil || !ok || d.Dir != c.dirLimit {
					t.Fatalf("limits %+v, %v", lim, err)
				}
			default:
				if err == nil || !errors.Is(err, errkind.ErrInvalid) || !strings.Contains(err.Error(), c.limits) {
					t.Fatalf("err %v, want bad input saying %q", err, c.limits)
				}
			}
		})
	}
}

func TestEnforcerOptionsRegister(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{EnvJobID: "77", EnvVRAMLimit: "2Gi", EnvGrace: "5s"}
	job, err := EnforcerOptions{Getenv: func(k string) string { return env[k] }}.Register(dir)
	if err != nil || job != "77" {
		t.Fatalf("job %q, %v", job, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "77"))
	if err != nil || string(b) != EnvVRAMLimit+"=2Gi\n"+EnvGrace+"=5s\n" {
		t.Fatalf("%q, %v", b, err)
	}
	if _, err := (EnforcerOptions{Getenv: func(k string) string { return "" }}).Register(dir); err == nil {
		t.Fatal("registered without a job")
	}
}
