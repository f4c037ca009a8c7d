package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/llmbench"
	"github.com/gpuorch/gpuorch/taskrun"
)

// A dataset-mode run sends the dataset's own prompts, one per request in
// file order, with max_tokens = the reference answer's length capped by
// [configuration] max_output_tokens: the per-request rows show the
// dataset's varying lengths, not its means.
func TestBenchDatasetSendsPrompts(t *testing.T) {
	data, err := filepath.Abs("../../examples/datasets/sharegpt-mini.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	want, err := llmbench.LoadDataset(data)
	if err != nil {
		t.Fatal(err)
	}
	const capOut = 20
	b := newBenchCLI(t)
	spec := writeSpec(t, `name = "e2e-dataset"
concurrent_requests = 1
eval_with = "dataset"
num_prompts = `+strconv.Itoa(len(want))+`
cluster = "local"
[dataset]
files = [`+strconv.Quote(data)+`]
[configuration]
max_output_tokens = `+strconv.Itoa(capOut)+`
[model]
name = "sim-llm"
command = ["gpuorch", "sim-server", "--listen", "127.0.0.1:{port}", "--llm", "sim-llm:prefill_per_token=0.1ms:tpot=1ms"]
[run]
ready_timeout = "20s"
`)
	plan, errOut, code := b.run("", "bench", "plan", spec)
	if code != 0 || !bytes.Contains([]byte(plan), []byte("sent in file order")) {
		t.Fatalf("bench plan: exit %d\n%s\n%s", code, plan, errOut)
	}
	out, errOut, code := b.run("", "bench", "run", "--yes", "--per-request", "--json", "--binary", b.bin, spec)
	if code != 0 {
		t.Fatalf("bench run: exit %d\n%s\n%s", code, out, errOut)
	}
	var res struct{ Dir, State string }
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.State != "completed" {
		t.Fatalf("bench run output %q: %v", out, err)
	}
	f, err := os.Open(filepath.Join(res.Dir, "tasks", "0", layout.RequestsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []taskrun.RequestRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r taskrun.RequestRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	distinct := map[int]bool{}
	for i, r := range rows { // concurrency 1: rows in request order
		w := want[i]
		if r.Outcome != "ok" || r.InputTokens != w.InputTokens || r.OutputTokens != min(w.OutputTokens, capOut) {
			t.Errorf("row %d: %s in %d out %d; want in %d out %d", i, r.Outcome, r.InputTokens, r.OutputTokens, w.InputTokens, min(w.OutputTokens, capOut))
		}
		distinct[r.InputTokens] = true
	}
	if len(distinct) < 3 {
		t.Errorf("input lengths %v: want the dataset's varying lengths", distinct)
	}
}
