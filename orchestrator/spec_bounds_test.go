package orchestrator

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// boundSpec is a valid spec; each case below breaks one line of it. The
// line numbers the cases expect are the lines of this text.
const boundSpec = `[experiment]
name = "bounds"
[target]
url = "http://127.0.0.1:8000"
protocol = "http"
method = "GET"
headers = { X-Trace = "1" }
timeout = "5s"
[[workload]]
arrival = "poisson"
rate = 10
[[workload]]
name = "closed"
arrival = "closed"
concurrency = 2
[slo]
factor = 2
[run]
duration = "2s"
max_in_flight = 100
task_timeout = "1m"
`

// TestSpecBoundsRefusedWhenRead: everything a task would refuse is refused
// when the spec is read and planned (run, run --dry-run and render all do
// both before creating anything), as a *SpecError naming the file, the line
// of the offending key and the key, of kind errkind.ErrInvalid.
func TestSpecBoundsRefusedWhenRead(t *testing.T) {
	repl := func(old, new string) string {
		if !strings.Contains(boundSpec, old) {
			t.Fatalf("boundSpec lacks %q", old)
		}
		return strings.Replace(boundSpec, old, new, 1)
	}
	cases := []struct {
		name string
		src  string
		sets []string
		line int
		key  string
		msg  string
	}{
		{"rate zero", repl("rate = 10", "rate = 0"), nil, 11, "workload.rate", "rate"},
		{"rate negative", repl("rate = 10", "rate = -5"), nil, 11, "workload.rate", "-5"},
		{"rate nan", repl("rate = 10", "rate = nan"), nil, 11, "workload.rate", "NaN"},
		{"rate inf", repl("rate = 10", "rate = inf"), nil, 11, "workload.rate", "Inf"},
		{"rate huge", repl("rate = 10", "rate = 1e300"), nil, 11, "workload.rate", "1e+300"},
		{"rate vanishing", repl("rate = 10", "rate = 1e-300"), nil, 11, "workload.rate", "1e-300"},
		{"unknown arrival", repl(`arrival = "poisson"`, `arrival = "poison"`), nil, 10, "workload.arrival", "poison"},
		{"negative concurrency", repl("concurrency = 2", "concurrency = -3"), nil, 15, "workload.concurrency", "-3"},
		{"negative timeout", repl(`timeout = "5s"`, `timeout = "-1s"`), nil, 8, "target.timeout", "-1s"},
		{"negative max_in_flight", repl("max_in_flight = 100", "max_in_flight = -1"), nil, 20, "run.max_in_flight", "-1"},
		{"huge max_in_flight", repl("max_in_flight = 100", "max_in_flight = 1000000000000"), nil, 20, "run.max_in_flight", "1000000000000"},
		{"negative task_timeout", repl(`task_timeout = "1m"`, `task_timeout = "-1m"`), nil, 21, "run.task_timeout", "-1m"},
		{"negative slo factor", repl("factor = 2", "factor = -2"), nil, 17, "slo.factor", "-2"},
		{"slo factor nan", repl("factor = 2", "factor = nan"), nil, 17, "slo.factor", "NaN"},
		{"port out of range", repl("127.0.0.1:8000", "127.0.0.1:99999"), nil, 4, "target.url", "99999"},
		{"space in url", repl("http://127.0.0.1:8000", "http://127.0.0.1:8000/a b"), nil, 4, "target.url", "a b"},
		{"zero duration", repl(`duration = "2s"`, `duration = "0s"`), nil, 19, "run.duration", "0s"},
		{"absurd duration", repl(`duration = "2s"`, `duration = "1000000h"`), nil, 19, "run.duration", "1000000h"},
		{"CRLF in method", repl(`method = "GET"`, `method = "GET / HTTP/1.1\r\nX-Injected: 1\r\n"`), nil, 6, "target.method", "method"},
		{"space in method", repl(`method = "GET"`, `method = "GET /x"`), nil, 6, "target.method", "method"},
		{"CRLF in header value", repl(`X-Trace = "1"`, `X-Trace = "1\r\nX-Injected: 1"`), nil, 7, "target.headers", "X-Trace"},
		{"bad header name", repl(`X-Trace = "1"`, `"X Trace" = "1"`), nil, 7, "target.headers", "X Trace"},
		{"copies beyond the limit", repl("rate = 10", `rate = 10
args = ["resnet50_v2", 1000000000, "poisson", 100, 2, 32, 2, "mul", 7]`), []string{"workload[0].arrival=slo-exp-1"}, 12, "workload.args", "copies"},
		{"zero duration by --set", boundSpec, []string{"run.duration=0s"}, 0, "run.duration", "0s"},
		{"swept rate blamed on its sweep line", boundSpec + "[sweep]\n\"workload.rate\" = [1, -1]\n", nil, 23, "sweep.\"workload.rate\"", "-1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSpec("b.toml", []byte(c.src), c.sets)
			if err == nil {
				_, err = s.Plan()
			}
			if err == nil {
				t.Fatalf("spec accepted; want an error at b.toml:%d about %s", c.line, c.key)
			}
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("%T is not a *SpecError: %v", err, err)
			}
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Errorf("%v is not errkind.ErrInvalid", err)
			}
			if se.Line != c.line || se.Key != c.key || !strings.Contains(se.Msg, c.msg) {
				t.Errorf("got %s (line %d, key %q); want line %d, key %q, a message mentioning %q", err, se.Line, se.Key, c.line, c.key, c.msg)
			}
		})
	}
	// The unbroken spec plans.
	s, err := ParseSpec("b.toml", []byte(boundSpec), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Plan(); err != nil {
		t.Fatal(err)
	}
}

