package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/orchestrator"
)

// gpuorchShim is a "gpuorch" binary for tests that run it through
// executors, wrapper scripts and servers: a script that runs this test
// binary as gpuorch (TestRunMainHelper) with its arguments.
const gpuorchShim = `#!/bin/sh
j='['; s=''
for a in "$@"; do
  e=$(printf '%s' "$a" | sed 's/\\/\\\\/g; s/"/\\"/g')
  j="$j$s\"$e\""; s=','
done
GPUORCH_TEST_MAIN_ARGS="$j]" exec "$GPUORCH_TEST_BINARY" -test.run='^TestRunMainHelper$'
`

func gpuorchBinary(t *testing.T) string {
	t.Helper()
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "gpuorch")
	if err := os.WriteFile(p, []byte(gpuorchShim), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GPUORCH_TEST_BINARY", self)
	return p
}

type benchCLI struct {
	t    *testing.T
	bin  string
	home string
	env  []string
}

func newBenchCLI(t *testing.T) *benchCLI {
	dir := t.TempDir()
	return &benchCLI{t: t, bin: gpuorchBinary(t), home: filepath.Join(dir, "runs"),
		env: []string{"GPUORCH_HOME=" + filepath.Join(dir, "runs"), "GPUORCH_CREDENTIALS=" + filepath.Join(dir, "creds.json")}}
}

