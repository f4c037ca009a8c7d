package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/llmbench"
)

// TestBenchSeedPayloadsCLI runs the seed's eight payloads (examples/seed-002,
// verbatim: configuration method) through `gpuorch bench step` against the
// local cluster, once their ids are registered with `gpuorch bench
// clusters|models add` and `gpuorch credentials add`: the seed's model is a
// cloud model (a sim-server behind a key), its node fl4u42 is mapped to this
// machine. Step 8 runs the benchmark to the end.
func TestBenchSeedPayloadsCLI(t *testing.T) {
	t.Parallel()
	b := newBenchCLI(t)
	const secret = "sk-seed-002-never-on-disk"
	cloud := authProxy(t, b.bin, secret)
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, errOut, code := b.run(stdin, args...)
		if code != 0 {
			t.Fatalf("gpuorch %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out + errOut
	}
	must("", "bench", "clusters", "add", "--id", "1fbb9c3c-4198-4e7e-8a1e-02b86041ea82", "--name", "bud-demo", "--node", "fl4u42=localhost", "local")
	model := filepath.Join(t.TempDir(), "model.json")
	os.WriteFile(model, []byte(`{"name": "cloud-llm", "url": "`+cloud.URL+`", "arch": "llama-2-7b"}`), 0o644)
	must("", "bench", "models", "add", "--id", "30cc08ec-465c-4041-898e-a08e3889cee9", model)
	must(secret+"\n", "credentials", "add", "22d4bb50-d574-4cb1-8b09-0b00138b2bcc")
	if out := must("", "bench", "clusters", "list"); !strings.Contains(out, "1fbb9c3c-4198-4e7e-8a1e-02b86041ea82  bud-demo  local (1 node names mapped)") {
		t.Errorf("clusters list:\n%s", out)
	}

	seed := filepath.Join("..", "..", "examples", "seed-002")
	var lastOut, lastErr string
	for _, name := range []string{"step1-configuration", "step2-configuration", "step3", "step4", "step5", "step6", "step7", "step8"} {
		out, errOut, code := b.run("", "bench", "step", "--binary", b.bin, filepath.Join(seed, name+".json"))
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", name, code, out, errOut)
		}
		lastOut, lastErr = out, errOut
	}
	if !strings.Contains(lastOut, ": completed, step 8 of 9") ||
		!strings.Contains(lastOut, "also answers to workflow_id dcfddf9b-5f07-47e9-8483-24f546bb7667, 9e4aa5c6-d2df-42ab-8972-a954bd7f6485") ||
		!strings.Contains(lastErr, "nodes: fl4u42 (localhost); device cpu Intel(R) Xeon(R) Platinum 8480+ (available_count 8)") ||
		!strings.Contains(lastErr, "cluster 1fbb9c3c-4198-4e7e-8a1e-02b86041ea82, registered as bud-demo: local") {
		t.Errorf("step 8:\n%s%s", lastOut, lastErr)
	}
	var w llmbench.Workflow
	if err := json.Unmarshal([]byte(must("", "bench", "step", "--json", "--show", "9e4aa5c6-d2df-42ab-8972-a954bd7f6485")), &w); err != nil || w.Status != "completed" || w.Experiment == "" {
		t.Fatalf("the workflow by the seed's id: %+v %v", w, err)
	}
	// 50 concurrent requests, 3 × 50 prompts of 50 input and 100 output
	// tokens, all through the key.
	show := must("", "bench", "show", "--json", w.Experiment)
	var levels struct {
		Levels []struct {
			Concurrency int
			Metrics     struct{ Completed, Failed int }
		}
	}
	if err := json.Unmarshal([]byte(show), &levels); err != nil || len(levels.Levels) != 1 || levels.Levels[0].Concurrency != 50 ||
		levels.Levels[0].Metrics.Completed != 150 || levels.Levels[0].Metrics.Failed != 0 {
		t.Errorf("bench show: %+v %v\n%s", levels, err, show)
	}
	filepath.WalkDir(b.home, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(secret)) {
				t.Errorf("the secret is in %s", p)
			}
		}
		return nil
	})

	// Registry commands: show, remove, and their errors.
	if out := must("", "bench", "models", "show", "30cc08ec-465c-4041-898e-a08e3889cee9"); !strings.Contains(out, `"url":"`+cloud.URL+`"`) {
		t.Errorf("models show:\n%s", out)
	}
	if _, errOut, code := b.run("", "bench", "clusters", "add", "--id", "1fbb9c3c-4198-4e7e-8a1e-02b86041ea82", "local"); code != exitUsage || !strings.Contains(errOut, "already registered") {
		t.Errorf("add twice: %d %s", code, errOut)
	}
	must("", "bench", "models", "remove", "30cc08ec-465c-4041-898e-a08e3889cee9")
	if _, errOut, code := b.run("", "bench", "models", "show", "30cc08ec-465c-4041-898e-a08e3889cee9"); code != exitUsage || !strings.Contains(errOut, "no model") {
		t.Errorf("show removed: %d %s", code, errOut)
	}
	if _, errOut, code := b.run("", "bench", "datasets", "add", filepath.Join(t.TempDir(), "none.json")); code != exitUsage || !strings.Contains(errOut, "none.json") {
		t.Errorf("missing dataset file: %d %s", code, errOut)
	}
}