// TestSpecLimitsOfRunAndSlurm: the numbers of [run] and [slurm] that no
// task sees have ranges too.
func TestSpecLimitsOfRunAndSlurm(t *testing.T) {
	for _, c := range []struct{ add, want string }{
		{"[slurm]\nthrottle = 1000000\n", "slurm.throttle"},
		{"[slurm]\nnodes = -1\n", "slurm.nodes"},
		{"[slurm]\ncpus_per_task = -4\n", "slurm.cpus_per_task"},
	} {
		_, err := ParseSpec("b.toml", []byte(boundSpec+c.add), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error about %s", c.add, err, c.want)
		}
	}
	_, err := ParseSpec("b.toml", []byte(strings.Replace(boundSpec, "[run]\n", "[run]\nparallel = 100000\n", 1)), nil)
	if err == nil || !strings.Contains(err.Error(), "run.parallel") {
		t.Errorf("parallel 100000: got %v", err)
	}
}

// TestCreateLeavesNothingOnFailure: an experiment whose files cannot be
// written leaves no half-made directory behind.
func TestCreateLeavesNothingOnFailure(t *testing.T) {
	s, err := ParseSpec("b.toml", []byte(boundSpec), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	// A value JSON cannot hold, as a plan made without Plan's checks
	// could carry.
	p.Tasks[0].Config.SLO.Factor = nan()
	home := t.TempDir()
	if _, err := Create(home, s, p, "local"); err == nil {
		t.Fatal("Create wrote a plan with NaN")
	}
	if ents, _ := os.ReadDir(home); len(ents) != 0 {
		t.Errorf("a failed Create left %s behind", filepath.Join(home, ents[0].Name()))
	}
}

func nan() float64 { z := 0.0; return z / z }

// TestSpecLimitsDocumented: docs/spec.md carries the ranges of [run] and
// [slurm] as SpecLimitsMarkdown renders them.
func TestSpecLimitsDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/spec.md")
	if err != nil {
		t.Fatal(err)
	}
	if table := SpecLimitsMarkdown(); !strings.Contains(string(b), table) {
		t.Errorf("docs/spec.md lacks the table:\n%s", table)
	}
}

// TestPlanBoundsItsWork: the sources of all tasks together are bounded, so
// checking a sweep of huge workloads is refused instead of running on.
func TestPlanBoundsItsWork(t *testing.T) {
	src := strings.Replace(boundSpec, "rate = 10", `rate = 10
args = ["m", 100000, "poisson", 100, 2, 32, 2, "mul", 7]`, 1) + "[sweep]\n\"slo.factor\" = [" + strings.Repeat("1, ", 200) + "2]\n"
	s, err := ParseSpec("b.toml", []byte(src), []string{"workload[0].arrival=slo-exp-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Plan(); err == nil || !strings.Contains(err.Error(), "10000000 workload sources") {
		t.Errorf("got %v, want the plan refused at 10000000 sources", err)
	}
}
