package simserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DeadlineHeader carries a request's remaining time budget in milliseconds
// (decimal, e.g. "12.5"); DroppedHeader marks a 503 caused by it.
const (
	DeadlineHeader = "X-Request-Deadline-Ms"
	DroppedHeader  = "X-Dropped"
	// Informational response headers of inference responses.
	BatchHeader = "X-Sim-Batch-Size"
	QueueHeader = "X-Sim-Queue-Ms"
	ExecHeader  = "X-Sim-Exec-Ms"
)

const maxBody = 64 << 20

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"live": true})
	})
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /v2", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"name": "gpuorch-sim-server", "version": "1", "extensions": []string{}})
	})
	mux.HandleFunc("/v2/models/", s.handleV2Model)
	mux.HandleFunc("GET /v1/models", s.handleV1Models)
	mux.HandleFunc("GET /v1/models/{name...}", s.handleV1Model)
	mux.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, r *http.Request) { s.handleGenerate(w, r, false) })
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) { s.handleGenerate(w, r, true) })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats(r.URL.Query().Get("all") != ""))
	})
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("GET /truth", s.handleTruth)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no route %s %s (see docs/sim-server.md)", r.Method, r.URL.Path)})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// v2Error is KServe v2's error body.
func v2Error(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// oaiError is the OpenAI error body.
func oaiError(w http.ResponseWriter, code int, typ, format string, args ...any) {
	writeJSON(w, code, map[string]any{"error": map[string]any{
		"message": fmt.Sprintf(format, args...), "type": typ, "param": nil, "code": code,
	}})
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", mbe.Limit)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("read request body: %v", err)
	}
	return b, 0, nil
}

// parseDeadline reads X-Request-Deadline-Ms (remaining ms from now).
func parseDeadline(r *http.Request, now time.Time) (time.Time, error) {
	v := r.Header.Get(DeadlineHeader)
	if v == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || ms != ms || ms < 0 || ms > 1e9 {
		return time.Time{}, fmt.Errorf("%s: %q is not a number of milliseconds in [0, 1e9]", DeadlineHeader, v)
	}
	return now.Add(time.Duration(ms * float64(time.Millisecond))), nil
}

// handleV2Model routes /v2/models/{name}[/versions/{v}][/ready|/infer];
// names may contain '/', so the path is taken apart by hand.
func (s *Server) handleV2Model(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/v2/models/")
	op := ""
	for _, suffix := range []string{"/infer", "/ready"} {
		if strings.HasSuffix(rest, suffix) {
			op, rest = suffix[1:], strings.TrimSuffix(rest, suffix)
			break
		}
	}
	if i := strings.Index(rest, "/versions/"); i > 0 {
		rest = rest[:i]
	}
	name := rest
	wantMethod := http.MethodGet
	if op == "infer" {
		wantMethod = http.MethodPost
	}
	if r.Method != wantMethod {
		w.Header().Set("Allow", wantMethod)
		v2Error(w, http.StatusMethodNotAllowed, "%s %s: use %s", r.Method, r.URL.Path, wantMethod)
		return
	}
	m := s.reg.lookup(name)
	if m == nil {
		s.unknownModel.Add(1)
		v2Error(w, http.StatusNotFound, "model %q not found (served: %s)", name, s.servedSummary())
		return
	}
	switch op {
	case "ready":
		writeJSON(w, http.StatusOK, map[string]any{"name": name, "ready": true})
	case "infer":
		s.handleInfer(w, r, m, name)
	default:
		s.v2Metadata(w, m, name)
	}
}

