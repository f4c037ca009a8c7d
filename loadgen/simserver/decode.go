package simserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// CountTokens is the simulator's tokenizer: one token per run of
// non-whitespace characters ("hello world" → 2). It is deterministic, and a
// client that sends N space-separated words gets exactly N prompt tokens.
func CountTokens(s string) int {
	n := 0
	in := false
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		i += size
		if unicode.IsSpace(r) {
			in = false
		} else if !in {
			in = true
			n++
		}
	}
	return n
}

// genRequest is what both OpenAI endpoints reduce to.
type genRequest struct {
	model        string
	promptTokens int
	maxTokens    int // 0: the model's default
	minTokens    int
	ignoreEOS    bool
	stream       bool
	includeUsage bool
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type openAICommon struct {
	Model               string         `json:"model"`
	MaxTokens           *int           `json:"max_tokens"`
	MaxCompletionTokens *int           `json:"max_completion_tokens"`
	MinTokens           int            `json:"min_tokens"`
	IgnoreEOS           bool           `json:"ignore_eos"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
}

func (c *openAICommon) toGen(prompt int) (genRequest, error) {
	g := genRequest{model: c.Model, promptTokens: prompt, minTokens: c.MinTokens, ignoreEOS: c.IgnoreEOS, stream: c.Stream}
	if c.Model == "" {
		return g, errors.New(`"model" is required`)
	}
	for _, p := range []struct {
		name string
		v    *int
	}{{"max_completion_tokens", c.MaxCompletionTokens}, {"max_tokens", c.MaxTokens}} {
		if p.v == nil {
			continue
		}
		if *p.v < 1 || *p.v > 1<<20 {
			return g, fmt.Errorf("%q = %d: must be in [1, 1048576]", p.name, *p.v)
		}
		if g.maxTokens == 0 {
			g.maxTokens = *p.v
		}
	}
	if c.MinTokens < 0 || c.MinTokens > 1<<20 {
		return g, fmt.Errorf(`"min_tokens" = %d: must be in [0, 1048576]`, c.MinTokens)
	}
	if c.StreamOptions != nil {
		if !c.Stream {
			return g, errors.New(`"stream_options" is only allowed when "stream" is true`)
		}
		g.includeUsage = c.StreamOptions.IncludeUsage
	}
	return g, nil
}

func decodeStrict(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, err)
		}
		return fmt.Errorf("invalid request: %v", err)
	}
	return nil
}

// decodeCompletion decodes a POST /v1/completions body. The prompt may be a
// string, a list of strings, a list of token ids or a list of such lists;
// lists are one request whose prompt tokens are summed.
func decodeCompletion(body []byte) (genRequest, error) {
	var req struct {
		openAICommon
		Prompt json.RawMessage `json:"prompt"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return genRequest{}, err
	}
	n, err := promptTokens(req.Prompt)
	if err != nil {
		return genRequest{}, err
	}
	return req.toGen(n)
}

func promptTokens(raw json.RawMessage) (int, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, errors.New(`"prompt" is required`)
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf(`"prompt": %v`, err)
		}
		return CountTokens(s), nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return 0, errors.New(`"prompt" must be a string, a list of strings, a list of token ids or a list of such lists`)
	}
	total := 0
	for _, e := range list {
		e = bytes.TrimSpace(e)
		switch {
		case len(e) > 0 && e[0] == '"':
			if err := json.Unmarshal(e, &s); err != nil {
				return 0, fmt.Errorf(`"prompt": %v`, err)
			}
			total += CountTokens(s)
		case len(e) > 0 && e[0] == '[':
			var ids []int64
			if err := json.Unmarshal(e, &ids); err != nil {
				return 0, errors.New(`"prompt": a nested list must hold token ids (integers)`)
			}
			total += len(ids)
		default:
			var id int64
			if err := json.Unmarshal(e, &id); err != nil {
				return 0, errors.New(`"prompt" must be a string, a list of strings, a list of token ids or a list of such lists`)
			}
			total++
		}
	}
	return total, nil
}