func (b *benchCLI) run(stdin string, args ...string) (string, string, int) {
	b.t.Helper()
	cmd := exec.Command(b.bin, args...)
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		b.t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func writeSpec(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bench.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// simSpec: sim-server at 2 ms per prompt token and 10 ms per output token,
// and a simulate "device" with exactly those speeds: 1e9 parameters of 2
// bytes; 1 TFLOPS computes 2e9 FLOPs per prompt token in 2 ms, 200 GB/s
// reads the 2 GB of weights in 10 ms per decode step.
const simSpec = `name = "e2e-sim"
concurrent_requests = [1, 4]
eval_with = "configuration"
num_prompts = 8
cluster = "local"
nodes = ["localhost"]
[configuration]
max_input_tokens = 100
max_output_tokens = 20
[model]
name = "sim-llm"
command = ["gpuorch", "sim-server", "--listen", "127.0.0.1:{port}", "--llm", "sim-llm:prefill_per_token=2ms:tpot=10ms:concurrency=8"]
params = 1e9
[hardware]
peak_fp16_tflops = 1
memory_bandwidth_gbps = 200
memory_gb = 1000
compute_efficiency = 1
bandwidth_efficiency = 1
max_batch = 8
prefill_overlap = true
[run]
ready_timeout = "20s"
`

func TestBenchEndToEndSimServer(t *testing.T) {
	b := newBenchCLI(t)
	spec := writeSpec(t, simSpec)
	out, errOut, code := b.run("", "bench", "run", "--yes", "--per-request", "--json", "--binary", b.bin, spec)
	if code != 0 {
		t.Fatalf("bench run: exit %d\n%s\n%s", code, out, errOut)
	}
	var res struct {
		ID, Dir, State string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.State != "completed" {
		t.Fatalf("bench run output %q: %v", out, err)
	}
	show, errOut, code := b.run("", "bench", "show", "--json", res.ID)
	if code != 0 {
		t.Fatalf("bench show: %d %s", code, errOut)
	}
	var sh struct {
		Levels []struct {
			Concurrency int
			Metrics     map[string]any
			Predicted   map[string]any
			ErrorPct    map[string]float64 `json:"error_pct"`
		}
	}
	if err := json.Unmarshal([]byte(show), &sh); err != nil || len(sh.Levels) != 2 {
		t.Fatalf("bench show --json: %v\n%s", err, show)
	}
	for _, l := range sh.Levels {
		med := func(k string) float64 { return l.Metrics[k+"_ms"].(map[string]any)["median"].(float64) }
		// Measured against the configured speeds (100 tokens × 2 ms; 10 ms).
		if v := med("ttft"); math.Abs(v-200) > 20 {
			t.Errorf("c=%d: median TTFT %.1f ms, want 200 ± 10%%", l.Concurrency, v)
		}
		if v := med("tpot"); math.Abs(v-10) > 1 {
			t.Errorf("c=%d: median TPOT %.2f ms, want 10 ± 10%%", l.Concurrency, v)
		}
		if n := l.Metrics["completed"].(float64); n != 8 {
			t.Errorf("c=%d: %v requests completed, want 8", l.Concurrency, n)
		}
		// The prediction for a device with those speeds matches the
		// measurement too.
		for _, k := range []string{"ttft", "tpot"} {
			p, ok := l.Predicted[k+"_ms"].(float64)
			if !ok {
				t.Fatalf("c=%d: no predicted %s: %v", l.Concurrency, k, l.Predicted)
			}
			if m := med(k); math.Abs(p-m) > 0.1*m {
				t.Errorf("c=%d: predicted %s %.2f ms vs measured median %.2f: more than 10%% apart", l.Concurrency, k, p, m)
			}
		}
		for _, k := range []string{"ttft", "tpot", "e2el", "output_throughput"} {
			if _, ok := l.ErrorPct[k]; !ok {
				t.Errorf("c=%d: no error%% for %s", l.Concurrency, k)
			}
		}
	}
	// Per-request rows, the human-readable table and the server log.
	rows, err := os.ReadFile(filepath.Join(res.Dir, "tasks", "1", orchestrator.RequestsFile))
	if err != nil || strings.Count(string(rows), "\n") != 8 || !strings.Contains(string(rows), `"ttft_ms"`) {
		t.Errorf("requests.jsonl: %v\n%s", err, rows)
	}
	text, _, _ := b.run("", "bench", "show", "--per-request", res.ID)
	for _, want := range []string{"PREDICTED", "ERROR", "ttft", "tpot", "itl", "e2el", "P25", "P99", "out_tok/s", "TTFT_MS"} {
		if !strings.Contains(text, want) {
			t.Errorf("bench show output lacks %q:\n%s", want, text)
		}
	}
	if _, err := os.Stat(filepath.Join(res.Dir, "tasks", "0", "server.log")); err != nil {
		t.Errorf("server log: %v", err)
	}
}

// authProxy is a "cloud endpoint": it accepts only Bearer secret and
// forwards to a sim-server.
func authProxy(t *testing.T, bin, secret string) *httptest.Server {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	srv := exec.Command(bin, "sim-server", "--listen", "127.0.0.1:0", "--addr-file", addrFile, "--llm", "cloud-llm:prefill_per_token=0.1ms:tpot=1ms")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	var addr []byte
	for i := 0; i < 100 && len(addr) == 0; i++ {
		time.Sleep(50 * time.Millisecond)
		addr, _ = os.ReadFile(addrFile)
	}
	if len(addr) == 0 {
		t.Fatal("sim-server did not start")
	}
	u, _ := url.Parse("http://" + strings.TrimSpace(string(addr)))
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			http.Error(w, "bad key", http.StatusUnauthorized)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(h.Close)
	return h
}

func TestBenchCredentialNeverWritten(t *testing.T) {
	b := newBenchCLI(t)
	const secret = "sk-TEST-8f3a9c0e-never-on-disk"
	cloud := authProxy(t, b.bin, secret)
	if _, e, code := b.run(secret+"\n", "credentials", "add", "cloudkey"); code != 0 {
		t.Fatalf("credentials add: %d %s", code, e)
	}
	spec := writeSpec(t, fmt.Sprintf(`name = "cloud"
concurrent_requests = 2
eval_with = "configuration"
cluster = "local"
[configuration]
max_input_tokens = 10
max_output_tokens = 5
[model]
name = "cloud-llm"
url = %q
credential = "cloudkey"
`, cloud.URL))
	out, errOut, code := b.run("", "bench", "run", "--yes", "--per-request", "--json", "--binary", b.bin, spec)
	if code != 0 {
		t.Fatalf("bench run: %d\n%s\n%s", code, out, errOut)
	}
	var res struct{ ID, Dir, State string }
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.State != "completed" {
		t.Fatalf("run: %q %v", out, err)
	}
	// The Slurm script the same experiment would submit.
	exp, err := orchestrator.Open(b.home, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	job, err := orchestrator.SlurmJob(exp.Plan, res.ID, exp.Dir, filepath.Join(exp.Dir, orchestrator.BenchWrapper), []int{0})
	if err != nil {
		t.Fatal(err)
	}
	script, err := job.Render()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "x.sbatch"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	show, _, _ := b.run("", "bench", "show", "--json", res.ID)
	files := 0
	err = filepath.WalkDir(b.home, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("the secret is in %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 8 {
		t.Fatalf("only %d files under the experiment home: the grep proves nothing", files)
	}
	for what, s := range map[string]string{"stdout": out, "stderr": errOut, "sbatch script": script, "show": show} {
		if strings.Contains(s, secret) {
			t.Errorf("the secret is in the %s", what)
		}
	}
	if !strings.Contains(script, "bench-task.sh") || !strings.Contains(readFile(filepath.Join(exp.Dir, "tasks", "0", "manifest.json")), orchestrator.CredentialEnv("cloudkey")) {
		t.Error("the manifest should name the credential's environment variable")
	}
	// The requests did carry it: the proxy answered them.
	if !strings.Contains(show, `"completed": 6`) {
		t.Errorf("expected 6 completed requests:\n%s", show)
	}

	// A credential the endpoint rejects fails in the readiness check, before
	// any experiment exists.
	b.env = append(b.env, orchestrator.CredentialEnv("cloudkey")+"=wrong-key")
	_, errOut, code = b.run("", "bench", "run", "--yes", spec)
	if code == 0 || !strings.Contains(errOut, "rejected the credential") {
		t.Errorf("wrong key: exit %d, %s", code, errOut)
	}
	if ents, _ := os.ReadDir(b.home); len(ents) != 1 {
		t.Errorf("a rejected credential created an experiment: %d entries", len(ents))
	}
}

func TestBenchBadInput(t *testing.T) {
	b := newBenchCLI(t)
	base := strings.Replace(simSpec, `name = "e2e-sim"`, `name = "bad"`, 1)
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"unknown key", `num_prompts = 8`, `num_prompt = 8`, `:4: unknown key "num_prompt" (did you mean "num_prompts"?)`},
		{"wrong type", `max_input_tokens = 100`, `max_input_tokens = "100"`, `:8: configuration.max_input_tokens`},
		{"unknown node", `nodes = ["localhost"]`, `nodes = ["gpu-node-99"]`, `nodes: unknown node "gpu-node-99"`},
		{"unknown dataset", "[configuration]", "[dataset]\nfiles = [\"/nonexistent/sharegpt.json\"]\n[configuration]", `unknown or unreadable dataset`},
		{"unknown model program", `command = ["gpuorch"`, `command = ["no-such-server-xyz"`, `unknown server program "no-such-server-xyz"`},
		{"unknown arch", `params = 1e9`, `arch = "gpt-17"`, `unknown model architecture "gpt-17"`},
		{"unknown cluster", `cluster = "local"`, `cluster = "nowhere"`, `cluster: "nowhere"`},
		{"missing eval", `eval_with = "configuration"`, ``, `eval_with: required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(base, tc.from, tc.to, 1)
			if tc.name == "unknown dataset" {
				text = strings.Replace(text, `eval_with = "configuration"`, `eval_with = "dataset"`, 1)
			}
			spec := writeSpec(t, text)
			_, errOut, code := b.run("", "bench", "run", "--yes", spec)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want an error containing %q", code, errOut, tc.want)
			}
			if _, err := os.Stat(b.home); err == nil {
				t.Error("bad input created the experiment home")
			}
		})
	}
	// No terminal and no --yes: refuse.
	spec := writeSpec(t, base)
	if _, errOut, code := b.run("", "bench", "run", spec); code != exitUsage || !strings.Contains(errOut, "--yes") {
		t.Errorf("no terminal: exit %d %s", code, errOut)
	}
}
