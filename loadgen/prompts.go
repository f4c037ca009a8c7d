package loadgen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gpuorch/gpuorch/internal/limitio"
)

// Prompt is one dataset prompt: its text and the length of its reference
// answer, in tokens (what the request asks for as max_tokens).
type Prompt struct {
	Text         string
	InputTokens  int
	OutputTokens int
}

// CountTokens estimates tokens as whitespace-separated words — what
// gpuorch sim-server counts; real tokenizers give about 1.3× more.
func CountTokens(s string) int { return len(strings.Fields(s)) }

// promptRecord is one ShareGPT conversation, or a flat prompt record.
type promptRecord struct {
	Conversations []struct {
		From  string `json:"from"`
		Value string `json:"value"`
	} `json:"conversations"`
	Prompt       string `json:"prompt"`
	Output       string `json:"output"`
	Completion   string `json:"completion"`
	OutputTokens int    `json:"output_tokens"`
}

func (r *promptRecord) prompt() (Prompt, bool) {
	if len(r.Conversations) > 0 {
		// ShareGPT: the first human turn and the answer after it (as vLLM's
		// benchmark does).
		for i := 0; i+1 < len(r.Conversations); i++ {
			c := r.Conversations[i]
			if c.From == "human" || c.From == "user" {
				p := Prompt{c.Value, CountTokens(c.Value), CountTokens(r.Conversations[i+1].Value)}
				return p, p.InputTokens > 0 && p.OutputTokens > 0
			}
		}
		return Prompt{}, false
	}
	out := r.OutputTokens
	if out == 0 {
		out = CountTokens(r.Output + " " + r.Completion)
	}
	p := Prompt{r.Prompt, CountTokens(r.Prompt), out}
	return p, p.InputTokens > 0 && out > 0
}

// LoadPrompts reads a ShareGPT-style JSON array ([{"conversations": [{"from":
// "human", "value": …}, {"from": "gpt", "value": …}]}, …]) or JSONL (one
// such object, or {"prompt": …, "output": …|"output_tokens": N}, per line),
// in file order. Conversations without a prompt and an answer are skipped;
// a file with none is an error.
//
// The file is read within limitio.Dataset's limits.
func LoadPrompts(path string) ([]Prompt, error) {
	b, err := limitio.ReadFile(path, limitio.Dataset)
	if err != nil {
		return nil, err
	}
	var recs []promptRecord
	trim := bytes.TrimSpace(b)
	if bytes.HasPrefix(trim, []byte("[")) {
		if err := json.Unmarshal(trim, &recs); err != nil {
			return nil, fmt.Errorf("%s: not a ShareGPT JSON array: %w", path, err)
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(b))
		// Lines are within limitio.Dataset.Line already.
		sc.Buffer(make([]byte, 64<<10), limitio.Dataset.Line+2)
		line := 0
		for sc.Scan() {
			line++
			l := bytes.TrimSpace(sc.Bytes())
			if len(l) == 0 {
				continue
			}
			var r promptRecord
			if err := json.Unmarshal(l, &r); err != nil {
				return nil, fmt.Errorf("%s:%d: not a JSON object: %w", path, line, err)
			}
			recs = append(recs, r)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	var out []Prompt
	for _, r := range recs {
		if p, ok := r.prompt(); ok {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New(path + ": no prompt with an answer (want ShareGPT conversations or {\"prompt\", \"output\"} lines)")
	}
	return out, nil
}

// loadPromptFiles concatenates the prompts of files, in order.
func loadPromptFiles(files []string) ([]Prompt, error) {
	var all []Prompt
	for _, f := range files {
		ps, err := LoadPrompts(f)
		if err != nil {
			return nil, fmt.Errorf("prompt_files: %w", err)
		}
		all = append(all, ps...)
	}
	return all, nil
}
