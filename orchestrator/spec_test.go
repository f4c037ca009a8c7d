package orchestrator

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/loadgen"
)

const goodSpec = `# a comment
[experiment]
name = "exp-1"
tags = ["any text: \"quoted\", $(not run)", "x"]
description = """
Free text; a line like
rate = 5
[workload]
is not a key."""

[target]
url = "http://127.0.0.1:8000"
protocol = "kserve"
models = ["a", "b"]
headers = { X-Trace = "1", "Content-Type" = "application/json" }

[[workload]]
name = "open"
arrival = "poisson"
rate = 100

[[workload]]
name = "closed"
arrival = "closed"
concurrency = 4
think_time = "10ms"

[slo]
factor = 3

[sweep]
"workload.rate" = [50, 100, 200]
target.models = [["a"], ["a", "b"]]

[run]
duration = "5s"
seed = 7
parallel = 2

[slurm]
partition = "gpu"
throttle = 4
env = { NCCL_DEBUG = "INFO" }

[output]
dir = "runs"
[output.influxdb]
url = "http://127.0.0.1:8086"
bucket = "gpuorch"
`

func TestParseGoodSpec(t *testing.T) {
	s, err := ParseSpec("good.toml", []byte(goodSpec), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Experiment.Name != "exp-1" || len(s.Experiment.Tags) != 2 || !strings.Contains(s.Experiment.Description, "rate = 5") {
		t.Errorf("experiment %+v", s.Experiment)
	}
	if s.Target.Headers["Content-Type"] != "application/json" || len(s.Workloads) != 2 || s.Workloads[1].ThinkTime.D().Milliseconds() != 10 {
		t.Errorf("decoded %+v %+v", s.Target, s.Workloads)
	}
	if s.Run.Executor != "local" || s.Run.Parallel != 2 || s.Run.Interval != 0 || s.Slurm.Partition != "gpu" || s.Slurm.Env["NCCL_DEBUG"] != "INFO" {
		t.Errorf("run %+v slurm %+v", s.Run, s.Slurm)
	}
	if s.Output.InfluxDB == nil || s.Output.InfluxDB.Bucket != "gpuorch" {
		t.Errorf("output %+v", s.Output)
	}
	want := []SweepParam{
		{Key: "workload.rate", Values: []any{int64(50), int64(100), int64(200)}, Line: 32},
		{Key: "target.models", Values: []any{[]any{"a"}, []any{"a", "b"}}, Line: 33},
	}
	if !reflect.DeepEqual(s.Sweep, want) {
		t.Errorf("sweep %#v", s.Sweep)
	}
}

func TestDefaults(t *testing.T) {
	s, err := ParseSpec("d.toml", []byte("[experiment]\nname = \"d\"\n[target]\nurl = \"http://h:1\"\n[[workload]]\narrival = \"poisson\"\n[[workload]]\narrival = \"poisson\"\n[[workload]]\narrival = \"Slo-Exp-1\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Run.Duration.D().Seconds() != DefaultDuration || s.Run.Seed != DefaultSeed || s.Run.Parallel != 1 || s.Run.Executor != "local" {
		t.Errorf("run defaults %+v", s.Run)
	}
	var names []string
	for _, w := range s.Workloads {
		names = append(names, w.Name)
	}
	if !reflect.DeepEqual(names, []string{"poisson-0", "poisson-1", "slo-exp-1"}) {
		t.Errorf("default workload names %q", names)
	}
	// An explicit seed of 0 is kept.
	s, err = ParseSpec("d.toml", []byte("[experiment]\nname = \"d\"\n[target]\nurl = \"http://h:1\"\n[[workload]]\narrival = \"poisson\"\n[run]\nseed = 0\n"), nil)
	if err != nil || s.Run.Seed != 0 {
		t.Errorf("seed 0: %v %d", err, s.Run.Seed)
	}
}

// specWith returns a small valid spec with extra text inserted at the end.
const baseSpec = `[experiment]
name = "e"

[target]
url = "http://127.0.0.1:8000"

[[workload]]
arrival = "poisson"
rate = 10

[[workload]]
name = "second"
arrival = "closed"
concurrency = 2
`

func TestSpecErrors(t *testing.T) {
	cases := []struct {
		name string
		src  string
		sets []string
		want string
	}{
		{"syntax", "[experiment\nname = \"x\"\n", nil, `s.toml:2: syntax error: expected '.' or ']' to end table name, but got '\n' instead`},
		{"unknown top-level", "colour = 1\n" + baseSpec, nil, `s.toml:1: unknown key "colour"`},
		{"unknown top-level table", baseSpec + "[slurmm]\npartition = \"x\"\n", nil, `s.toml:15: unknown key "slurmm" (did you mean "slurm"?)`},
		{"unknown in table", baseSpec + "[run]\nduration = \"1s\"\nparalel = 2\n", nil, `s.toml:17: unknown key "run.paralel" (did you mean "parallel"?)`},
		{"unknown in first array element", strings.Replace(baseSpec, "rate = 10", "rte = 10", 1), nil, `s.toml:9: unknown key "workload.rte" (did you mean "rate"?)`},
		{"unknown in second array element", strings.Replace(baseSpec, "concurrency = 2", "concurency = 2", 1), nil, `s.toml:14: unknown key "workload.concurency" (did you mean "concurrency"?)`},
		{"unknown in sub-table", baseSpec + "[output]\ndir = \"x\"\n[output.influxdb]\nurl = \"http://h:1\"\ntoken = \"s\"\n", nil, `s.toml:19: unknown key "output.influxdb.token"`},
		{"unknown in inline table", baseSpec + "[slurm]\nenv = { A = \"1\" }\nextra = { x = 1 }\n", nil, `s.toml:17: unknown key "slurm.extra"`},
		{"wrong type", baseSpec + "[run]\nparallel = \"two\"\n", nil, `s.toml:16: run.parallel: incompatible types: TOML value has type string; destination has type integer`},
		{"wrong type in array element", strings.Replace(baseSpec, "concurrency = 2", "concurrency = 2.5", 1), nil, `s.toml:14: workload.concurrency: incompatible types: TOML value has type float64; destination has type integer`},
		{"wrong type in list", strings.Replace(baseSpec, "[target]\n", "[target]\nmodels = [\"a\", 1]\n", 1), nil, `s.toml:5: target.models: incompatible types: TOML value has type int64; destination has type string`},
		{"bad duration", baseSpec + "[run]\nduration = \"5\"\n", nil, `s.toml:16: run.duration: invalid duration "5" (want e.g. "500ms", "30s", "2m")`},
		{"missing experiment", strings.Replace(baseSpec, "[experiment]\nname = \"e\"\n", "", 1), nil, `s.toml:1: missing required table [experiment] (with name = "…")`},
		{"missing name", strings.Replace(baseSpec, "name = \"e\"\n", "description = \"d\"\n", 1), nil, `s.toml:1: missing required key "experiment.name"`},
		{"bad name", strings.Replace(baseSpec, `name = "e"`, `name = "My Exp"`, 1), nil, `s.toml:2: experiment.name "My Exp": want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 characters`},
		{"bad workload name", strings.Replace(baseSpec, `name = "second"`, `name = "-x"`, 1), nil, `s.toml:12: workload.name "-x": want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"duplicate workload name", strings.Replace(baseSpec, `name = "second"`, `name = "poisson"`, 1), nil, `s.toml:12: workload.name "poisson" is used twice; give each [[workload]] its own name`},
		{"missing arrival", strings.Replace(baseSpec, "arrival = \"closed\"\n", "", 1), nil, `s.toml:11: missing required key "workload.arrival" (e.g. "poisson", "fixed", "gamma", "closed", or a Clockwork workload such as "slo-exp-1")`},
		{"missing url", strings.Replace(baseSpec, "url = \"http://127.0.0.1:8000\"\n", "protocol = \"kserve\"\n", 1), nil, `s.toml:4: missing required key "target.url" (e.g. url = "http://127.0.0.1:8000"; override with --set target.url=…)`},
		{"bad url", strings.Replace(baseSpec, "http://127.0.0.1:8000", "127.0.0.1:8000", 1), nil, `s.toml:5: target.url "127.0.0.1:8000": want an http:// or https:// URL with a host`},
		{"bad protocol", strings.Replace(baseSpec, "[target]\n", "[target]\nprotocol = \"grpc\"\n", 1), nil, `s.toml:5: target.protocol "grpc": want one of http, kserve, openai, openai-chat`},
		{"bad executor", baseSpec + "[run]\nexecutor = \"k8s\"\n", nil, `s.toml:16: run.executor "k8s": want one of local, slurm`},
		{"no workload", "[experiment]\nname = \"e\"\n", nil, `s.toml:1: missing required [[workload]] (e.g. [[workload]] arrival = "poisson" rate = 100) or [training]`},
		{"workload as table", "[experiment]\nname = \"e\"\n[workload]\narrival = \"poisson\"\n", nil, `s.toml:3: "workload" must be an array of tables: write [[workload]] before each one`},
		{"sweep unknown key", baseSpec + "[sweep]\n\"workload.rte\" = [1, 2]\n", nil, `s.toml:16: sweep key "workload.rte": unknown key "workload.rte" (did you mean "rate"?)`},
		{"sweep nested unknown key", baseSpec + "[sweep]\nslo.factr = [1, 2]\n", nil, `s.toml:16: sweep key "slo.factr": unknown key "slo.factr" (did you mean "factor"?)`},
		{"sweep bad value", baseSpec + "[sweep]\n\"workload.rate\" = [\n  1,\n  \"fast\",\n]\n", nil, `s.toml:18: sweep "workload.rate" value #2 (fast): incompatible types: TOML value has type string; destination has type float`},
		{"sweep not a list", baseSpec + "[sweep]\nseed = 5\n", nil, `s.toml:16: sweep "seed": want a list of values, e.g. "seed" = [1, 2, 4]`},
		{"sweep empty", baseSpec + "[sweep]\nseed = []\n", nil, `s.toml:16: sweep "seed": empty list (it would give no tasks)`},
		{"sweep not sweepable", baseSpec + "[sweep]\n\"run.parallel\" = [1, 2]\n", nil, `s.toml:16: sweep key "run.parallel": only keys of target, workload and slo, and the manifest settings of [run] (` + strings.Join(manifestRunKeys(), ", ") + `) can be swept`},
		{"sweep twice", baseSpec + "[sweep]\nseed = [1]\n\"run.seed\" = [2]\n", nil, `s.toml:17: sweep key "seed" appears twice`},
		{"shards out of range", baseSpec + "[run]\nshards = 2000\n", nil, `s.toml:16: run.shards = 2000: want 1 to 1024 (or 0: one process per task)`},
		{"shards negative", baseSpec, []string{"run.shards=-1"}, `--set run.shards=-1: run.shards = -1: want 1 to 1024 (or 0: one process per task)`},
		{"shards swept", baseSpec + "[sweep]\n\"run.shards\" = [1, 2]\n", nil, `s.toml:16: run.shards cannot be swept: every task of an experiment runs as the same number of shards (one Slurm job shape); make one experiment per shard count`},
		{"shards beside other nodes", baseSpec + "[run]\nshards = 4\n[slurm]\nnodes = 2\n", nil, `s.toml:18: slurm.nodes = 2 but run.shards = 4 at run.shards_per_node = 1 take 4 nodes (leave slurm.nodes out)`},
		{"more shards per node than shards", baseSpec + "[run]\nshards = 2\nshards_per_node = 3\n", nil, `s.toml:17: run.shards_per_node = 3 but run.shards = 2: want at most as many shards per node as shards`},
		{"shards per node swept", baseSpec + "[sweep]\n\"run.shards_per_node\" = [1, 2]\n", nil, `s.toml:16: run.shards_per_node cannot be swept: every task of an experiment runs as the same number of shards (one Slurm job shape); make one experiment per shard count`},
		{"set unknown key", baseSpec, []string{"target.ur=http://x"}, `--set target.ur=http://x: unknown key "target.ur" (did you mean "url"?)`},
		{"set wrong type", baseSpec, []string{"workload[1].concurrency=lots"}, `--set workload[1].concurrency=lots: workload.concurrency: incompatible types: TOML value has type string; destination has type integer`},
		{"set bad index", baseSpec, []string{"workload[2].rate=1"}, `--set workload[2].rate=1: "workload" has 2 elements; index 2 is out of range`},
		{"set no equals", baseSpec, []string{"target.url"}, `--set target.url: want KEY=VALUE`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSpec("s.toml", []byte(c.src), c.sets)
			if err == nil {
				t.Fatalf("no error, want %s", c.want)
			}
			if err.Error() != c.want {
				t.Errorf("got  %s\nwant %s", err, c.want)
			}
			var se *SpecError
			if !errors.As(err, &se) {
				t.Errorf("%T is not a *SpecError", err)
			}
		})
	}
}

// Errors that only appear once a sweep point is applied blame the sweep line.
func TestPlanErrorsBlameSweepLine(t *testing.T) {
	src := baseSpec + "[sweep]\n\"target.protocol\" = [\"kserve\", \"grpc\"]\n"
	s, err := ParseSpec("s.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Plan()
	if err == nil || err.Error() != `s.toml:16: target.protocol "grpc": want one of http, kserve, openai, openai-chat` {
		t.Errorf("got %v", err)
	}
}

func TestOverrides(t *testing.T) {
	s, err := ParseSpec("s.toml", []byte(baseSpec), []string{
		"target.url=http://127.0.0.1:9999/x?a=b",
		"workload.rate=25", // every workload
		"workload[1].think_time=\"5ms\"",
		"target.models=[\"m1\", \"m2\"]",
		"experiment.name=123", // the key holds a string: kept as text
		"run.parallel=3",
		"sweep.seed=[1, 2]",
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Target.URL != "http://127.0.0.1:9999/x?a=b" || s.Workloads[0].Rate != 25 || s.Workloads[1].Rate != 25 ||
		s.Workloads[1].ThinkTime.D().Milliseconds() != 5 || !reflect.DeepEqual(s.Target.Models, []string{"m1", "m2"}) ||
		s.Experiment.Name != "123" || s.Run.Parallel != 3 || len(s.Sweep) != 1 || s.Sweep[0].Key != "seed" {
		t.Errorf("overrides not applied: %+v %+v %+v %+v", s.Target, s.Workloads, s.Run, s.Sweep)
	}
}

func TestSweepExpansion(t *testing.T) {
	s, err := ParseSpec("good.toml", []byte(goodSpec), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	// 2 workloads × 3 rates × 2 model lists.
	if len(p.Tasks) != 12 || !reflect.DeepEqual(p.SweepKeys, []string{"workload.rate", "target.models"}) || !reflect.DeepEqual(p.Workloads, []string{"open", "closed"}) {
		t.Fatalf("%d tasks, keys %v, workloads %v", len(p.Tasks), p.SweepKeys, p.Workloads)
	}
	type row struct {
		name     string
		workload string
		rate     float64
		models   string
		seed     int64
	}
	var got []row
	for i, tk := range p.Tasks {
		if tk.Index != i {
			t.Errorf("task %d has index %d", i, tk.Index)
		}
		c := tk.Config
		got = append(got, row{tk.Name, c.Workload.Name, c.Workload.Rate, strings.Join(c.Target.Models, "+"), c.Seed})
		// Unswept settings are carried into every task.
		if c.Target.URL != "http://127.0.0.1:8000" || c.Target.Headers["X-Trace"] != "1" || c.SLO.Factor != 3 || c.Duration.D().Seconds() != 5 || c.Task != tk.Name || c.Experiment != "exp-1" {
			t.Errorf("task %d config %+v", i, c)
		}
		if c.Tags["workload"] != tk.Workload || c.Tags["rate"] == "" || c.Tags["models"] == "" {
			t.Errorf("task %d tags %v", i, c.Tags)
		}
	}
	want := []row{
		{"t000-open-rate=50-models=a", "open", 50, "a", 7},
		{"t001-open-rate=50-models=a+b", "open", 50, "a+b", 8},
		{"t002-open-rate=100-models=a", "open", 100, "a", 9},
		{"t003-open-rate=100-models=a+b", "open", 100, "a+b", 10},
		{"t004-open-rate=200-models=a", "open", 200, "a", 11},
		{"t005-open-rate=200-models=a+b", "open", 200, "a+b", 12},
		{"t006-closed-rate=50-models=a", "closed", 50, "a", 13},
		{"t007-closed-rate=50-models=a+b", "closed", 50, "a+b", 14},
		{"t008-closed-rate=100-models=a", "closed", 100, "a", 15},
		{"t009-closed-rate=100-models=a+b", "closed", 100, "a+b", 16},
		{"t010-closed-rate=200-models=a", "closed", 200, "a", 17},
		{"t011-closed-rate=200-models=a+b", "closed", 200, "a+b", 18},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tasks:\n%v\nwant\n%v", got, want)
	}
	if p.Tasks[7].Config.Workload.Concurrency != 4 || p.Tasks[1].Config.Workload.Concurrency != 0 {
		t.Errorf("workload fields leaked between workloads")
	}
	if got := p.ParamString(&p.Tasks[3]); got != "workload.rate=100 target.models=a+b" {
		t.Errorf("ParamString %q", got)
	}
}

func TestSweepSeedAndCounts(t *testing.T) {
	for _, c := range []struct {
		sweep string
		n     int
	}{
		{"", 2},
		{"seed = [11, 12, 13]\n", 6},
		{"seed = [1, 2]\n\"slo.factor\" = [2, 4, 8]\nrun.duration = [\"1s\", \"2s\"]\n", 24},
		{"\"workload.args\" = [[\"resnet50\", \"4\"], [\"resnet50\", \"8\"]]\n", 4},
	} {
		s, err := ParseSpec("s.toml", []byte(baseSpec+"[sweep]\n"+c.sweep), nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.Plan()
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Tasks) != c.n {
			t.Errorf("%q: %d tasks, want %d", c.sweep, len(p.Tasks), c.n)
		}
		if strings.HasPrefix(c.sweep, "seed = [11") {
			// The sweep's seed wins over base + index.
			if p.Tasks[0].Config.Seed != p.Tasks[len(p.Tasks)/2].Config.Seed || p.Tasks[1].Config.Seed == p.Tasks[0].Config.Seed {
				t.Errorf("%q: seeds %d %d %d", c.sweep, p.Tasks[0].Config.Seed, p.Tasks[1].Config.Seed, p.Tasks[len(p.Tasks)/2].Config.Seed)
			}
		}
	}
}

func TestPlanDeterministic(t *testing.T) {
	var first []byte
	for range 5 {
		s, err := ParseSpec("good.toml", []byte(goodSpec), nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.Plan()
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = b
		} else if string(b) != string(first) {
			t.Fatal("plan differs between runs")
		}
	}
	// The manifest round-trips through JSON unchanged.
	s, _ := ParseSpec("good.toml", []byte(goodSpec), nil)
	p, _ := s.Plan()
	b, _ := json.Marshal(p.Tasks[5].Config)
	var back loadgen.Config
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, p.Tasks[5].Config) {
		t.Errorf("manifest round trip: %v\n%+v\n%+v", err, back, p.Tasks[5].Config)
	}
}

func TestTooManyTasks(t *testing.T) {
	src := baseSpec + "[sweep]\nseed = [" + strings.Repeat("1,", 400) + "1]\n\"slo.factor\" = [" + strings.Repeat("1,", 400) + "1]\n"
	s, err := ParseSpec("s.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Plan(); err == nil || !strings.Contains(err.Error(), "more than 100000 tasks") {
		t.Errorf("got %v", err)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(goodSpec), "")
	f.Add([]byte(baseSpec), "workload.rate=5")
	f.Add([]byte(baseSpec+"[sweep]\n\"workload.rate\" = [1, \"x\"]\n"), "")
	f.Add([]byte("[[a]]\n[[a.b]]\nc = {d = [1, {e = 2}]}\n"), "a.b=1")
	f.Add([]byte("x = \"\"\"\n\\\"\"\"\"\"\n"), "")
	f.Add([]byte(baseSpec+"[sweep]\n\"workload.rate,slo.factor\" = [[1, 2], [3, 4]]\n"), "")
	f.Fuzz(func(t *testing.T, src []byte, set string) {
		var sets []string
		if set != "" {
			sets = []string{set}
		}
		s, err := ParseSpec("fuzz.toml", src, sets)
		if err != nil {
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("%T is not a *SpecError: %v", err, err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.toml") && !strings.HasPrefix(err.Error(), "--set ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		points := 1
		for _, sp := range s.Sweep {
			points *= len(sp.Values)
		}
		if len(s.Workloads) > 0 && points*len(s.Workloads) <= 1000 {
			if p, err := s.Plan(); err == nil && len(p.Tasks) == 0 {
				t.Fatal("valid spec planned no tasks")
			}
		}
	})
}

func TestRunManifestSettingsAndArgs(t *testing.T) {
	src := strings.Replace(baseSpec, "rate = 10\n", "rate = 10\nargs = [\"resnet50_v2\", 4, \"poisson\", 2.5, true]\n", 1) +
		"[run]\nduration = \"2s\"\ndrain = \"1s\"\nmax_in_flight = 100\nparallel = 2\n[sweep]\n\"run.max_in_flight\" = [10, 20]\n\"workload.args\" = [[\"m\", 1], [\"m\", 2]]\n"
	s, err := ParseSpec("s.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Workloads[0].Args, []string{"resnet50_v2", "4", "poisson", "2.5", "true"}) {
		t.Errorf("args %q", s.Workloads[0].Args)
	}
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Tasks) != 8 {
		t.Fatalf("%d tasks", len(p.Tasks))
	}
	c := p.Tasks[3].Config
	if c.Drain.D().Seconds() != 1 || c.MaxInFlight != 20 || !reflect.DeepEqual(c.Workload.Args, []string{"m", "2"}) || p.Run.Parallel != 2 {
		t.Errorf("task 3: drain %s max_in_flight %d args %q", c.Drain.D(), c.MaxInFlight, c.Workload.Args)
	}
	for _, c := range []struct{ src, want string }{
		{baseSpec + "[run]\ndrain = 5\n", `s.toml:16: run.drain: invalid duration "5" (want e.g. "500ms", "30s", "2m")`},
		{baseSpec + "[run]\nmax_inflight = 5\n", `s.toml:16: unknown key "run.max_inflight" (did you mean "max_in_flight"?)`},
		{baseSpec + "[run]\npacer_priority = \"fast\"\n", `s.toml:16: run.pacer_priority "fast": want one of auto, realtime, nice, normal`},
	} {
		if _, err := ParseSpec("s.toml", []byte(c.src), nil); err == nil || err.Error() != c.want {
			t.Errorf("got  %v\nwant %s", err, c.want)
		}
	}
}

func BenchmarkParseSpec(b *testing.B) {
	for b.Loop() {
		if _, err := ParseSpec("good.toml", []byte(goodSpec), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestZippedSweep(t *testing.T) {
	src := baseSpec + "[sweep]\n\"workload.rate, run.max_in_flight\" = [[50, 5], [100, 10]]\nseed = [1, 2]\n"
	s, err := ParseSpec("s.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Tasks) != 8 || !reflect.DeepEqual(p.SweepKeys, []string{"workload.rate", "max_in_flight", "seed"}) {
		t.Fatalf("%d tasks, keys %v", len(p.Tasks), p.SweepKeys)
	}
	c := p.Tasks[3].Config
	if c.Workload.Rate != 100 || c.MaxInFlight != 10 || c.Seed != 2 || p.Tasks[3].Name != "t003-poisson-rate=100-max_in_flight=10-seed=2" {
		t.Errorf("task 3: %s rate %v max_in_flight %d seed %d", p.Tasks[3].Name, c.Workload.Rate, c.MaxInFlight, c.Seed)
	}
	for _, c := range []struct{ sweep, want string }{
		{"\"workload.rate,slo.factor\" = [[1, 2], [3]]\n", `s.toml:16: sweep "workload.rate,slo.factor" value #2 (3): want a list of 2 values, one per key`},
		{"\"workload.rate,slo.factor\" = [[1, \"x\"]]\n", `s.toml:16: sweep "slo.factor" value #1 (x): incompatible types: TOML value has type string; destination has type float`},
		{"\"workload.rate,workload.rate\" = [[1, 2]]\n", `s.toml:16: sweep key "workload.rate" appears twice`},
	} {
		if _, err := ParseSpec("s.toml", []byte(baseSpec+"[sweep]\n"+c.sweep), nil); err == nil || err.Error() != c.want {
			t.Errorf("got  %v\nwant %s", err, c.want)
		}
	}
}
