package simserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// start serves cfg on a real loopback listener and returns its base URL.
func start(t *testing.T, cfg Config) (string, *Server) {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), srv
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// do sends a request (hdr: name, value, ...) and returns the response and
// its body. It calls t.Fatal, so only the test's goroutine may call it;
// other goroutines call doErr.
func do(t *testing.T, method, url, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := doErr(method, url, body, hdr...)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func doErr(method, url, body string, hdr ...string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	return resp, b, nil
}

func f64(v float64) *float64 { return &v }

const inferBody = `{"id":"r1","inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6]]}]}`

func TestKServeShapes(t *testing.T) {
	url, _ := start(t, Config{
		DNN: []DNNModel{{Name: "resnet50_v2", Copies: 3, B1: Duration(time.Millisecond), OutputShape: []int{4}}},
		LLM: []LLMModel{{Name: "llm"}},
	})
	tests := []struct {
		name, method, path, body string
		code                     int
		want                     []string // substrings of the body
	}{
		{"live", "GET", "/v2/health/live", "", 200, []string{`"live":true`}},
		{"ready", "GET", "/v2/health/ready", "", 200, []string{`"ready":true`}},
		{"metadata", "GET", "/v2/models/resnet50_v2-2", "", 200, []string{`"name":"resnet50_v2-2"`, `"shape":[-1,4]`}},
		{"model ready", "GET", "/v2/models/resnet50_v2-0/ready", "", 200, []string{`"ready":true`}},
		{"alias ready", "GET", "/v2/models/resnet50_v2/ready", "", 200, nil},
		{"infer", "POST", "/v2/models/resnet50_v2-1/infer", inferBody, 200,
			[]string{`"model_name":"resnet50_v2-1"`, `"id":"r1"`, `"shape":[2,4]`, `"data":[0,0,0,0,0,0,0,0]`}},
		{"infer versioned", "POST", "/v2/models/resnet50_v2-1/versions/1/infer", inferBody, 200, []string{`"outputs"`}},
		{"requested outputs", "POST", "/v2/models/resnet50_v2-0/infer",
			`{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[7]}],"outputs":[{"name":"probs"}]}`, 200, []string{`"name":"probs"`, `"shape":[1,4]`}},
		{"no data", "POST", "/v2/models/resnet50_v2-0/infer", `{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32"}]}`, 200, []string{`"shape":[1,4]`}},
		{"copy out of range", "POST", "/v2/models/resnet50_v2-3/infer", inferBody, 404, []string{`resnet50_v2-3`}},
		{"leading zero copy", "GET", "/v2/models/resnet50_v2-01", "", 404, nil},
		{"unknown", "GET", "/v2/models/nope/ready", "", 404, []string{`nope`}},
		{"bad json", "POST", "/v2/models/resnet50_v2-0/infer", `{"inputs":[`, 400, []string{`invalid JSON`}},
		{"no inputs", "POST", "/v2/models/resnet50_v2-0/infer", `{"inputs":[]}`, 400, []string{`inputs`}},
		{"bad datatype", "POST", "/v2/models/resnet50_v2-0/infer", `{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}`, 400, []string{`FLOAT`}},
		{"count mismatch", "POST", "/v2/models/resnet50_v2-0/infer", `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}`, 400, []string{`3 elements`}},
		{"llm over v2", "POST", "/v2/models/llm/infer", inferBody, 400, []string{`LLM`}},
		{"infer with GET", "GET", "/v2/models/resnet50_v2-0/infer", "", 405, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.method, url+tc.path, tc.body)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.code, body)
			}
			if !json.Valid(body) {
				t.Fatalf("body is not JSON: %s", body)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("body %s lacks %s", body, w)
				}
			}
		})
	}
}

