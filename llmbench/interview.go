package llmbench

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/perfmodel"
)

// Interview builds a spec from a person's answers (`gpuorch bench new`):
// ask poses a question with its default and returns the answer, the default
// when the answer is empty. It returns the spec as TOML, checked by
// ParseSpec under the name file; a spec that does not check is an error of
// kind errkind.ErrInvalid, returned with the text so it can be shown.
func Interview(ask func(question, def string) string, file string) ([]byte, error) {
	list := func(s string) []string {
		var out []string
		for _, f := range strings.Split(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
		return out
	}
	number := func(s string) int { n, _ := strconv.Atoi(strings.TrimSpace(s)); return n }
	spec := map[string]any{"name": ask("name (lowercase letters, digits, . _ -)", "")}
	if d := ask("description", ""); d != "" {
		spec["description"] = d
	}
	if t := list(ask("tags, comma-separated", "")); len(t) > 0 {
		spec["tags"] = t
	}
	var levels []int
	for _, f := range list(ask("concurrent requests, comma-separated levels", "1,4,16")) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, errkind.Invalidf("bench new: concurrent requests: %q is not an integer", f)
		}
		levels = append(levels, n)
	}
	spec["concurrent_requests"] = levels
	eval := ask("evaluate with: configuration or dataset", "configuration")
	spec["eval_with"] = eval
	spec["cluster"] = ask("cluster: local or the Slurm cluster's name", "local")
	if n := list(ask("nodes, comma-separated (empty: any)", "")); len(n) > 0 {
		spec["nodes"] = n
	}
	switch eval {
	case "dataset":
		spec["dataset"] = map[string]any{"files": list(ask("dataset files (ShareGPT JSON or JSONL), comma-separated", ""))}
	default:
		spec["configuration"] = map[string]any{
			"max_input_tokens":  number(ask("max input tokens", "128")),
			"max_output_tokens": number(ask("max output tokens", "128")),
		}
	}
	model := map[string]any{"name": ask("model name (what requests carry)", "")}
	switch ask("model runs as: command, image or url", "command") {
	case "image":
		model["image"] = ask("SIF image path", "")
		if a := strings.Fields(ask("arguments after the image (use {port})", "")); len(a) > 0 {
			model["args"] = a
		}
	case "url":
		model["url"] = ask("OpenAI-compatible base URL", "")
		if cr := ask("credential name (gpuorch credentials add NAME)", ""); cr != "" {
			model["credential"] = cr
		}
	default:
		model["command"] = strings.Fields(ask("server command (use {port} for the port)", ""))
	}
	if a := ask("architecture for simulate ("+strings.Join(perfmodel.KnownArchs(), ", ")+"; empty: none)", ""); a != "" {
		model["arch"] = a
	}
	spec["model"] = model
	if d := ask("GPU model for simulate (e.g. H100, A100 80GB; empty: none)", ""); d != "" {
		spec["hardware"] = map[string]any{"device": d, "tp": number(ask("tensor parallelism", "1"))}
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(spec); err != nil {
		return nil, fmt.Errorf("bench new: encode the spec: %w", err)
	}
	if _, err := ParseSpec(file, b.Bytes()); err != nil {
		return b.Bytes(), errkind.Invalidf("bench new: the answers do not make a valid spec: %w", err)
	}
	return b.Bytes(), nil
}
