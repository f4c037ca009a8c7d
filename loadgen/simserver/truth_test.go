package simserver

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestTruthRecordsStreams(t *testing.T) {
	const (
		prompt = 20
		out    = 12
		tpot   = 10 * time.Millisecond
	)
	url, srv := start(t, Config{Server: ServerConfig{TruthRecords: 10},
		LLM: []LLMModel{{Name: "m", PrefillPerToken: Duration(time.Millisecond), TPOT: Duration(tpot)}}})
	body := fmt.Sprintf(`{"model":"m","prompt":%q,"max_tokens":%d,"stream":true,"stream_options":{"include_usage":true}}`, strings.Repeat("w ", prompt), out)
	req, _ := http.NewRequest("POST", url+"/v1/completions", strings.NewReader(body))
	req.Header.Set("X-Request-Id", "client-7")
	sent := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got []time.Time // when each token chunk arrived here
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `data: {"id"`) && strings.Contains(sc.Text(), `"text"`) {
			got = append(got, time.Now())
		}
	}
	resp.Body.Close()
	done := time.Now()
	// A non-streamed request leaves no record.
	do(t, "POST", url+"/v1/completions", `{"model":"m","prompt":"a","max_tokens":2}`)

	recs, dropped := srv.Truth(false)
	if len(recs) != 1 || dropped != 0 {
		t.Fatalf("%d records, %d dropped; want 1, 0", len(recs), dropped)
	}
	r := recs[0]
	if r.RequestID != "client-7" || r.Model != "m" || !strings.HasPrefix(r.ID, "cmpl-") || !r.Completed ||
		r.PromptTokens != prompt || r.CompletionTokens != out {
		t.Errorf("record %+v", r)
	}
	if len(r.ChunksUS) != out || len(got) != out {
		t.Fatalf("%d chunk times recorded, %d chunks received; want %d", len(r.ChunksUS), len(got), out)
	}
	// Received is the kernel's arrival time of the request (Serve reads
	// with receive timestamps): after this client sent it, before the
	// handler began.
	recv := time.Unix(0, r.Received)
	if recv.Before(sent.Add(-time.Millisecond)) || recv.After(done) {
		t.Errorf("received %v outside the request's span [%v, %v]", recv, sent, done)
	}
	if r.WriteMaxUS == 0 || r.WriteMaxUS > 1e6 {
		t.Errorf("longest write %d µs", r.WriteMaxUS)
	}
	if r.HandlerUS > 1e6 {
		t.Errorf("handler began %d µs after the request arrived", r.HandlerUS)
	}
	// Server-side TTFT is the prefill (20 × 1 ms); every gap one decode step.
	// Lower bounds are exact (the server is never early); upper bounds leave
	// room for a loaded machine.
	if ttft := time.Duration(r.ChunksUS[0]) * time.Microsecond; ttft < prompt*time.Millisecond || ttft > prompt*time.Millisecond+100*time.Millisecond {
		t.Errorf("server TTFT %v, want ≈ %v", ttft, prompt*time.Millisecond)
	}
	for k := 1; k < out; k++ {
		if r.ChunksUS[k] < r.ChunksUS[k-1] {
			t.Fatalf("chunk %d written at %d µs, before chunk %d at %d µs", k, r.ChunksUS[k], k-1, r.ChunksUS[k-1])
		}
	}
	if mean := time.Duration(r.ChunksUS[out-1]-r.ChunksUS[0]) * time.Microsecond / (out - 1); mean < tpot*7/10 || mean > tpot*2 {
		t.Errorf("mean server ITL %v, want ≈ %v", mean, tpot)
	}
	if r.EndUS < r.ChunksUS[out-1] {
		t.Errorf("last byte at %d µs, before the last token at %d µs", r.EndUS, r.ChunksUS[out-1])
	}
	// Every chunk was written before this client read it.
	for k, at := range got {
		w := recv.Add(time.Duration(r.ChunksUS[k]) * time.Microsecond)
		// Wall clocks of one machine; the server reads its clock after the
		// write returns, which a preempted server does late.
		if at.Before(w.Add(-50 * time.Millisecond)) {
			t.Errorf("chunk %d read at %v, before the server wrote it at %v", k, at, w)
		}
	}

	// The endpoint hands the same record out as a JSON line, and drains.
	resp2, b := do(t, "GET", url+"/truth?drain=1", "")
	if resp2.StatusCode != 200 || resp2.Header.Get("X-Truth-Records") != "1" {
		t.Fatalf("GET /truth: %d %v %s", resp2.StatusCode, resp2.Header, b)
	}
	var line TruthRecord
	if err := json.Unmarshal(b, &line); err != nil || line.ID != r.ID || len(line.ChunksUS) != out || line.EndUS != r.EndUS {
		t.Errorf("GET /truth: %v: %s", err, b)
	}
	if recs, _ := srv.Truth(false); len(recs) != 0 {
		t.Errorf("%d records after drain, want 0", len(recs))
	}
}

func TestTruthLimitAndCancel(t *testing.T) {
	url, srv := start(t, Config{Server: ServerConfig{TruthRecords: 2},
		LLM: []LLMModel{{Name: "m", PrefillPerToken: Duration(time.Microsecond), TPOT: Duration(time.Millisecond)}}})
	for i := 0; i < 3; i++ {
		_, ev, _ := stream(t, url+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true}`)
		if len(ev) != 4 {
			t.Fatalf("%d events, want 4", len(ev))
		}
	}
	recs, dropped := srv.Truth(true)
	if len(recs) != 2 || dropped != 1 {
		t.Fatalf("%d records, %d dropped; want 2 kept and 1 dropped at the limit", len(recs), dropped)
	}
	if _, dropped := srv.Truth(true); dropped != 0 {
		t.Errorf("dropped count %d after a drain, want 0", dropped)
	}

	// A client that goes away mid-stream leaves an incomplete record.
	resp, err := client.Post(url+"/v1/completions", "application/json", strings.NewReader(`{"model":"m","prompt":"a","max_tokens":100000,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, _ := srv.Truth(false)
		if len(recs) == 1 {
			if r := recs[0]; r.Completed || r.EndUS != 0 || len(r.ChunksUS) == 0 || len(r.ChunksUS) >= 100000 {
				t.Errorf("cancelled stream: completed %v, end %d, %d chunks", r.Completed, r.EndUS, len(r.ChunksUS))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no record 5 s after the client went away")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTruthOff(t *testing.T) {
	url, srv := start(t, Config{LLM: []LLMModel{{Name: "m", TPOT: Duration(time.Millisecond)}}})
	stream(t, url+"/v1/completions", `{"model":"m","prompt":"a","max_tokens":2,"stream":true}`)
	if recs, _ := srv.Truth(false); recs != nil {
		t.Errorf("recording is off, yet %d records", len(recs))
	}
	resp, b := do(t, "GET", url+"/truth", "")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "--truth-records") {
		t.Errorf("GET /truth with recording off: %d %s", resp.StatusCode, b)
	}
}
