package loadgen

import (
	"reflect"
	"testing"
)

// Chunks as servers send them: sim-server, vLLM (completions and chat, with
// the role chunk, reasoning, the usage chunk), SGLang's nulls, and shapes
// the scanner must leave to parseChunk.
var chunkCases = []struct {
	in      string
	content bool
	usage   *chunkUsage
	scans   bool // the fast path answers (else it declines)
}{
	{`{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" the","logprobs":null,"finish_reason":null}]}`, true, nil, true},
	{`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`, false, nil, true},
	{`{"id":"c","choices":[{"index":0,"delta":{"content":" hi"},"finish_reason":null}]}`, true, nil, true},
	{`{"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}`, true, nil, true},
	{`{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"whole answer"}}],"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}`, true, &chunkUsage{5, 9}, true},
	{`{"id":"c","choices":[],"usage":{"prompt_tokens":128,"completion_tokens":64,"total_tokens":192,"prompt_tokens_details":null}}`, false, &chunkUsage{128, 64}, true},
	{`{"choices":[{"text":"","finish_reason":"length","stop_reason":null}],"usage":null}`, false, nil, true},
	{` { "choices" : [ { "Text" : "x\"y\u00e9" } ] , "extra" : [1, -2.5e3, true, false, null, {"a": {}}, []] } `, true, nil, true},
	{`{"choices":null,"usage":{}}`, false, &chunkUsage{}, true},
	{`{"choices":[null,{"delta":null},{"message":null},{"text":null}]}`, false, nil, true},
	{`{"choices":[{"message":{"reasoning_content":"not a delta field"}}]}`, false, nil, true},
	{`{"error":null,"choices":[{"text":"a"}]}`, true, nil, true},
	{`{}`, false, nil, true},
	// Left to parseChunk.
	{`{"error":{"message":"overloaded"}}`, false, nil, false},
	{`{"choices":[{"text":5}]}`, false, nil, false},
	{`{"usage":{"prompt_tokens":1.5}}`, false, nil, false},
	{`{"usage":{"prompt_tokens":1e2}}`, false, nil, false},
	{`{"choices":[{"text":"a"}],"choices":[]}`, false, nil, false},
	{`{"choices":[{"text":"a","TEXT":""}]}`, false, nil, false},
	{`{"te\u0078t":1}`, false, nil, false},
	{`null`, false, nil, false},
	{`{"choices":[{"text":"a"}]} x`, false, nil, false},
	{`{"choices":[{"text":"a"},]}`, false, nil, false},
	{`{"a":01}`, false, nil, false},
	{`{"a":"\x"}`, false, nil, false},
}

func TestScanChunk(t *testing.T) {
	for _, tt := range chunkCases {
		p, ok := scanChunk([]byte(tt.in))
		if ok != tt.scans {
			t.Errorf("%s: scanned %v, want %v", tt.in, ok, tt.scans)
			continue
		}
		if !ok {
			continue
		}
		if p.content != tt.content || !reflect.DeepEqual(p.usage, tt.usage) {
			t.Errorf("%s: content %v usage %+v, want %v %+v", tt.in, p.content, p.usage, tt.content, tt.usage)
		}
		// The fast path agrees with the reference decoder.
		q, err := parseChunk([]byte(tt.in))
		if err != nil || q.content != p.content || !reflect.DeepEqual(q.usage, p.usage) {
			t.Errorf("%s: parseChunk says %+v, %v", tt.in, q, err)
		}
	}
}

// FuzzScanChunk: whenever the fast path answers, parseChunk (encoding/json)
// accepts the chunk and gives the same answer.
func FuzzScanChunk(f *testing.F) {
	for _, c := range chunkCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := scanChunk(b)
		if !ok {
			return
		}
		q, err := parseChunk(b)
		if err != nil {
			t.Fatalf("%q: scanned as %+v, but parseChunk fails: %v", b, p, err)
		}
		if q.content != p.content || !reflect.DeepEqual(q.usage, p.usage) {
			t.Fatalf("%q: scanned content %v usage %+v; parseChunk %v %+v", b, p.content, p.usage, q.content, q.usage)
		}
	})
}

func BenchmarkParseChunk(b *testing.B) {
	chunk := []byte(`{"id":"cmpl-17","object":"text_completion","created":1764859201,"model":"sim-llm","choices":[{"index":0,"text":" the","logprobs":null,"finish_reason":null}]}`)
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if p, ok := scanChunk(chunk); !ok || !p.content {
				b.Fatal("not scanned")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if p, err := parseChunk(chunk); err != nil || !p.content {
				b.Fatal(err)
			}
		}
	})
}