func TestOpenAINonStreaming(t *testing.T) {
	url, srv := start(t, Config{LLM: []LLMModel{{Name: "m", PrefillPerToken: Duration(time.Microsecond), TPOT: Duration(time.Microsecond), MaxTokens: 5, EOSAfter: 3}}})
	tests := []struct {
		name, path, body string
		code             int
		tokens           int
		finish           string
	}{
		{"completion default", "/v1/completions", `{"model":"m","prompt":"one two three four"}`, 200, 3, "stop"},
		{"completion ignore_eos", "/v1/completions", `{"model":"m","prompt":"one two three four","ignore_eos":true}`, 200, 5, "length"},
		{"completion max_tokens", "/v1/completions", `{"model":"m","prompt":"a b","max_tokens":2}`, 200, 2, "length"},
		{"completion token ids", "/v1/completions", `{"model":"m","prompt":[1,2,3,4],"max_tokens":7,"ignore_eos":true}`, 200, 7, "length"},
		{"chat", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"one two three four"}],"max_completion_tokens":9,"ignore_eos":true}`, 200, 9, "length"},
		{"chat min_tokens", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"one two"},{"type":"text","text":"three four"}]}],"min_tokens":4}`, 200, 4, "stop"},
		{"unknown model", "/v1/completions", `{"model":"zz","prompt":"x"}`, 404, 0, ""},
		{"bad json", "/v1/chat/completions", `{"model":`, 400, 0, ""},
		{"no model", "/v1/completions", `{"prompt":"x"}`, 400, 0, ""},
		{"bad max_tokens", "/v1/completions", `{"model":"m","prompt":"x","max_tokens":0}`, 400, 0, ""},
		{"no messages", "/v1/chat/completions", `{"model":"m","messages":[]}`, 400, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, "POST", url+tc.path, tc.body)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			var r struct {
				Object  string
				Choices []struct {
					Text         string
					Message      struct{ Role, Content string }
					FinishReason string `json:"finish_reason"`
				}
				Usage struct {
					PromptTokens     int `json:"prompt_tokens"`
					CompletionTokens int `json:"completion_tokens"`
					TotalTokens      int `json:"total_tokens"`
				}
				Error *struct{ Message string }
			}
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if tc.code != 200 {
				if r.Error == nil || r.Error.Message == "" {
					t.Fatalf("no error message: %s", body)
				}
				if tc.code == 404 && !strings.Contains(r.Error.Message, `"zz"`) {
					t.Errorf("404 does not name the model: %s", body)
				}
				return
			}
			if len(r.Choices) != 1 {
				t.Fatalf("choices: %s", body)
			}
			text := r.Choices[0].Text
			wantObj := "text_completion"
			if strings.Contains(tc.path, "chat") {
				text, wantObj = r.Choices[0].Message.Content, "chat.completion"
				if r.Choices[0].Message.Role != "assistant" {
					t.Errorf("role %q", r.Choices[0].Message.Role)
				}
			}
			if r.Object != wantObj {
				t.Errorf("object %q, want %q", r.Object, wantObj)
			}
			if got := CountTokens(text); got != tc.tokens || r.Usage.CompletionTokens != tc.tokens {
				t.Errorf("text has %d tokens, usage %d; want %d", got, r.Usage.CompletionTokens, tc.tokens)
			}
			if r.Usage.PromptTokens != 4 && tc.tokens != 2 {
				t.Errorf("prompt_tokens %d, want 4", r.Usage.PromptTokens)
			}
			if r.Usage.TotalTokens != r.Usage.PromptTokens+r.Usage.CompletionTokens {
				t.Errorf("total_tokens %d", r.Usage.TotalTokens)
			}
			if r.Choices[0].FinishReason != tc.finish {
				t.Errorf("finish_reason %q, want %q", r.Choices[0].FinishReason, tc.finish)
			}
		})
	}
	resp, body := do(t, "GET", url+"/v1/models", "")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"id":"m"`) || !json.Valid(body) {
		t.Errorf("/v1/models: %d %s", resp.StatusCode, body)
	}
	st := srv.Stats(false)
	if st.UnknownModel != 1 || st.BadRequests != 4 || st.Total.Completed != 6 {
		t.Errorf("stats: unknown %d, bad %d, completed %d; want 1, 4, 6", st.UnknownModel, st.BadRequests, st.Total.Completed)
	}
}

// sseEvent is one parsed streaming chunk with its arrival time.
type sseEvent struct {
	at   time.Time
	data string
}

// stream posts a streaming request and returns when it was sent and the
// events received. It calls t.Fatal, so only the test's goroutine may call
// it; other goroutines call streamAsync.
func stream(t *testing.T, url, body string) (sent time.Time, events []sseEvent, resp *http.Response) {
	t.Helper()
	sent, events, resp, err := streamErr(url, body)
	if err != nil {
		t.Fatal(err)
	}
	return sent, events, resp
}

// streamAsync is stream for a goroutine the test started: a failure is
// reported with t.Error, and the events are then nil.
func streamAsync(t *testing.T, url, body string) (sent time.Time, events []sseEvent) {
	sent, events, _, err := streamErr(url, body)
	if err != nil {
		t.Error(err)
		return sent, nil
	}
	return sent, events
}

func streamErr(url, body string) (sent time.Time, events []sseEvent, resp *http.Response, err error) {
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	sent = time.Now()
	resp, err = client.Do(req)
	if err != nil {
		return sent, nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return sent, nil, resp, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			return sent, events, resp, fmt.Errorf("not an SSE data line: %q", line)
		}
		events = append(events, sseEvent{time.Now(), data})
	}
	return sent, events, resp, sc.Err()
}

func TestOpenAIStreamingShapes(t *testing.T) {
	url, _ := start(t, Config{LLM: []LLMModel{{Name: "m", PrefillPerToken: Duration(time.Microsecond), TPOT: Duration(100 * time.Microsecond)}}})
	for _, chat := range []bool{false, true} {
		for _, usage := range []bool{false, true} {
			t.Run(fmt.Sprintf("chat=%v,usage=%v", chat, usage), func(t *testing.T) {
				path, body := "/v1/completions", `{"model":"m","prompt":"a b c","max_tokens":4,"stream":true`
				if chat {
					path, body = "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"a b c"}],"max_tokens":4,"stream":true`
				}
				if usage {
					body += `,"stream_options":{"include_usage":true}`
				}
				_, ev, resp := stream(t, url+path, body+"}")
				if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
					t.Errorf("Content-Type %q", ct)
				}
				want := 4 + 1
				if usage {
					want++
				}
				if len(ev) != want || ev[len(ev)-1].data != "[DONE]" {
					t.Fatalf("got %d events, last %q; want %d ending in [DONE]", len(ev), ev[len(ev)-1].data, want)
				}
				text := ""
				for i, e := range ev[:4] {
					var c struct {
						Object  string
						Choices []struct {
							Text         string
							Delta        struct{ Role, Content string }
							FinishReason *string `json:"finish_reason"`
						}
						Usage *struct{}
					}
					if err := json.Unmarshal([]byte(e.data), &c); err != nil {
						t.Fatalf("chunk %d: %v: %s", i, err, e.data)
					}
					if len(c.Choices) != 1 || c.Usage != nil {
						t.Fatalf("chunk %d: %s", i, e.data)
					}
					ch := c.Choices[0]
					text += ch.Text + ch.Delta.Content
					if chat && (c.Object != "chat.completion.chunk" || (i == 0) != (ch.Delta.Role == "assistant")) {
						t.Errorf("chunk %d: %s", i, e.data)
					}
					if (i == 3) != (ch.FinishReason != nil) {
						t.Errorf("chunk %d finish_reason: %s", i, e.data)
					}
				}
				if CountTokens(text) != 4 {
					t.Errorf("streamed text %q is not 4 tokens", text)
				}
				if usage {
					var u struct {
						Choices []any
						Usage   struct {
							PromptTokens     int `json:"prompt_tokens"`
							CompletionTokens int `json:"completion_tokens"`
						}
					}
					if err := json.Unmarshal([]byte(ev[4].data), &u); err != nil || len(u.Choices) != 0 || u.Usage.PromptTokens != 3 || u.Usage.CompletionTokens != 4 {
						t.Errorf("usage chunk %s (%v)", ev[4].data, err)
					}
				}
			})
		}
	}
}

