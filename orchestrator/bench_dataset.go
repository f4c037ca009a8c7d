package orchestrator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// DatasetPrompt is one prompt of a dataset and the length of its reference
// answer, in tokens.
type DatasetPrompt struct {
	InputTokens  int
	OutputTokens int
}

// DatasetStats summarises a dataset's prompts.
type DatasetStats struct {
	Prompts    int `json:"prompts"`
	MeanInput  int `json:"mean_input_tokens"`
	MeanOutput int `json:"mean_output_tokens"`
	MaxInput   int `json:"max_input_tokens"`
	MaxOutput  int `json:"max_output_tokens"`
}

// Stats summarises prompts (means rounded to the nearest token, at least 1).
func Stats(ps []DatasetPrompt) DatasetStats {
	st := DatasetStats{Prompts: len(ps)}
	var in, out int
	for _, p := range ps {
		in += p.InputTokens
		out += p.OutputTokens
		st.MaxInput = max(st.MaxInput, p.InputTokens)
		st.MaxOutput = max(st.MaxOutput, p.OutputTokens)
	}
	if len(ps) > 0 {
		st.MeanInput = max(1, (in+len(ps)/2)/len(ps))
		st.MeanOutput = max(1, (out+len(ps)/2)/len(ps))
	}
	return st
}

// CountTokens estimates tokens as whitespace-separated words — what
// gpuorch sim-server counts; real tokenizers give about 1.3× more.
func CountTokens(s string) int { return len(strings.Fields(s)) }

// datasetRecord is one ShareGPT conversation, or a flat prompt record.
type datasetRecord struct {
	ID            string `json:"id"`
	Conversations []struct {
		From  string `json:"from"`
		Value string `json:"value"`
	} `json:"conversations"`
	Prompt       string `json:"prompt"`
	Output       string `json:"output"`
	Completion   string `json:"completion"`
	OutputTokens int    `json:"output_tokens"`
}

func (r *datasetRecord) prompt() (DatasetPrompt, bool) {
	if len(r.Conversations) > 0 {
		// ShareGPT: the first human turn and the answer after it (vLLM's
		// benchmark_serving does the same).
		for i := 0; i+1 < len(r.Conversations); i++ {
			c := r.Conversations[i]
			if c.From == "human" || c.From == "user" {
				return DatasetPrompt{CountTokens(c.Value), CountTokens(r.Conversations[i+1].Value)}, CountTokens(c.Value) > 0
			}
		}
		return DatasetPrompt{}, false
	}
	out := r.OutputTokens
	if out == 0 {
		out = CountTokens(r.Output + " " + r.Completion)
	}
	return DatasetPrompt{CountTokens(r.Prompt), out}, CountTokens(r.Prompt) > 0 && out > 0
}

// LoadDataset reads a ShareGPT-style JSON array ([{"conversations": [{"from":
// "human", "value": …}, {"from": "gpt", "value": …}]}, …]) or JSONL (one
// such object, or {"prompt": …, "output": …|"output_tokens": N}, per line).
// Conversations without a prompt and an answer are skipped; a file with
// none is an error.
func LoadDataset(path string) ([]DatasetPrompt, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var recs []datasetRecord
	trim := bytes.TrimSpace(b)
	if bytes.HasPrefix(trim, []byte("[")) {
		if err := json.Unmarshal(trim, &recs); err != nil {
			return nil, fmt.Errorf("%s: not a ShareGPT JSON array: %w", path, err)
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		line := 0
		for sc.Scan() {
			line++
			l := bytes.TrimSpace(sc.Bytes())
			if len(l) == 0 {
				continue
			}
			var r datasetRecord
			if err := json.Unmarshal(l, &r); err != nil {
				return nil, fmt.Errorf("%s:%d: not a JSON object: %w", path, line, err)
			}
			recs = append(recs, r)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	var out []DatasetPrompt
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