// decodeChat decodes a POST /v1/chat/completions body; prompt tokens are
// the tokens of every message's text content.
func decodeChat(body []byte) (genRequest, error) {
	var req struct {
		openAICommon
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return genRequest{}, err
	}
	if len(req.Messages) == 0 {
		return genRequest{}, errors.New(`"messages" must be a non-empty list`)
	}
	total := 0
	for i, m := range req.Messages {
		if m.Role == "" {
			return genRequest{}, fmt.Errorf(`"messages"[%d]: "role" is required`, i)
		}
		c := bytes.TrimSpace(m.Content)
		switch {
		case len(c) == 0 || string(c) == "null":
		case c[0] == '"':
			var s string
			if err := json.Unmarshal(c, &s); err != nil {
				return genRequest{}, fmt.Errorf(`"messages"[%d].content: %v`, i, err)
			}
			total += CountTokens(s)
		case c[0] == '[':
			var parts []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			}
			if err := json.Unmarshal(c, &parts); err != nil {
				return genRequest{}, fmt.Errorf(`"messages"[%d].content: want a string or a list of {"type","text"} parts`, i)
			}
			for _, p := range parts {
				total += CountTokens(p.Text)
			}
		default:
			return genRequest{}, fmt.Errorf(`"messages"[%d].content: want a string or a list of parts`, i)
		}
	}
	return req.toGen(total)
}

// inferRequest is a KServe v2 inference request.
type inferRequest struct {
	ID     string `json:"id"`
	Inputs []struct {
		Name     string          `json:"name"`
		Shape    []int64         `json:"shape"`
		Datatype string          `json:"datatype"`
		Data     json.RawMessage `json:"data"`
	} `json:"inputs"`
	Outputs []struct {
		Name string `json:"name"`
	} `json:"outputs"`
}

var v2Datatypes = map[string]bool{
	"BOOL": true, "UINT8": true, "UINT16": true, "UINT32": true, "UINT64": true,
	"INT8": true, "INT16": true, "INT32": true, "INT64": true,
	"FP16": true, "FP32": true, "FP64": true, "BF16": true, "BYTES": true,
}

// decodeInfer decodes and checks a KServe v2 infer body and returns the
// batch dimension (the first dimension of the first input, 1 for scalars).
func decodeInfer(body []byte) (inferRequest, int64, error) {
	var req inferRequest
	if err := decodeStrict(body, &req); err != nil {
		return req, 0, err
	}
	if len(req.Inputs) == 0 {
		return req, 0, errors.New(`"inputs" must be a non-empty list`)
	}
	for i, in := range req.Inputs {
		if in.Name == "" {
			return req, 0, fmt.Errorf(`"inputs"[%d]: "name" is required`, i)
		}
		if !v2Datatypes[in.Datatype] {
			return req, 0, fmt.Errorf(`"inputs"[%d] (%s): "datatype" %q is not a v2 datatype (BOOL, UINT8…UINT64, INT8…INT64, FP16, FP32, FP64, BF16, BYTES)`, i, in.Name, in.Datatype)
		}
		if in.Shape == nil {
			return req, 0, fmt.Errorf(`"inputs"[%d] (%s): "shape" is required`, i, in.Name)
		}
		want := int64(1)
		for _, d := range in.Shape {
			if d < 0 || d > 1<<40 {
				return req, 0, fmt.Errorf(`"inputs"[%d] (%s): shape %v: dimensions must be ≥ 0`, i, in.Name, in.Shape)
			}
			want *= d
			if want > 1<<40 {
				return req, 0, fmt.Errorf(`"inputs"[%d] (%s): shape %v is too large`, i, in.Name, in.Shape)
			}
		}
		data := bytes.TrimSpace(in.Data)
		if len(data) == 0 || string(data) == "null" {
			continue // no payload (Clockwork's CLOCKWORK_DISABLE_INPUTS)
		}
		got, err := countElements(data)
		if err != nil {
			return req, 0, fmt.Errorf(`"inputs"[%d] (%s): "data": %v`, i, in.Name, err)
		}
		if got != 0 && got != want {
			return req, 0, fmt.Errorf(`"inputs"[%d] (%s): "data" has %d elements but shape %v needs %d`, i, in.Name, got, in.Shape, want)
		}
	}
	for i, o := range req.Outputs {
		if o.Name == "" {
			return req, 0, fmt.Errorf(`"outputs"[%d]: "name" is required`, i)
		}
	}
	batch := int64(1)
	if s := req.Inputs[0].Shape; len(s) > 0 {
		batch = s[0]
	}
	return req, batch, nil
}

// countElements counts the scalars of a (nested) JSON array, which
// json.Unmarshal has already checked to be valid JSON.
func countElements(raw []byte) (int64, error) {
	if raw[0] != '[' {
		return 0, errors.New("must be a (nested) list")
	}
	var n int64
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '[', ']', ',', ' ', '\t', '\n', '\r':
		case '{':
			return 0, errors.New("objects are not tensor elements")
		case '"':
			n++
			for i++; i < len(raw) && raw[i] != '"'; i++ {
				if raw[i] == '\\' {
					i++
				}
			}
		default:
			n++
			for i+1 < len(raw) && !bytes.ContainsRune([]byte("[],: \t\n\r"), rune(raw[i+1])) {
				i++
			}
		}
	}
	return n, nil
}
