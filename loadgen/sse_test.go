package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReadSSE(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"lf", "data: a\n\ndata: b\n\n", []string{"a", "b"}},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []string{"a", "b"}},
		{"no space", "data:a\n\n", []string{"a"}},
		{"multiline", "data: a\ndata: b\n\n", []string{"a\nb"}},
		{"comments and other fields", ": keepalive\nevent: x\nid: 3\ndata: a\n\n", []string{"a"}},
		{"no trailing blank line", "data: a\n\ndata: b", []string{"a", "b"}},
		{"blank lines only", "\n\n\n", nil},
		{"empty data", "data:\n\n", []string{""}},
		{"long line", "data: " + strings.Repeat("x", 10000) + "\n\n", []string{strings.Repeat("x", 10000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := ReadSSE(strings.NewReader(tt.in), func(d []byte) error { got = append(got, string(d)); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	stop := errors.New("stop")
	n := 0
	err := ReadSSE(strings.NewReader("data: a\n\ndata: b\n\n"), func([]byte) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("callback error not propagated: %v after %d events", err, n)
	}
}

func FuzzReadSSE(f *testing.F) {
	for _, s := range []string{"data: a\n\n", "data:{\"choices\":[{\"text\":\"x\"}]}\r\n\r\n", ": c\n", "data: [DONE]\n\n", "data"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var total int
		err := ReadSSE(strings.NewReader(string(b)), func(d []byte) error {
			total += len(d)
			_, _ = parseChunk(d) // must not panic on any input
			return nil
		})
		if err != nil {
			t.Fatalf("ReadSSE on an in-memory stream: %v", err)
		}
		if total > len(b) {
			t.Fatalf("events hold %d bytes of data from a %d-byte stream", total, len(b))
		}
	})
}

func TestParseChunk(t *testing.T) {
	tests := []struct {
		in      string
		content bool
		usage   *chunkUsage
		err     bool
	}{
		{`{"choices":[{"text":"hi"}]}`, true, nil, false},
		{`{"choices":[{"delta":{"content":"hi"}}]}`, true, nil, false},
		{`{"choices":[{"delta":{"role":"assistant"}}]}`, false, nil, false},
		{`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7}}`, false, &chunkUsage{3, 7}, false},
		{`{"error":{"message":"overloaded"}}`, false, nil, true},
		{`not json`, false, nil, true},
	}
	for _, tt := range tests {
		p, err := parseChunk([]byte(tt.in))
		if (err != nil) != tt.err {
			t.Errorf("%s: err %v", tt.in, err)
			continue
		}
		if p.content != tt.content || !reflect.DeepEqual(p.usage, tt.usage) {
			t.Errorf("%s: got %+v", tt.in, p)
		}
	}
}

func TestLLMMetricsFromChunks(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name       string
		chunks     []Chunk
		done       time.Duration
		outTokens  int
		ttft, tpot time.Duration
		itl        []time.Duration
	}{
		{"one token per chunk", []Chunk{{100 * ms, 1}, {120 * ms, 1}, {150 * ms, 1}}, 150 * ms, 3, 100 * ms, 25 * ms, []time.Duration{20 * ms, 30 * ms}},
		// Bundled chunks: 2 gaps but 8 tokens, so ITL (per gap) > TPOT.
		{"bundled", []Chunk{{50 * ms, 1}, {90 * ms, 4}, {120 * ms, 3}}, 120 * ms, 8, 50 * ms, 10 * ms, []time.Duration{40 * ms, 30 * ms}},
		{"single token", []Chunk{{70 * ms, 1}}, 70 * ms, 1, 70 * ms, 0, nil},
	}
	for _, tt := range tests {
		r := &Result{Sent: 0, Done: tt.done, Chunks: tt.chunks, OutputTokens: tt.outTokens, Streamed: true}
		if r.TTFT() != tt.ttft || r.TPOT() != tt.tpot || !reflect.DeepEqual(r.ITLs(nil), tt.itl) || r.E2EL() != tt.done {
			t.Errorf("%s: ttft %v tpot %v itl %v e2el %v", tt.name, r.TTFT(), r.TPOT(), r.ITLs(nil), r.E2EL())
		}
	}
}

// fakeLLM streams n chunks: the first after ttft, then one every gap.
func fakeLLM(ttft, gap time.Duration, n int, usage bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Write([]byte(`{"data":[]}`))
			return
		}
		var req struct {
			Stream   bool            `json:"stream"`
			Messages json.RawMessage `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !req.Stream {
			http.Error(w, "bad request", 400)
			return
		}
		chat := len(req.Messages) > 0
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		time.Sleep(ttft)
		for i := 0; i < n; i++ {
			if i > 0 {
				time.Sleep(gap)
			}
			if chat {
				fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t%d \"}}]}\n\n", i)
			} else {
				fmt.Fprintf(w, "data: {\"choices\":[{\"text\":\"t%d \"}]}\n\n", i)
			}
			fl.Flush()
		}
		if usage {
			fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":%d}}\n\n", n)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
}

func TestRunOpenAIStreaming(t *testing.T) {
	t.Parallel()
	const ttft, gap, n = 40 * time.Millisecond, 10 * time.Millisecond, 6
	for _, proto := range []string{"openai", "openai-chat"} {
		for _, usage := range []bool{true, false} {
			srv := httptest.NewServer(fakeLLM(ttft, gap, n, usage))
			cfg := &Config{Duration: Duration(500 * time.Millisecond),
				Target:   TargetConfig{URL: srv.URL, Protocol: proto, Models: []string{"llm"}, InputTokens: 12},
				Workload: WorkloadConfig{Arrival: "fixed", Rate: 10}}
			var rows, bad int
			var mu sync.Mutex
			sum := mustRun(t, cfg, RunOptions{OnResult: func(r *Result) {
				mu.Lock()
				defer mu.Unlock()
				if len(r.Chunks) != n {
					return
				}
				rows++
				// The raw chunk times are consistent with the derived metrics.
				// (A single gap may be shorter than the server's pacing when
				// the network delivers two chunks together.)
				var sumITL time.Duration
				for _, g := range r.ITLs(nil) {
					sumITL += g
				}
				if r.TTFT() < ttft || r.TTFT()+sumITL != r.Chunks[n-1].At || r.E2EL() < r.Chunks[n-1].At ||
					r.TPOT() != (r.E2EL()-r.TTFT())/time.Duration(r.OutputTokens-1) {
					bad++
				}
			}})
			srv.Close()
			tot := sum.Total
			name := fmt.Sprintf("%s usage=%v", proto, usage)
			if tot.Completed != 5 || rows != 5 || bad != 0 {
				t.Errorf("%s: completed %d, rows with %d chunks %d, inconsistent %d", name, tot.Completed, n, rows, bad)
				continue
			}
			if tot.OutputTokens != 5*n || tot.InputTokens != 5*12 {
				t.Errorf("%s: tokens in %d out %d", name, tot.InputTokens, tot.OutputTokens)
			}
			// Lower bounds are exact (the server paces); upper bounds leave
			// room for a loaded machine.
			slack := time.Second
			if tot.TTFT.Count != 5 || tot.TTFT.P50 < ttft || tot.TTFT.P50 > ttft+slack {
				t.Errorf("%s: TTFT count %d p50 %v, want ≈ %v", name, tot.TTFT.Count, tot.TTFT.P50, ttft)
			}
			if tot.ITL.Count != 5*(n-1) || tot.ITL.P50 < gap/2 || tot.ITL.P50 > gap+slack {
				t.Errorf("%s: ITL count %d p50 %v, want %d samples ≈ %v", name, tot.ITL.Count, tot.ITL.P50, 5*(n-1), gap)
			}
			if tot.TPOT.Count != 5 || tot.TPOT.P50 < gap/2 || tot.E2EL.P50 < ttft+(n-1)*gap {
				t.Errorf("%s: TPOT p50 %v E2EL p50 %v", name, tot.TPOT.P50, tot.E2EL.P50)
			}
		}
	}
}

func TestRunLLMGoodput(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(fakeLLM(30*time.Millisecond, 5*time.Millisecond, 4, true))
	defer srv.Close()
	for _, tc := range []struct {
		ttft time.Duration
		good bool
	}{{time.Second, true}, {5 * time.Millisecond, false}} {
		cfg := &Config{Duration: Duration(300 * time.Millisecond),
			Target:   TargetConfig{URL: srv.URL, Protocol: "openai", Models: []string{"llm"}},
			Workload: WorkloadConfig{Arrival: "fixed", Rate: 10}, SLO: SLOConfig{TTFT: Duration(tc.ttft)}}
		w, _ := BuildWorkload(cfg)
		sum, err := Run(context.Background(), cfg, w, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if met := sum.Total.SLOMet == sum.Total.Completed; met != tc.good || sum.Total.Completed == 0 {
			t.Errorf("TTFT SLO %v: met %d of %d", tc.ttft, sum.Total.SLOMet, sum.Total.Completed)
		}
	}
}
