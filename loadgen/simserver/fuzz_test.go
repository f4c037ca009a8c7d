package simserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary bodies to the three request decoders: they
// must not panic, and what they accept must be self-consistent.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		inferBody, smallInfer,
		`{"inputs":[{"name":"x","shape":[],"datatype":"BYTES","data":["a"]}]}`,
		`{"model":"m","prompt":"a b c","max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","prompt":[[1,2],[3]],"ignore_eos":true}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_completion_tokens":2}`,
		`{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,"2"]}]}`,
		`[`, `null`, `{"prompt":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if req, batch, err := decodeInfer(body); err == nil {
			if len(req.Inputs) == 0 || batch < 0 {
				t.Fatalf("accepted %q with %d inputs, batch %d", body, len(req.Inputs), batch)
			}
		}
		for _, dec := range []func([]byte) (genRequest, error){decodeCompletion, decodeChat} {
			g, err := dec(body)
			if err != nil {
				continue
			}
			if g.model == "" || g.promptTokens < 0 || g.maxTokens < 0 || (g.includeUsage && !g.stream) {
				t.Fatalf("accepted %q as %+v", body, g)
			}
		}
	})
}

// FuzzHandler sends arbitrary bodies and deadline headers through the
// whole HTTP handler: every answer is a known status with a JSON body.
func FuzzHandler(f *testing.F) {
	srv, err := New(Config{
		DNN: []DNNModel{{Name: "d", Copies: 2, B1: Duration(time.Microsecond)}},
		LLM: []LLMModel{{Name: "l", PrefillPerToken: Duration(time.Microsecond), TPOT: Duration(time.Microsecond), MaxTokens: 2}},
	})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	f.Add("/v2/models/d-1/infer", smallInfer, "")
	f.Add("/v1/completions", `{"model":"l","prompt":"a","max_tokens":1}`, "5")
	f.Add("/v1/chat/completions", `{"model":"d-0","messages":[{"role":"u","content":"x"}]}`, "0.001")
	f.Fuzz(func(t *testing.T, path, body, deadline string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t?#%") || len(body) > 1<<16 || strings.ContainsAny(deadline, "\r\n") {
			return
		}
		if _, err := url.ParseRequestURI(path); err != nil {
			return
		}
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		if deadline != "" {
			req.Header.Set(DeadlineHeader, deadline)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK:
			if ct := w.Header().Get("Content-Type"); ct == "text/event-stream" {
				if !strings.HasSuffix(w.Body.String(), "data: [DONE]\n\n") {
					t.Fatalf("stream without [DONE]: %q", w.Body.String())
				}
				return
			}
		case 400, 404, 405, 413, 503:
		case 301, 307, 308: // ServeMux cleaning a path such as "/./x"
			return
		default:
			t.Fatalf("%s %q: status %d", path, body, w.Code)
		}
		if w.Body.Len() > 0 && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %q: %d with a non-JSON body %q", path, body, w.Code, w.Body.String())
		}
	})
}