func (s *Server) v2Metadata(w http.ResponseWriter, m *model, name string) {
	md := map[string]any{"name": name, "versions": []string{"1"}, "platform": "gpuorch-sim-" + m.sp.kind.String()}
	if m.sp.kind == kindDNN {
		out := append([]int{-1}, m.sp.dnn.OutputShape...)
		md["inputs"] = []map[string]any{{"name": "input0", "datatype": "FP32", "shape": []int{-1, -1}}}
		md["outputs"] = []map[string]any{{"name": "output0", "datatype": "FP32", "shape": out}}
		md["parameters"] = map[string]any{"b1_ms": ms(m.sp.dnn.B1.D()), "max_batch": m.sp.dnn.MaxBatch, "batch_alpha": *m.sp.dnn.BatchAlpha}
	} else {
		l := m.sp.llm
		md["parameters"] = map[string]any{"prefill_per_token_ms": ms(l.PrefillPerToken.D()), "tpot_ms": ms(l.TPOT.D()), "concurrency": l.Concurrency}
	}
	writeJSON(w, http.StatusOK, md)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (s *Server) servedSummary() string {
	var b strings.Builder
	for i, sp := range s.reg.order {
		if i == 4 {
			fmt.Fprintf(&b, ", … %d entries in all", len(s.reg.order))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if sp.copies == 0 {
			b.WriteString(sp.name)
		} else {
			fmt.Fprintf(&b, "%s-0…%s-%d", sp.name, sp.name, sp.copies-1)
		}
	}
	return b.String()
}

// injectFault answers a failed request or holds a hanging one; it reports
// whether the request was taken over.
func (s *Server) injectFault(w http.ResponseWriter, r *http.Request, m *model, openai bool) bool {
	switch s.fault() {
	case 1:
		m.st.failed.Add(1)
		if openai {
			oaiError(w, http.StatusInternalServerError, "InternalServerError", "injected failure (--fail-rate)")
		} else {
			v2Error(w, http.StatusInternalServerError, "injected failure (--fail-rate)")
		}
		return true
	case 2:
		m.st.hung.Add(1)
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return true
	}
	return false
}

func (s *Server) handleInfer(w http.ResponseWriter, r *http.Request, m *model, name string) {
	now := time.Now()
	body, code, err := readBody(w, r)
	if err != nil {
		s.badRequests.Add(1)
		v2Error(w, code, "%v", err)
		return
	}
	req, batchDim, err := decodeInfer(body)
	if err != nil {
		s.badRequests.Add(1)
		v2Error(w, http.StatusBadRequest, "%v", err)
		return
	}
	if m.sp.kind != kindDNN {
		s.badRequests.Add(1)
		v2Error(w, http.StatusBadRequest, "model %q is an LLM: use POST /v1/completions or /v1/chat/completions", name)
		return
	}
	outN := batchDim
	for _, d := range m.sp.dnn.OutputShape {
		outN *= int64(d)
	}
	if outN > 1<<22 {
		s.badRequests.Add(1)
		v2Error(w, http.StatusBadRequest, "output of %d elements (batch %d × %v) is too large", outN, batchDim, m.sp.dnn.OutputShape)
		return
	}
	deadline, err := parseDeadline(r, now)
	if err != nil {
		s.badRequests.Add(1)
		v2Error(w, http.StatusBadRequest, "%v", err)
		return
	}
	m.st.requests.Add(1)
	if s.injectFault(w, r, m, false) {
		return
	}
	res, err := s.infer(r.Context(), m, deadline)
	if err != nil {
		m.st.cancelled.Add(1)
		return
	}
	if res.dropped {
		m.st.dropped.Add(1)
		w.Header().Set(DroppedHeader, "deadline")
		v2Error(w, http.StatusServiceUnavailable, "model %q: request dropped: it cannot finish within its deadline of %s ms", name, r.Header.Get(DeadlineHeader))
		return
	}
	m.st.completed.Add(1)
	w.Header().Set(BatchHeader, strconv.Itoa(res.batch))
	w.Header().Set(QueueHeader, strconv.FormatFloat(ms(res.queue), 'f', 3, 64))
	w.Header().Set(ExecHeader, strconv.FormatFloat(ms(res.exec), 'f', 3, 64))
	w.Header().Set("Content-Type", "application/json")
	w.Write(inferResponse(name, req, batchDim, m.sp.dnn.OutputShape, outN))
}

// inferResponse writes a v2 response: one FP32 output per requested output
// name (or "output0"), shape [batch, OutputShape...], zeros.
func inferResponse(name string, req inferRequest, batchDim int64, shape []int, n int64) []byte {
	var b bytes.Buffer
	b.Grow(128 + int(n)*2)
	b.WriteString(`{"model_name":`)
	writeJSONString(&b, name)
	b.WriteString(`,"model_version":"1"`)
	if req.ID != "" {
		b.WriteString(`,"id":`)
		writeJSONString(&b, req.ID)
	}
	b.WriteString(`,"outputs":[`)
	names := []string{"output0"}
	if len(req.Outputs) > 0 {
		names = names[:0]
		for _, o := range req.Outputs {
			names = append(names, o.Name)
		}
	}
	for i, on := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"name":`)
		writeJSONString(&b, on)
		b.WriteString(`,"datatype":"FP32","shape":[`)
		b.WriteString(strconv.FormatInt(batchDim, 10))
		for _, d := range shape {
			b.WriteByte(',')
			b.WriteString(strconv.Itoa(d))
		}
		b.WriteString(`],"data":[`)
		for j := int64(0); j < n; j++ {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('0')
		}
		b.WriteString("]}")
	}
	b.WriteString("]}\n")
	return b.Bytes()
}

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s)
	b.Write(q)
}

func (s *Server) handleV1Models(w http.ResponseWriter, r *http.Request) {
	s.modelsOnce.Do(func() {
		var b bytes.Buffer
		created := s.started.Unix()
		b.WriteString(`{"object":"list","data":[`)
		first := true
		s.reg.names(func(name string, sp *spec) {
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.WriteString(`{"id":`)
			writeJSONString(&b, name)
			fmt.Fprintf(&b, `,"object":"model","created":%d,"owned_by":"gpuorch-sim-%s"}`, created, sp.kind)
		})
		b.WriteString("]}\n")
		s.modelsJSON = b.Bytes()
	})
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.modelsJSON)
}

func (s *Server) handleV1Model(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	m := s.reg.lookup(name)
	if m == nil {
		s.unknownModel.Add(1)
		oaiError(w, http.StatusNotFound, "NotFoundError", "model %q not found", name)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": name, "object": "model", "created": s.started.Unix(), "owned_by": "gpuorch-sim-" + m.sp.kind.String()})
}

// vocabulary of the generated text: one token is one word with a leading
// space, so CountTokens of the output equals completion_tokens.
var vocabulary = []string{" the", " simulated", " model", " says", " hello", " to", " gpuorch", " and", " its", " load", " generator", "."}

func tokenText(k int) string { return vocabulary[k%len(vocabulary)] }

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type delta struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content"`
}

type choice struct {
	Index        int     `json:"index"`
	Text         *string `json:"text,omitempty"`
	Delta        *delta  `json:"delta,omitempty"`
	Message      *delta  `json:"message,omitempty"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

type completion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *usage   `json:"usage,omitempty"`
}

// outputTokens decides how many tokens a request generates and why it
// stops ("length" at max_tokens, "stop" at the model's simulated EOS).
func outputTokens(g genRequest, sp *spec) (int, string) {
	n := g.maxTokens
	if sp.kind == kindDNN {
		if n == 0 {
			n = 1
		}
		return n, "length"
	}
	l := sp.llm
	if n == 0 {
		n = l.MaxTokens
	}
	if !g.ignoreEOS && l.EOSAfter > 0 && l.EOSAfter < n {
		stop := max(l.EOSAfter, g.minTokens)
		if stop < n {
			return stop, "stop"
		}
	}
	return n, "length"
}

func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request, chat bool) {
	now := time.Now()
	body, code, err := readBody(w, r)
	if err != nil {
		s.badRequests.Add(1)
		oaiError(w, code, "BadRequestError", "%v", err)
		return
	}
	var g genRequest
	if chat {
		g, err = decodeChat(body)
	} else {
		g, err = decodeCompletion(body)
	}
	if err != nil {
		s.badRequests.Add(1)
		oaiError(w, http.StatusBadRequest, "BadRequestError", "%v", err)
		return
	}
	m := s.reg.lookup(g.model)
	if m == nil {
		s.unknownModel.Add(1)
		oaiError(w, http.StatusNotFound, "NotFoundError", "model %q not found (served: %s; GET /v1/models lists all)", g.model, s.servedSummary())
		return
	}
	deadline, err := parseDeadline(r, now)
	if err != nil {
		s.badRequests.Add(1)
		oaiError(w, http.StatusBadRequest, "BadRequestError", "%v", err)
		return
	}
	m.st.requests.Add(1)
	if s.injectFault(w, r, m, true) {
		return
	}
	out, finish := outputTokens(g, m.sp)
	o := &oaiWriter{w: w, chat: chat, g: g, out: out, finish: finish,
		id: fmt.Sprintf("%s-%d", map[bool]string{false: "cmpl", true: "chatcmpl"}[chat], s.ids.Add(1)), created: now.Unix()}
	if g.stream {
		o.truth = s.startTruth(arrival(r.Context(), time.Now()), now, o.id, g.model, r.Header.Get(RequestIDHeader), g.promptTokens, out)
	}

	ctx := r.Context()
	if m.sp.kind == kindDNN {
		// A DNN model over the OpenAI API: one inference, then every token at once.
		res, err := s.infer(ctx, m, deadline)
		if err != nil {
			m.st.cancelled.Add(1)
			return
		}
		if res.dropped {
			m.st.dropped.Add(1)
			w.Header().Set(DroppedHeader, "deadline")
			oaiError(w, http.StatusServiceUnavailable, "ServiceUnavailableError", "model %q: request dropped: it cannot finish within its deadline", g.model)
			return
		}
		w.Header().Set(BatchHeader, strconv.Itoa(res.batch))
		w.Header().Set(QueueHeader, strconv.FormatFloat(ms(res.queue), 'f', 3, 64))
		for k := 0; k < out; k++ {
			if o.token(k, time.Time{}) != nil {
				o.truth.finish(false)
				m.st.cancelled.Add(1)
				return
			}
		}
		o.end()
		m.st.completed.Add(1)
		m.st.promptTokens.Add(int64(g.promptTokens))
		m.st.completionTokens.Add(int64(out))
		return
	}

	if err := s.acquire(ctx, m); err != nil {
		o.truth.finish(false)
		m.st.cancelled.Add(1)
		return
	}
	defer s.release(m)
	admitted := time.Now()
	o.truth.admitted(admitted)
	w.Header().Set(QueueHeader, strconv.FormatFloat(ms(admitted.Sub(now)), 'f', 3, 64))
	gen := s.startGeneration(m, admitted, g.promptTokens)
	defer gen.stop()
	for k := 0; k < out; k++ {
		if err := gen.wait(ctx); err != nil {
			o.truth.finish(false)
			m.st.cancelled.Add(1)
			return
		}
		if err := o.token(k, gen.next); err != nil {
			o.truth.finish(false)
			m.st.cancelled.Add(1)
			return
		}
	}
	o.end()
	m.st.completed.Add(1)
	m.st.promptTokens.Add(int64(g.promptTokens))
	m.st.completionTokens.Add(int64(out))
}

// oaiWriter writes an OpenAI response: SSE chunks as tokens come when
// streaming, or the whole body at the end.
type oaiWriter struct {
	w       http.ResponseWriter
	chat    bool
	g       genRequest
	out     int
	finish  string
	id      string
	created int64
	text    strings.Builder
	started bool
	truth   *truthRec // nil unless recording the ground truth of a stream
}

func (o *oaiWriter) object() string {
	switch {
	case o.chat && o.g.stream:
		return "chat.completion.chunk"
	case o.chat:
		return "chat.completion"
	}
	return "text_completion"
}

// token emits token k (0-based), which the latency model had scheduled for
// due (zero: unscheduled).
func (o *oaiWriter) token(k int, due time.Time) error {
	t := tokenText(k)
	if !o.g.stream {
		o.text.WriteString(t)
		return nil
	}
	c := choice{}
	if o.chat {
		d := &delta{Content: t}
		if k == 0 {
			d.Role = "assistant" // with the first token, so no empty chunk comes first
		}
		c.Delta = d
	} else {
		c.Text = &t
	}
	if k == o.out-1 {
		c.FinishReason = &o.finish
	}
	var began time.Time
	if o.truth != nil {
		began = time.Now()
	}
	if err := o.chunk(completion{Choices: []choice{c}}); err != nil {
		return err
	}
	o.truth.chunk(due, began)
	return nil
}

func (o *oaiWriter) chunk(c completion) error {
	c.ID, c.Object, c.Created, c.Model = o.id, o.object(), o.created, o.g.model
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if !o.started {
		h := o.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		o.w.WriteHeader(http.StatusOK)
		o.started = true
	}
	buf := make([]byte, 0, len(b)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, b...)
	buf = append(buf, "\n\n"...)
	if _, err := o.w.Write(buf); err != nil {
		return err
	}
	return http.NewResponseController(o.w).Flush()
}

func (o *oaiWriter) usage() *usage {
	return &usage{PromptTokens: o.g.promptTokens, CompletionTokens: o.out, TotalTokens: o.g.promptTokens + o.out}
}

func (o *oaiWriter) end() {
	if o.g.stream {
		if o.g.includeUsage {
			o.chunk(completion{Choices: []choice{}, Usage: o.usage()})
		}
		_, err := o.w.Write([]byte("data: [DONE]\n\n"))
		if err == nil {
			err = http.NewResponseController(o.w).Flush()
		}
		o.truth.finish(err == nil)
		return
	}
	text := o.text.String()
	c := choice{FinishReason: &o.finish}
	if o.chat {
		c.Message = &delta{Role: "assistant", Content: text}
	} else {
		c.Text = &text
	}
	writeJSON(o.w, http.StatusOK, completion{ID: o.id, Object: o.object(), Created: o.created, Model: o.g.model, Choices: []choice{c}, Usage: o.usage()})
}
