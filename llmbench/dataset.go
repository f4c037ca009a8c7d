package llmbench

import (
	"path/filepath"

	"github.com/gpuorch/gpuorch/loadgen"
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
func CountTokens(s string) int { return loadgen.CountTokens(s) }

// LoadDataset reads a dataset file's prompt lengths; the format is
// loadgen.LoadPrompts' (ShareGPT JSON array or JSONL), which the load
// generator also reads to send the prompts themselves.
func LoadDataset(path string) ([]DatasetPrompt, error) {
	ps, err := loadgen.LoadPrompts(path)
	if err != nil {
		return nil, err
	}
	out := make([]DatasetPrompt, len(ps))
	for i, p := range ps {
		out[i] = DatasetPrompt{p.InputTokens, p.OutputTokens}
	}
	return out, nil
}

// promptFiles are the dataset files as absolute paths, for the manifests:
// the load generator reads them when it builds its target, so each request
// sends one of the dataset's prompts (nil when eval_with is not dataset).
func (r *Resolved) promptFiles() []string {
	s := r.Spec
	if r.Dataset == nil || s.Dataset == nil {
		return nil
	}
	var out []string
	for _, f := range s.Dataset.Files {
		p := s.relPath(f)
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		out = append(out, p)
	}
	return out
}

// datasetOutputCap is [configuration] max_output_tokens in dataset mode:
// a cap on each prompt's output length (0 = the reference answer's length).
func (r *Resolved) datasetOutputCap() int {
	if c := r.Spec.Configuration; c != nil && c.MaxOutputTokens > 0 {
		return c.MaxOutputTokens
	}
	return 0
}
