package loadgen

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// promptServer streams max_tokens content chunks (no usage, so the client
// counts) and records each request's prompt and max_tokens.
type promptServer struct {
	mu   sync.Mutex
	got  []sentPrompt
	chat bool
}

type sentPrompt struct {
	text string
	max  int
}

func (s *promptServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/models" {
		fmt.Fprint(w, `{"data":[]}`)
		return
	}
	var req struct {
		Prompt   string `json:"prompt"`
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
		MaxTokens int `json:"max_tokens"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	text := req.Prompt
	if len(req.Messages) > 0 {
		text = req.Messages[0].Content
	}
	s.mu.Lock()
	s.got = append(s.got, sentPrompt{text, req.MaxTokens})
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	for range req.MaxTokens {
		fmt.Fprint(w, "data: {\"choices\":[{\"text\":\"w \",\"delta\":{\"content\":\"w \"}}]}\n\n")
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func TestRunDatasetPrompts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	jsonl := filepath.Join(dir, "a.jsonl")
	sharegpt := filepath.Join(dir, "b.json")
	os.WriteFile(jsonl, []byte(`{"prompt": "one two three", "output": "a b c d e"}
{"prompt": "no answer"}
{"prompt": "four", "output_tokens": 40}
`), 0o644)
	os.WriteFile(sharegpt, []byte(`[{"conversations": [{"from": "system", "value": "be brief"},
 {"from": "human", "value": "five six seven eight nine"}, {"from": "gpt", "value": "x y"}]}]`), 0o644)
	// Reference answers of 5, 40 (capped at 8) and 2 tokens.
	want := []sentPrompt{{"one two three", 5}, {"four", 8}, {"five six seven eight nine", 2}}
	wantIn := []int{3, 1, 5}
	for _, proto := range []string{"openai", "openai-chat"} {
		srv := &promptServer{}
		hs := httptest.NewServer(srv)
		const n = 7
		cfg := &Config{Duration: Duration(10 * time.Second),
			Target: TargetConfig{URL: hs.URL, Protocol: proto, Models: []string{"llm"},
				PromptFiles: []string{jsonl, sharegpt}, OutputTokens: 8, InputTokens: 99},
			Workload: WorkloadConfig{Arrival: "closed", Concurrency: 1, MaxRequests: n}}
		var mu sync.Mutex
		var bad []string
		sum := mustRun(t, cfg, RunOptions{OnResult: func(r *Result) {
			i := r.Arrival.Seq % 3
			if r.InputTokens != wantIn[i] || r.OutputTokens != want[i].max {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("seq %d: in %d out %d", r.Arrival.Seq, r.InputTokens, r.OutputTokens))
				mu.Unlock()
			}
		}})
		hs.Close()
		if sum.Total.Completed != n || len(bad) > 0 {
			t.Errorf("%s: completed %d of %d; wrong token counts: %v", proto, sum.Total.Completed, n, bad)
		}
		// One at a time, so the server saw the dataset in order, round-robin.
		if len(srv.got) != n {
			t.Fatalf("%s: server saw %d requests, want %d", proto, len(srv.got), n)
		}
		for i, g := range srv.got {
			if g != want[i%3] {
				t.Errorf("%s: request %d sent %+v, want %+v", proto, i, g, want[i%3])
			}
		}
	}
}

func TestNewTargetBadPromptFile(t *testing.T) {
	t.Parallel()
	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	os.WriteFile(empty, []byte("{\"prompt\": \"no answer\"}\n"), 0o644)
	for _, f := range []string{empty, filepath.Join(t.TempDir(), "missing.json")} {
		if _, err := NewTarget(TargetConfig{URL: "http://127.0.0.1:1", Protocol: "openai", PromptFiles: []string{f}}); err == nil {
			t.Errorf("%s: no error", f)
		}
	}
}

func FuzzLoadPrompts(f *testing.F) {
	f.Add([]byte(`[{"conversations":[{"from":"human","value":"a b"},{"from":"gpt","value":"c"}]}]`))
	f.Add([]byte("{\"prompt\":\"a\",\"output_tokens\":3}\n{}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Skip()
		}
		ps, err := LoadPrompts(p)
		for _, x := range ps {
			if err != nil || x.InputTokens < 1 || x.OutputTokens < 1 {
				t.Fatalf("prompt %+v with err %v", x, err)
			}
		}
	})
}
