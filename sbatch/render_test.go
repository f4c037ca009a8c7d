package sbatch

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./sbatch -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got ---\n%s\n--- want ---\n%s", t.Name(), path, got, want)
	}
}

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name string
		job  Job
	}{
		{"minimal", Job{Body: []Line{CommandArgv("hostname")}}},
		{"serving-array", Job{
			Name: "gpuorch-quickstart", Partition: "debug", QOS: "high", Account: "gpuorch",
			Nodes: "1", NTasks: 1, CPUsPerTask: 1, Mem: "200M", Time: FormatTime(90 * time.Second),
			Array: ArraySpec([]int{0, 1, 2, 3, 5, 8, 9}), ArrayThrottle: 4,
			Output: "/runs/exp 1/tasks/%a/log", Error: "/runs/exp 1/tasks/%a/log",
			Requeue: Bool(false), Signal: "B:TERM@30", Comment: "gpuorch experiment exp 1",
			Env: []EnvVar{Env("EXPDIR", "/runs/exp 1"), Env("GPUORCH_EXPERIMENT", "exp 1")},
			Body: []Line{
				Raw("set -euo pipefail"),
				Exec(Lit("/usr/local/bin/gpuorch"), Lit("loadgen"), Lit("run"), Lit("--manifest"),
					Cat(Var("EXPDIR"), Lit("/tasks/"), Var("SLURM_ARRAY_TASK_ID"), Lit("/manifest.json"))),
			},
		}},
		{"gpu-training", Job{
			Name: "metaseq-125m", Partition: "gpu", Nodes: "2", NTasksPerNode: 4, CPUsPerTask: 2,
			GPUsPerNode: "4", GRES: []string{"shard:2"}, MemPerGPU: "16G", Time: "2-00:00:00",
			Exclusive: true, Requeue: Bool(true), NodeList: "node[3-4]", Exclude: "node1",
			Dependency: "afterok:41:42", WorkDir: "/scratch/run", Export: "ALL",
			Extra: []Option{{Name: "gpu-bind", Value: "closest"}, {Name: "wait-all-nodes", Value: "1"}},
			Body: []Line{
				Comment("one task per GPU"),
				Export("MASTER_PORT", Lit("29500")),
				Command(Lits("srun", "--kill-on-bad-exit=1", "apptainer", "exec", "--nv", "/images/metaseq v1.sif",
					"python", "-m", "metaseq.cli.train", "--model-name", "it's \"125m\"")...).
					WithEnv(Env("CUDA_DEVICE_MAX_CONNECTIONS", "1")),
				Command(Lit("echo"), Lit("done")).AppendTo(Cat(Var("HOME"), Lit("/train.log"))),
			},
		}},
		{"hostile-values", Job{
			Name: `x"; touch pwned; #`, Comment: "$(touch pwned) `touch pwned` 'q' \\ # c",
			Output: "/tmp/o u t/%A_%a.log", Hold: true,
			Env:  []EnvVar{Env("V", "'; touch pwned; echo '")},
			Body: []Line{Command(Lits("printf", "%s\\n", "$(touch pwned)", "a'b", "--x=$HOME", "~", "*")...)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.job.Render()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, got)
		})
	}
}

func TestRenderRejects(t *testing.T) {
	tests := []struct {
		name string
		job  Job
		want string // substring of the error
	}{
		{"newline in name", Job{Name: "a\nhostname"}, "job-name: control character"},
		{"CR in comment", Job{Comment: "a\rb"}, "comment: control character"},
		{"NUL in partition", Job{Partition: "a\x00b"}, "partition: control character"},
		{"bad utf8", Job{QOS: "\xff"}, "qos: not valid UTF-8"},
		{"throttle in spec", Job{Array: "0-9%2"}, "put the throttle in ArrayThrottle"},
		{"throttle alone", Job{ArrayThrottle: 3}, "throttle set without an array spec"},
		{"bad time", Job{Time: "1h"}, "time:"},
		{"bad mem", Job{Mem: "4 G"}, "mem:"},
		{"bad nodes", Job{Nodes: "two"}, "nodes:"},
		{"bad gres", Job{GRES: []string{"gpu:2;rm"}}, "gres:"},
		{"export with value", Job{Export: "ALL,A=b"}, "export:"},
		{"bad dependency", Job{Dependency: "afterok:1 2"}, "dependency:"},
		{"bad signal", Job{Signal: "USR1@60;x"}, "signal:"},
		{"bad nodelist", Job{NodeList: "node 1"}, "nodelist:"},
		{"bad extra name", Job{Extra: []Option{{Name: "--mps"}}}, "extra option"},
		{"negative count", Job{NTasks: -1}, "ntasks: negative"},
		{"bad env name", Job{Env: []EnvVar{Env("A B", "x")}}, "invalid variable name"},
		{"bad var", Job{Body: []Line{Command(Var("$(x)"))}}, "invalid variable name"},
		{"NUL in arg", Job{Body: []Line{CommandArgv("echo", "a\x00")}}, "NUL"},
		{"empty command", Job{Body: []Line{Command()}}, "empty command"},
		{"newline comment", Job{Body: []Line{Comment("a\ntouch x")}}, "control character"},
		{"bad shebang", Job{Shebang: "bash"}, "shebang"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.job.Render()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func TestRenderCollectsAllErrors(t *testing.T) {
	j := Job{Name: "a\nb", Time: "soon", Mem: "lots"}
	_, err := j.Render()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"job-name", "time", "mem"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestArraySpec(t *testing.T) {
	tests := []struct {
		in   []int
		want string
	}{
		{nil, ""},
		{[]int{0}, "0"},
		{[]int{0, 1, 2, 3}, "0-3"},
		{[]int{7, 3, 1, 2, 9, 10, 2}, "1-3,7,9-10"},
		{[]int{5, 3}, "3,5"},
	}
	for _, tt := range tests {
		if got := ArraySpec(tt.in); got != tt.want {
			t.Errorf("ArraySpec(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormatTime(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0"},
		{time.Millisecond, "00:00:01"},
		{90 * time.Second, "00:01:30"},
		{25*time.Hour + 61*time.Second, "1-01:01:01"},
	}
	for _, tt := range tests {
		if got := FormatTime(tt.d); got != tt.want {
			t.Errorf("FormatTime(%v) = %q, want %q", tt.d, got, tt.want)
		}
		if tt.d > 0 && !reTime.MatchString(FormatTime(tt.d)) {
			t.Errorf("FormatTime(%v) not accepted by Job.Time", tt.d)
		}
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "''"},
		{"abc", "abc"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$HOME", "'$HOME'"},
		{"~", "'~'"},
		{"a=b", "'a=b'"},
		{"/x/%a.log", "/x/%a.log"},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// A hint's command line, pasted into bash, runs exactly the words it was
// made of: nothing in them is expanded or split.
func TestCommandLinePastes(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	words := []string{"gpuorch", "train", "follow", "--job", "12", dir + "/$(touch pwned)/`touch pwned2`/it's a \"log\"; touch pwned3\n/train.log", "-x", "~", "*", ""}
	cmd := exec.Command(bash, "-c", `args() { printf '%s\0' "$@"; }; args `+CommandLine(words...))
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00"); !slices.Equal(got, words) {
		t.Fatalf("bash read back %q, want %q", got, words)
	}
	for _, f := range []string{"pwned", "pwned2", "pwned3"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Fatalf("pasting the command ran code: %s exists", f)
		}
	}
}