// TestLLMTiming checks the configured speeds from a client's view: TTFT
// (send → first chunk) ≈ prefill × prompt tokens and TPOT ((E2EL − TTFT) /
// (tokens − 1)) ≈ the decode time, on averages over concurrent requests.
func TestLLMTiming(t *testing.T) {
	const (
		prompt  = 100
		prefill = time.Millisecond
		tpot    = 10 * time.Millisecond
		out     = 50 // long enough that one late last chunk moves TPOT little
		n       = 8
	)
	url, _ := start(t, Config{LLM: []LLMModel{{Name: "m", PrefillPerToken: Duration(prefill), TPOT: Duration(tpot), Concurrency: n}}})
	body := fmt.Sprintf(`{"model":"m","prompt":%q,"max_tokens":%d,"stream":true}`, strings.Repeat("w ", prompt), out)
	var mu sync.Mutex
	var ttfts, tpots []time.Duration
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent, ev := streamAsync(t, url+"/v1/completions", body)
			if len(ev) != out+1 {
				t.Errorf("%d events, want %d", len(ev), out+1)
				return
			}
			ttft := ev[0].at.Sub(sent)
			e2el := ev[out-1].at.Sub(sent)
			mu.Lock()
			ttfts = append(ttfts, ttft)
			tpots = append(tpots, (e2el-ttft)/(out-1))
			mu.Unlock()
		}()
	}
	wg.Wait()
	within(t, "TTFT", mean(ttfts), prompt*prefill, 0.15)
	within(t, "TPOT", mean(tpots), tpot, 0.10)
}

