package llmbench

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

const benchTOML = `name = "b1"
tags = ["x"]
concurrent_requests = [1, 8]
eval_with = "configuration"
cluster = "c1"
nodes = ["fl4u42"]

[configuration]
max_input_tokens = 512
max_output_tokens = 128

[model]
name = "meta-llama/Llama-2-7b-hf"
command = ["gpuorch", "sim-server", "--listen", "127.0.0.1:{port}"]
arch = "llama-2-7b"

[hardware]
device = "A100 80GB"
tp = 2

[slo]
ttft = "500ms"
`

func TestParseBenchSpec(t *testing.T) {
	s, err := ParseSpec("b.toml", []byte(benchTOML))
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Validate(context.Background(), testEnv())
	if err != nil {
		t.Fatal(err)
	}
	p, bt, err := r.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if r.Executor != "slurm" || len(p.Tasks) != 2 || p.Slurm.GPUs != "2" || p.Slurm.Nodelist != "fl4u42" {
		t.Fatalf("plan: executor %s, %d tasks, slurm %+v", r.Executor, len(p.Tasks), p.Slurm)
	}
	c := p.Tasks[1].Config
	if c.Workload.Arrival != "closed" || c.Workload.Concurrency != 8 || c.Workload.MaxRequests != 24 ||
		c.Target.Protocol != "openai" || c.Target.InputTokens != 512 || c.Target.OutputTokens != 128 || c.SLO.TTFT.D() != 500*time.Millisecond {
		t.Errorf("task 1 config: %+v", c)
	}
	if bt.ServerArgv[0] != "gpuorch" || !strings.Contains(r.Describe(p, bt), "t001-concurrency=8") {
		t.Errorf("task: %+v", bt)
	}
	preds, err := s.Simulate(r)
	if err != nil || len(preds) != 2 || preds[1].TPOT <= preds[0].TPOT/2 || preds[1].OutputTokensPerS <= preds[0].OutputTokensPerS {
		t.Errorf("simulate: %+v %v", preds, err)
	}

	// The same spec as JSON, with a single level.
	js := `{"name": "b2", "concurrent_requests": 4, "eval_with": "dataset", "cluster": "local",
	  "dataset": {"files": ["../examples/datasets/sharegpt-mini.jsonl"]},
	  "model": {"name": "m", "url": "https://api.example.com/", "credential": "cred-1"}}`
	s2, err := ParseSpec("b.json", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s2.Validate(context.Background(), Env{Credential: testEnv().Credential})
	if err != nil {
		t.Fatal(err)
	}
	p2, _, _ := r2.Plan()
	if r2.Executor != "local" || r2.Dataset.Prompts != 7 || p2.Tasks[0].Config.Target.CredentialEnv != "GPUORCH_CREDENTIAL_CRED_1" || p2.Tasks[0].Config.Workload.MaxRequests != 12 {
		t.Errorf("json spec: %+v %+v", r2, p2.Tasks[0].Config)
	}
	// The manifest names the dataset by absolute path (tasks run elsewhere)
	// and carries no fixed lengths: the load generator sends its prompts.
	tc := p2.Tasks[0].Config.Target
	if len(tc.PromptFiles) != 1 || !filepath.IsAbs(tc.PromptFiles[0]) || filepath.Base(tc.PromptFiles[0]) != "sharegpt-mini.jsonl" || tc.InputTokens != 0 || tc.OutputTokens != 0 {
		t.Errorf("dataset target: %+v", tc)
	}
	if d := r2.Describe(p2, &TaskInfo{}); !strings.Contains(d, "sent in file order") {
		t.Errorf("plan text:\n%s", d)
	}
}

func TestParseBenchSpecErrors(t *testing.T) {
	for _, tc := range []struct{ name, file, from, to, want string }{
		{"unknown key", "b.toml", `tp = 2`, `tpp = 2`, `b.toml:19: unknown key "hardware.tpp" (did you mean "tp"?)`},
		{"wrong type", "b.toml", `max_output_tokens = 128`, `max_output_tokens = 1.5`, `b.toml:10: configuration.max_output_tokens:`},
		{"bad level", "b.toml", `[1, 8]`, `[1, 0]`, `concurrent_requests: 0: must be at least 1`},
		{"two kinds", "b.toml", `arch = "llama-2-7b"`, `url = "http://x"`, `model: give exactly one of command`},
		{"bad eval", "b.toml", `eval_with = "configuration"`, `eval_with = "config"`, `eval_with: "config"`},
		{"credential on local", "b.toml", `arch = "llama-2-7b"`, `credential = "k"`, `model.credential: only for a cloud model`},
		{"syntax", "b.toml", `name = "b1"`, `name = `, `b.toml:1:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec(tc.file, []byte(strings.Replace(benchTOML, tc.from, tc.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := ParseSpec("b.json", []byte("{\n\"name\": \"x\",\n\"num_prompt\": 3}")); err == nil || !strings.Contains(err.Error(), `b.json:3: unknown key "num_prompt" (did you mean "num_prompts"?)`) {
		t.Errorf("json unknown key: %v", err)
	}
	if _, err := ParseSpec("b.json", []byte("{\n\"name\": \"x\",\n\"num_prompts\": \"3\"}")); err == nil || !strings.Contains(err.Error(), `b.json:3: num_prompts: want int`) {
		t.Errorf("json type: %v", err)
	}
	s, _ := ParseSpec("b.toml", []byte(strings.Replace(benchTOML, `["fl4u42"]`, `["fl4u42", "nope"]`, 1)))
	if _, err := s.Validate(context.Background(), testEnv()); err == nil || !strings.Contains(err.Error(), `b.toml:6: nodes: unknown node "nope" in cluster "c1"`) {
		t.Errorf("unknown node: %v", err)
	}
}

func TestCredentials(t *testing.T) {
	c := &Credentials{Path: filepath.Join(t.TempDir(), "sub", "creds.json")}
	if _, err := c.Get("k1"); err == nil {
		t.Fatal("unknown credential found")
	}
	if err := c.Add("k1", "secret-1"); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(c.Path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	if v, err := c.Get("k1"); err != nil || v != "secret-1" {
		t.Errorf("get: %q %v", v, err)
	}
	t.Setenv("GPUORCH_CREDENTIAL_K1", "from-env")
	if v, _ := c.Get("k1"); v != "from-env" {
		t.Errorf("env should win: %q", v)
	}
	os.Chmod(c.Path, 0o640)
	if _, err := c.List(); !errors.Is(err, ErrLoosePerms) {
		t.Errorf("0640 accepted: %v", err)
	}
	os.Chmod(c.Path, 0o600)
	if err := c.Remove("k1"); err != nil {
		t.Fatal(err)
	}
	if l, _ := c.List(); len(l) != 0 {
		t.Errorf("after rm: %v", l)
	}
}

func TestCheckEndpoint(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"data": []}`))
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := CheckEndpoint(ctx, srv.URL, "good"); err != nil {
		t.Error(err)
	}
	if err := CheckEndpoint(ctx, srv.URL, "bad"); err == nil || !strings.Contains(err.Error(), "rejected the credential (HTTP 401)") || strings.Contains(err.Error(), "bad") {
		t.Errorf("bad key: %v", err)
	}
	if err := CheckEndpoint(ctx, "http://127.0.0.1:1", "k"); !errors.Is(err, errkind.ErrUnavailable) {
		t.Errorf("unreachable: %v", err)
	}
}

func FuzzParseBenchSpec(f *testing.F) {
	f.Add(benchTOML)
	f.Add(`{"name": "b", "concurrent_requests": [1, 2], "eval_with": "dataset"}`)
	f.Fuzz(func(t *testing.T, src string) {
		_, _ = ParseSpec("f.toml", []byte(src))
	})
}

func TestBenchImageServer(t *testing.T) {
	img := filepath.Join(t.TempDir(), "vllm.sif")
	os.WriteFile(img, []byte("not really a SIF"), 0o644)
	src := strings.Replace(benchTOML, `command = ["gpuorch", "sim-server", "--listen", "127.0.0.1:{port}"]`,
		`image = "`+img+`"
args = ["--port", "{port}"]`, 1)
	s, err := ParseSpec("b.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Validate(context.Background(), testEnv())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"apptainer", "run", "--nv", img, "--port", "{port}"}
	if strings.Join(r.ServerArgv, " ") != strings.Join(want, " ") {
		t.Errorf("argv %q, want %q", r.ServerArgv, want)
	}
	os.Remove(img)
	if _, err := s.Validate(context.Background(), testEnv()); err == nil || !strings.Contains(err.Error(), "model.image: unknown image") {
		t.Errorf("missing image: %v", err)
	}
	// simulate needs neither the image nor the program.
	if _, err := s.Validate(context.Background(), Env{SimulateOnly: true}); err != nil {
		t.Errorf("simulate-only: %v", err)
	}
}

// The shipped examples parse, validate (as far as simulate needs) and
// simulate.
func TestBenchExamples(t *testing.T) {
	files, _ := filepath.Glob("../examples/bench-*.toml")
	js, _ := filepath.Glob("../examples/bench-cloud.json")
	files = append(files, js...)
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		s, err := LoadSpec(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		r, err := s.Validate(context.Background(), Env{SimulateOnly: true})
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if preds, err := s.Simulate(r); err != nil || len(preds) != len(s.Levels()) {
			t.Errorf("%s: simulate: %v", f, err)
		}
	}
}

// The bench spec's TOML errors read as every other strict TOML file's:
// file:line, the key, the first problem in file order.
func TestParseBenchSpecTOMLErrors(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"bad duration", `ttft = "500ms"`, `ttft = "500"`, `b.toml:22: slo.ttft: invalid duration "500" (want e.g. "500ms", "30s", "2m")`},
		{"bad level type", `[1, 8]`, `[1, "8"]`, `b.toml:3: concurrent_requests: element 1: want an integer, got string`},
		{"first in file order", "tp = 2", "tp = \"2\"\ndevce = \"x\"", `b.toml:19: hardware.tp: incompatible types: TOML value has type string; destination has type integer`},
		{"unknown table", "[slo]", "[sloo]", `b.toml:21: unknown key "sloo" (did you mean "slo"?)`},
		{"syntax", `cluster = "c1"`, `cluster = "c1`, `b.toml:5: cluster: strings cannot contain newlines`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec("b.toml", []byte(strings.Replace(benchTOML, tc.from, tc.to, 1)))
			if err == nil || err.Error() != tc.want {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}
