// Package dashboards holds gpuorch's Grafana dashboards (serving.json,
// training.json) and their provisioning files; this test runs every panel
// and variable query against a real InfluxDB holding data from real runs.
package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/deploy"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/loadgen"
	"github.com/gpuorch/gpuorch/loadgen/simserver"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/results/trainlog"
	"github.com/gpuorch/gpuorch/taskrun"
)

// TestMain: when a deployment starts this test binary as a replica
// (`deploy replica`) or as the replica's server (`sim-server --listen
// ADDR`, the default models), it is that, not the tests.
func TestMain(m *testing.M) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	switch {
	case len(os.Args) > 2 && os.Args[1] == "deploy" && os.Args[2] == "replica":
		err := deploy.RunReplicaFromEnv(ctx, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case len(os.Args) > 3 && os.Args[1] == "sim-server" && os.Args[2] == "--listen":
		srv, err := simserver.New(simserver.DefaultModels())
		if err != nil {
			panic(err)
		}
		ln, err := net.Listen("tcp", os.Args[3])
		if err != nil {
			panic(err)
		}
		srv.Serve(ctx, ln)
		os.Exit(0)
	}
	stop()
	os.Exit(m.Run())
}

// runDeployment runs one task against a deployment of two local replicas
// (autoscaling on requests in flight between 1 and 2) for 3 s, its points
// going to InfluxDB database db as experiment exp.
func runDeployment(t *testing.T, ctx context.Context, exp, base, db string) {
	t.Helper()
	dir := t.TempDir()
	spec := filepath.Join(dir, "spec.toml")
	os.WriteFile(spec, []byte(`[experiment]
name = "dash-deploy"
[target]
protocol = "kserve"
models = ["resnet50_v2"]
[[workload]]
arrival = "poisson"
rate = 60
[run]
duration = "3s"
[deployment]
sim_server = []
replicas = 2
min_replicas = 1
max_replicas = 2
[deployment.autoscaling]
signal = "inflight"
per_replica = 4
window = "1s"
`), 0o644)
	s, err := orchestrator.LoadSpec(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	e, err := orchestrator.Create(filepath.Join(dir, "runs"), s, p, "local")
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.Plan.Tasks[0].Config
	cfg.Experiment, cfg.Task = exp, "t004-deployment"
	w, err := loadgen.BuildWorkload(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "gpuorch.toml") // none of the machine's settings
	os.WriteFile(conf, nil, 0o600)
	t.Setenv("GPUORCH_CONFIG", conf)
	t.Setenv("GPUORCH_INFLUX_URL", base)
	t.Setenv("GPUORCH_INFLUX_BUCKET", db)
	if _, err := deploy.RunTask(ctx, &cfg, w, taskrun.Options{Dir: e.TaskDir(0)}); err != nil {
		t.Fatalf("deployment run: %v", err)
	}
}

type dashboard struct {
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Query      string          `json:"query"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Targets []struct {
			RefID      string `json:"refId"`
			Query      string `json:"query"`
			RawQuery   bool   `json:"rawQuery"`
			Datasource struct {
				Type string `json:"type"`
				UID  string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

func loadDashboard(t *testing.T, name string) dashboard {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

// The dashboards are well formed even without InfluxDB: every panel has a
// raw InfluxQL query on the provisioned datasource, using the template
// variables.
func TestDashboardsWellFormed(t *testing.T) {
	for _, name := range []string{"serving.json", "training.json"} {
		d := loadDashboard(t, name)
		if len(d.Panels) < 6 {
			t.Errorf("%s: %d panels", name, len(d.Panels))
		}
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		if !vars["experiment"] || !vars["task"] {
			t.Errorf("%s: template variables %v, want experiment and task", name, vars)
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: duplicate panel id %d", name, p.ID)
			}
			ids[p.ID] = true
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", name, p.Title)
			}
			for _, tg := range p.Targets {
				if !tg.RawQuery || tg.Datasource.UID != "gpuorch-influxdb" || tg.Datasource.Type != "influxdb" {
					t.Errorf("%s: panel %q target %s: raw=%v datasource=%+v", name, p.Title, tg.RefID, tg.RawQuery, tg.Datasource)
				}
				if !strings.Contains(tg.Query, "$experiment") || !strings.Contains(tg.Query, "$task") || !strings.Contains(tg.Query, "$timeFilter") {
					t.Errorf("%s: panel %q does not filter by $experiment, $task and $timeFilter: %s", name, p.Title, tg.Query)
				}
			}
		}
	}
}

// expand substitutes Grafana's variables as Grafana does for InfluxQL:
// regex-escaped values inside /^…$/, the time filter and the interval.
func expand(q, exp, task string, from, to time.Time, interval string) string {
	r := strings.NewReplacer(
		"$experiment", regexp.QuoteMeta(exp),
		"$task", task,
		"$timeFilter", fmt.Sprintf("time >= %dms AND time <= %dms", from.UnixMilli(), to.UnixMilli()),
		"$__interval", interval,
	)
	return r.Replace(q)
}

func influxQL(t *testing.T, base, db, q string) (int, error) {
	t.Helper()
	vals, err := influxValues(t, base, db, q)
	return len(vals), err
}

// influxValues runs q and returns the rows of every series it returns.
func influxValues(t *testing.T, base, db, q string) ([][]any, error) {
	t.Helper()
	form := url.Values{"q": {q}, "db": {db}}
	resp, err := http.PostForm(strings.TrimRight(base, "/")+"/query", form)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Error  string `json:"error"`
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Error != "" {
		return nil, fmt.Errorf("%s", out.Error)
	}
	var rows [][]any
	for _, r := range out.Results {
		if r.Error != "" {
			return nil, fmt.Errorf("%s", r.Error)
		}
		for _, s := range r.Series {
			rows = append(rows, s.Values...)
		}
	}
	return rows, nil
}

// TestPanelQueriesReturnRows writes the points of real load runs (the
// simulated model server, a DNN over KServe v2 and an LLM over the
// OpenAI API, driven by loadgen) and of a real Metaseq training log through
// gpuorch's InfluxDB sink, then runs every panel and variable query of both
// dashboards and checks each returns rows.
func TestPanelQueriesReturnRows(t *testing.T) {
	base := testgate.InfluxDB(t)
	db := fmt.Sprintf("gpuorch_dash_%d", os.Getpid())
	if _, err := influxQL(t, base, "", "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { influxQL(t, base, "", "DROP DATABASE "+db) })
	cfg := results.InfluxConfig{URL: base, Bucket: db}
	sink, err := results.NewInfluxSink(cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	// A real model server and real load runs.
	srv, err := simserver.New(simserver.DefaultModels())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	target := "http://" + ln.Addr().String()
	const exp = "dash-test"
	runs := []loadgen.Config{
		{Task: "t000-rate=50", Tags: map[string]string{"rate": "50"},
			Target:   loadgen.TargetConfig{URL: target, Protocol: "kserve", Models: []string{"resnet50_v2"}},
			Workload: loadgen.WorkloadConfig{Name: "poisson", Arrival: "poisson", Rate: 50}},
		{Task: "t001-rate=150", Tags: map[string]string{"rate": "150"},
			Target:   loadgen.TargetConfig{URL: target, Protocol: "kserve", Models: []string{"resnet50_v2"}},
			Workload: loadgen.WorkloadConfig{Name: "poisson", Arrival: "poisson", Rate: 150}},
		{Task: "t002-llm", Tags: map[string]string{"rate": "10"},
			Target:   loadgen.TargetConfig{URL: target, Protocol: "openai", Models: []string{"sim-llm"}, InputTokens: 32, OutputTokens: 16},
			Workload: loadgen.WorkloadConfig{Name: "poisson", Arrival: "poisson", Rate: 10}},
	}
	runs = append(runs, loadgen.Config{Task: "t003-classes", Tags: map[string]string{"rate": "60"},
		Target:   loadgen.TargetConfig{URL: target, Protocol: "kserve", Models: []string{"resnet50_v2"}},
		Workload: loadgen.WorkloadConfig{Name: "fg-bg", Arrival: "fixed", Rate: 60}})
	start := time.Now()
	ctx := context.Background()
	for i := range runs {
		c := &runs[i]
		c.Experiment, c.Seed = exp, int64(i+1)
		c.Duration = loadgen.Duration(3 * time.Second)
		c.SLO = loadgen.SLOConfig{Deadline: loadgen.Duration(50 * time.Millisecond)}
		w, err := loadgen.BuildWorkload(c)
		if err != nil {
			t.Fatal(err)
		}
		if c.Workload.Name == "fg-bg" { // two request classes, as in Clockwork's slo-exp-2
			w = &loadgen.Workload{Name: "fg-bg", Open: []*loadgen.OpenLoop{
				{Model: "resnet50_v2", Class: "fg", Proc: loadgen.NewFixed(40)},
				{Model: "resnet50_v2", Class: "bg", Proc: loadgen.NewFixed(20)},
			}}
		}
		meta := loadgen.Summary{Experiment: c.Experiment, Task: c.Task, Workload: w.Name, Target: c.Target.URL, Protocol: c.Target.Protocol, Tags: c.Tags}
		sum, err := loadgen.Run(ctx, c, w, loadgen.RunOptions{OnSnapshot: func(s loadgen.Snapshot) {
			if err := sink.Write(ctx, results.SnapshotPoints(meta, s)...); err != nil {
				t.Error(err)
			}
		}})
		if err != nil {
			t.Fatalf("load run %s: %v", c.Task, err)
		}
		if err := sink.Write(ctx, results.SummaryPoints(*sum)...); err != nil {
			t.Fatal(err)
		}
	}

	// A sharded task: two shards of one task sending at once, each writing
	// its own points (tag shard), as the shards of run.shards = 2 do.
	const shardRate = 40
	var wg sync.WaitGroup
	for sh := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := loadgen.Config{Experiment: exp, Task: "t005-sharded", Seed: int64(10 + sh), Duration: loadgen.Duration(4 * time.Second),
				Target:   loadgen.TargetConfig{URL: target, Protocol: "kserve", Models: []string{"resnet50_v2"}},
				Workload: loadgen.WorkloadConfig{Name: "poisson", Arrival: "poisson", Rate: shardRate}}
			w, err := loadgen.BuildWorkload(&c)
			if err != nil {
				t.Error(err)
				return
			}
			meta := loadgen.Summary{Experiment: exp, Task: c.Task, Workload: w.Name, Target: target, Protocol: "kserve",
				Shard: &loadgen.ShardInfo{Index: sh, Count: 2}}
			sum, err := loadgen.Run(ctx, &c, w, loadgen.RunOptions{OnSnapshot: func(s loadgen.Snapshot) {
				if err := sink.Write(ctx, results.SnapshotPoints(meta, s)...); err != nil {
					t.Error(err)
				}
			}})
			if err != nil {
				t.Errorf("shard %d: %v", sh, err)
				return
			}
			sum.Shard = meta.Shard
			if err := sink.Write(ctx, results.SummaryPoints(*sum)...); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	// A real deployment: replicas of the simulated server started as local
	// processes (this test binary as gpuorch, see TestMain), the load spread
	// over them and the controller's decisions, through the task sink.
	runDeployment(t, ctx, exp, base, db)

	// Metaseq training logs: real train_inner lines with validation and
	// end-of-epoch lines (t000), and a run that diverges (t001, moved to
	// just after t000 so that one time range holds both).
	var trainFrom, trainTo time.Time
	for i, name := range []string{"metaseq-validation.log", "metaseq-diverged.log"} {
		f, err := os.Open(filepath.Join("..", "results", "trainlog", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		col := &trainlog.Collector{Tags: map[string]string{"experiment": "train-test", "task": fmt.Sprintf("t%03d", i)}}
		if _, err := trainlog.Parse(f, col); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if len(col.Records()) < 2 {
			t.Fatalf("%s gave %d records", name, len(col.Records()))
		}
		shift := time.Duration(0)
		if i > 0 {
			shift = trainTo.Add(time.Minute).Sub(col.Records()[0].Time)
		}
		for _, r := range col.Records() {
			r.Time = r.Time.Add(shift)
			if err := sink.Write(ctx, r.Point(col.Tags)); err != nil {
				t.Fatal(err)
			}
			if trainFrom.IsZero() || r.Time.Before(trainFrom) {
				trainFrom = r.Time
			}
			if r.Time.After(trainTo) {
				trainTo = r.Time
			}
		}
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}

	// The sharded task's throughput is its shards' added up (about
	// 2 × shardRate), not their mean (about shardRate).
	for _, p := range loadDashboard(t, "serving.json").Panels {
		if p.Title != "Throughput (completed req/s)" {
			continue
		}
		q := expand(p.Targets[0].Query, exp, "t005-sharded", start.Add(-time.Minute), time.Now().Add(time.Minute), "1s")
		vals, err := influxValues(t, base, db, q)
		if err != nil || len(vals) < 3 {
			t.Fatalf("throughput of the sharded task: %v, %v\n%s", vals, err, q)
		}
		var rates []float64
		for _, v := range vals {
			if f, ok := v[1].(float64); ok {
				rates = append(rates, f)
			}
		}
		slices.Sort(rates)
		if med := rates[len(rates)/2]; med < 1.5*shardRate || med > 2.5*shardRate {
			t.Errorf("throughput of a task of 2 shards at %d/s each: median %.1f/s over %v, want about %d/s", shardRate, med, rates, 2*shardRate)
		}
	}

	cases := []struct {
		file, exp, interval string
		from, to            time.Time
	}{
		{"serving.json", exp, "1s", start.Add(-time.Minute), time.Now().Add(time.Minute)},
		{"training.json", "train-test", "1s", trainFrom.Add(-time.Minute), trainTo.Add(time.Minute)},
	}
	for _, c := range cases {
		d := loadDashboard(t, c.file)
		for _, v := range d.Templating.List {
			q := expand(v.Query, c.exp, ".*", c.from, c.to, c.interval)
			n, err := influxQL(t, base, db, q)
			if err != nil || n == 0 {
				t.Errorf("%s: variable %s: %d rows, err %v\n%s", c.file, v.Name, n, err, q)
			}
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				q := expand(tg.Query, c.exp, ".*", c.from, c.to, c.interval)
				n, err := influxQL(t, base, db, q)
				if err != nil || n == 0 {
					t.Errorf("%s: panel %q (%s): %d rows, err %v\n%s", c.file, p.Title, tg.RefID, n, err, q)
				}
				// Filtering on one task must narrow, not break, the query.
				if c.file == "serving.json" {
					q1 := expand(tg.Query, c.exp, regexp.QuoteMeta("t001-rate=150"), c.from, c.to, c.interval)
					if _, err := influxQL(t, base, db, q1); err != nil {
						t.Errorf("%s: panel %q with one task: %v", c.file, p.Title, err)
					}
				}
			}
		}
	}
}