// TestLLMConcurrencyLimit: with one slot, a second request waits for the
// first: its first token comes after the first request's last one.
func TestLLMConcurrencyLimit(t *testing.T) {
	url, srv := start(t, Config{LLM: []LLMModel{{Name: "m", PrefillPerToken: Duration(time.Millisecond), TPOT: Duration(10 * time.Millisecond), Concurrency: 1}}})
	body := `{"model":"m","prompt":"a b c d e f g h i j","max_tokens":10,"stream":true}`
	var wg sync.WaitGroup
	events := make([][]sseEvent, 2)
	for i := range events {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, events[i] = streamAsync(t, url+"/v1/completions", body)
		}()
		if i == 0 { // let the first take the slot
			for deadline := time.Now().Add(2 * time.Second); srv.Stats(false).Total.Active != 1; {
				if time.Now().After(deadline) {
					t.Fatal("the first request never became active")
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	wg.Wait()
	first, second := events[0], events[1]
	if len(first) != 11 || len(second) != 11 {
		t.Fatalf("events: %d and %d, want 11", len(first), len(second))
	}
	if gap := second[0].at.Sub(first[9].at); gap < 5*time.Millisecond {
		t.Errorf("second request's first token came %v after the first's last: it did not wait for the slot (want ≥ its 10ms prefill)", gap)
	}
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s / time.Duration(len(ds))
}

func within(t *testing.T, what string, got, want time.Duration, tol float64) {
	t.Helper()
	if d := float64(got-want) / float64(want); d > tol || d < -tol {
		t.Errorf("%s = %v, want %v ±%.0f%%", what, got, want, tol*100)
	} else {
		t.Logf("%s = %v (configured %v)", what, got, want)
	}
}

// TestLLMBatchSlowdown: with three requests generating together, every
// decode step takes tpot × (1 + batch_slowdown × 2).
func TestLLMBatchSlowdown(t *testing.T) {
	const tpot = 10 * time.Millisecond
	url, _ := start(t, Config{LLM: []LLMModel{{Name: "m", PrefillPerToken: Duration(time.Microsecond), TPOT: Duration(tpot), BatchSlowdown: 0.5}}})
	body := `{"model":"m","prompt":"a","max_tokens":60,"stream":true}`
	var wg sync.WaitGroup
	tpots := make([]time.Duration, 3)
	for i := range tpots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ev := streamAsync(t, url+"/v1/completions", body)
			if len(ev) < 56 {
				t.Errorf("%d events, want 61", len(ev))
				return
			}
			// Steps 5..55: all three are surely running then; a long span
			// keeps one late chunk at either end from moving the mean much.
			tpots[i] = ev[55].at.Sub(ev[5].at) / 50
		}()
	}
	wg.Wait()
	within(t, "decode step with 3 running", mean(tpots), 2*tpot, 0.15)
}

// Idle models cost no goroutine, and neither do used ones once idle.
func TestNoGoroutinePerModel(t *testing.T) {
	srv, err := New(Config{DNN: []DNNModel{{Name: "r", Copies: 4000, B1: Duration(time.Microsecond)}}, LLM: []LLMModel{{Name: "l", Copies: 100, TPOT: Duration(time.Microsecond)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	before := runtime.NumGoroutine()
	h := srv.Handler()
	for i := 0; i < 4000; i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", fmt.Sprintf("/v2/models/r-%d/infer", i), strings.NewReader(smallInfer)))
		if w.Code != 200 {
			t.Fatalf("r-%d: %d %s", i, w.Code, w.Body)
		}
	}
	for i := 0; i < 100; i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/completions", strings.NewReader(fmt.Sprintf(`{"model":"l-%d","prompt":"x","max_tokens":2,"stream":true}`, i))))
		if w.Code != 200 {
			t.Fatalf("l-%d: %d %s", i, w.Code, w.Body)
		}
	}
	time.Sleep(10 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+10 {
		t.Errorf("goroutines %d → %d after using 4,100 models", before, after)
	}
	if st := srv.Stats(false); st.ModelsActive != 4100 || st.Total.Completed != 4100 {
		t.Errorf("active %d, completed %d", st.ModelsActive, st.Total.Completed)
	}
}

// Close ends requests that are streaming or queued, so shutdown is prompt.
func TestCloseEndsStreams(t *testing.T) {
	url, srv := start(t, Config{LLM: []LLMModel{{Name: "m", TPOT: Duration(time.Second), Concurrency: 1}}})
	results := make(chan error, 2)
	for i := 0; i < 2; i++ { // one streaming, one queued behind it
		go func() {
			resp, err := client.Post(url+"/v1/completions", "application/json", strings.NewReader(`{"model":"m","prompt":"a","max_tokens":100,"stream":true}`))
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			results <- err
		}()
	}
	waitFor(t, srv, func(st Stats) bool { return st.Total.Active == 1 && st.Total.Queued == 1 })
	t0 := time.Now()
	srv.Close()
	for i := 0; i < 2; i++ {
		select {
		case <-results:
		case <-time.After(5 * time.Second):
			t.Fatal("a request was still open 5s after Close")
		}
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("requests ended %v after Close", d)
	}
	if st := srv.Stats(false); st.Total.Cancelled != 2 || st.Total.Active != 0 || st.Total.Queued != 0 {
		t.Errorf("after Close: %+v", st.Total)
	}
}

// Hugging Face style names ("org/model") work on both APIs.
func TestSlashNames(t *testing.T) {
	url, _ := start(t, Config{
		LLM: []LLMModel{{Name: "meta-llama/Llama-3.1-8B", TPOT: Duration(time.Microsecond)}},
		DNN: []DNNModel{{Name: "org/resnet", Copies: 2, B1: Duration(time.Microsecond)}},
	})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/completions", `{"model":"meta-llama/Llama-3.1-8B","prompt":"x","max_tokens":1}`},
		{"GET", "/v1/models/meta-llama/Llama-3.1-8B", ""},
		{"GET", "/v2/models/org/resnet-1/ready", ""},
		{"POST", "/v2/models/org/resnet-1/infer", smallInfer},
	} {
		if resp, body := do(t, c.method, url+c.path, c.body); resp.StatusCode != 200 {
			t.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, body)
		}
	}
}
