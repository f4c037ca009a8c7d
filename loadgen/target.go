package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gpuorch/gpuorch/internal/clip"
	"github.com/gpuorch/gpuorch/internal/errkind"
)

// Target sends requests to a server. Implementations are safe for
// concurrent use.
type Target interface {
	// Ready checks, before a run, that the target answers. An error means the
	// run cannot start (the CLI exits with code 3).
	Ready(ctx context.Context) error
	// Do sends the request for res.Arrival and fills in res: Status, Outcome
	// (OK, Error or Dropped), Done and, for LLM targets, the streamed chunks
	// and token counts. res.Sent is already set; a target that first waits
	// for a free connection moves it to when the request really went out.
	// clock reads the run's clock.
	// A transport error is returned as well as stored in res.Err; the caller
	// decides whether it was a timeout or the end of the run.
	Do(ctx context.Context, res *Result, clock func() time.Duration) error
}

// DeadlineHeader carries the time left until a request's SLO deadline, in
// milliseconds as a decimal, so a server may drop what it cannot finish.
const DeadlineHeader = "X-Request-Deadline-Ms"

// DroppedHeader on a 503 answer says the server shed the request
// (value "deadline": it could not have met the deadline).
const DroppedHeader = "X-Dropped"

// Protocols lists the supported target protocols.
var Protocols = []string{"http", "kserve", "openai", "openai-chat"}

// NewTarget builds the target a configuration describes.
// Its configuration is checked first (TargetConfig.Validate), so that no
// user byte reaches the wire outside its field, over http and https alike.
func NewTarget(tc TargetConfig) (Target, error) {
	if err := tc.Validate(); err != nil {
		return nil, err
	}
	u, err := url.Parse(tc.URL)
	if err != nil {
		return nil, fmt.Errorf("bad target URL %s: %w", clip.Quote(tc.URL), err)
	}
	headers := http.Header{}
	for k, v := range tc.Headers {
		headers.Set(k, v)
	}
	if tc.CredentialEnv != "" {
		tok := os.Getenv(tc.CredentialEnv)
		if tok == "" {
			return nil, fmt.Errorf("credential_env names %s, but that environment variable is empty", tc.CredentialEnv)
		}
		if strings.ContainsFunc(tok, isCtlNotTab) {
			return nil, errkind.Invalidf("credential_env: the token in %s holds CR, LF, NUL or another control character", tc.CredentialEnv)
		}
		headers.Set("Authorization", "Bearer "+tok)
	}
	timeout := tc.Timeout.D()
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	base := strings.TrimRight(tc.URL, "/")
	h := &httpTarget{client: newHTTPClient(), headers: headers, timeout: timeout, byModel: map[string]*reqTemplate{}, protocol: tc.Protocol}
	if u.Scheme == "http" && (tc.Protocol == "" || tc.Protocol == "http" || tc.Protocol == "kserve") {
		h.h1 = newH1Client(u, timeout)
	}
	if u.Scheme == "http" && (tc.Protocol == "openai" || tc.Protocol == "openai-chat") {
		h.sse = newSSEClient(u, timeout)
	}
	switch tc.Protocol {
	case "", "http":
		m := tc.Method
		if m == "" {
			m = http.MethodGet
		}
		h.fixed = h.withHeader(&reqTemplate{method: strings.ToUpper(m), url: tc.URL, body: []byte(tc.Body)})
		h.readyURL = tc.URL
		h.anyStatusReady = true
	case "kserve":
		h.build = func(model string) *reqTemplate {
			return &reqTemplate{method: http.MethodPost, url: base + "/v2/models/" + url.PathEscape(model) + "/infer",
				body: kserveBody, contentType: "application/json"}
		}
		h.readyURL = base + "/v2/health/ready"
	case "openai", "openai-chat":
		h.llm = true
		h.stream = !tc.NoStream
		in, out := tc.InputTokens, tc.OutputTokens
		if in <= 0 {
			in = 128
		}
		if out <= 0 {
			out = 32
		}
		h.inTokens, h.outTokens = in, out
		chat := tc.Protocol == "openai-chat"
		path := "/v1/completions"
		if chat {
			path = "/v1/chat/completions"
		}
		if len(tc.PromptFiles) > 0 {
			ps, err := loadPromptFiles(tc.PromptFiles)
			if err != nil {
				return nil, err
			}
			h.prompts, h.chat, h.maxOut = ps, chat, tc.OutputTokens
		}
		h.build = func(model string) *reqTemplate {
			return &reqTemplate{method: http.MethodPost, url: base + path,
				body: openAIBody(model, chat, in, out, h.stream), contentType: "application/json"}
		}
		h.readyURL = base + "/v1/models"
		if h.sse != nil {
			if h.sseURL, err = url.Parse(base + path); err != nil {
				return nil, fmt.Errorf("bad target URL %q: %w", tc.URL, err)
			}
		}
	default:
		return nil, fmt.Errorf("unknown protocol %s (want one of %s)", clip.Quote(tc.Protocol), strings.Join(Protocols, ", "))
	}
	return h, nil
}

func newHTTPClient() *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // load generation must not go through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// kserveBody is a small valid KServe v2 inference request: one FP32 tensor.
var kserveBody = []byte(`{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","data":[0.1,0.2,0.3,0.4]}]}`)

func openAIBody(model string, chat bool, in, out int, stream bool) []byte {
	return openAIPromptBody(model, chat, strings.TrimSpace(strings.Repeat("hello ", in)), out, stream)
}

func openAIPromptBody(model string, chat bool, prompt string, out int, stream bool) []byte {
	var b bytes.Buffer
	b.WriteString(`{"model":`)
	b.WriteString(strconv.Quote(model))
	if chat {
		b.WriteString(`,"messages":[{"role":"user","content":`)
		b.WriteString(strconv.Quote(prompt))
		b.WriteString(`}]`)
	} else {
		b.WriteString(`,"prompt":`)
		b.WriteString(strconv.Quote(prompt))
	}
	fmt.Fprintf(&b, `,"max_tokens":%d,"min_tokens":%d,"ignore_eos":true`, out, out)
	if stream {
		b.WriteString(`,"stream":true,"stream_options":{"include_usage":true}`)
	}
	b.WriteString(`}`)
	return b.Bytes()
}

type reqTemplate struct {
	method, url, contentType string
	body                     []byte
	header                   http.Header // shared, read-only: target headers + content type
	h1                       []byte      // the request rendered for h1Client (nil: net/http)
	sseHead                  []byte      // the request head rendered for sseClient
}

type httpTarget struct {
	protocol       string // as configured ("" is http)
	client         *http.Client
	headers        http.Header
	timeout        time.Duration
	fixed          *reqTemplate
	build          func(model string) *reqTemplate
	byModel        map[string]*reqTemplate // filled by Prepare before the run; read-only after
	readyURL       string
	anyStatusReady bool
	llm, stream    bool
	inTokens       int
	outTokens      int // expected output tokens (to size a request's chunk list once)
	// Dataset prompts (PromptFiles): the body is rendered per request.
	prompts []Prompt
	chat    bool
	maxOut  int        // cap on a prompt's output tokens (0 = none)
	h1      *h1Client  // request/response protocols over plain HTTP
	async   *h1Async   // pacer-side sends, once startAsync has run
	sse     *sseClient // OpenAI protocols over plain HTTP
	sseURL  *url.URL   // where sse sends (base + /v1/...)
}

// Abort fails every request in flight at once (end of run).
func (h *httpTarget) Abort() {
	if h.h1 != nil {
		h.h1.abort()
	}
	if h.async != nil {
		h.async.abort()
	}
	if h.sse != nil {
		h.sse.abort()
	}
	h.client.CloseIdleConnections()
}

// startAsync switches plain-HTTP and KServe requests to sends from the
// pacer itself (see h1Async), with warm connections open before it
// returns; it reports false for protocols that need a goroutine per request.
func (h *httpTarget) startAsync(ctx context.Context, warm, maxConns int, clock func() time.Duration, done func(*Result, error)) bool {
	if h.h1 == nil {
		return false
	}
	h.async = newH1Async(h.h1, maxConns, clock, done)
	h.async.start(ctx, warm)
	return true
}

func (h *httpTarget) trySend(res *Result) (bool, error) {
	return h.async.trySend(res, h.template(res.Arrival.Model))
}

func (h *httpTarget) takeRetries(out []*Result) []*Result { return h.async.takeRetries(out) }

func (h *httpTarget) retries() <-chan struct{} { return h.async.retryReady }

func (h *httpTarget) asyncWait() { h.async.wait() }

// SetMaxConns caps the connections of the plain-HTTP/KServe client.
func (h *httpTarget) SetMaxConns(n int) {
	if h.h1 != nil {
		h.h1.setMaxConns(n)
	}
}

// SelfTimed reports that Do enforces the request timeout itself, so the
// caller need not wrap each request in a context with a timeout.
func (h *httpTarget) SelfTimed() bool { return h.h1 != nil || h.sse != nil }

// Prepare builds the request templates of the given models up front so that
// Do only reads shared state.
func (h *httpTarget) Prepare(models []string) {
	if h.build == nil {
		return
	}
	for _, m := range models {
		if h.byModel[m] == nil {
			h.byModel[m] = h.withHeader(h.build(m))
		}
	}
}

func (h *httpTarget) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	try := func(u string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return 0, err
		}
		for k, v := range h.headers {
			req.Header[k] = v
		}
		resp, err := h.client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	code, err := try(h.readyURL)
	if err != nil {
		return errkind.Unavailablef("target unreachable: %s: %v", h.readyURL, unwrapURLError(err))
	}
	if h.anyStatusReady || code/100 == 2 {
		return nil
	}
	if h.llm { // some OpenAI-compatible servers have /health but no /v1/models
		alt := strings.TrimSuffix(h.readyURL, "/v1/models") + "/health"
		if c2, err := try(alt); err == nil && c2/100 == 2 {
			return nil
		}
	}
	return errkind.Unavailablef("target unreachable: %s answered %d, not ready", h.readyURL, code)
}

// explainer is a target that can say why its requests fail.
type explainer interface {
	explain(ctx context.Context, model string, timeout time.Duration) string
}

// explain sends model's request once more and says what the target
// answered — the status and the start of the body — with a hint at the
// usual cause: the wrong --protocol, a model the server does not have, a
// credential it refuses.
func (h *httpTarget) explain(ctx context.Context, model string, timeout time.Duration) string {
	t := h.template(model)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, t.method, t.url, bytes.NewReader(t.body))
	if err != nil {
		return err.Error()
	}
	req.Header = t.header.Clone()
	what := t.method + " " + clip.String(t.url)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Sprintf("%s: %v", what, unwrapURLError(err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := fmt.Sprintf("%s answered %s", what, resp.Status)
	if ex := excerpt(b, 200); ex != "" {
		msg += " " + ex
	}
	protocol := h.protocol
	if protocol == "" {
		protocol = "http"
	}
	var others []string
	for _, p := range Protocols {
		if p != protocol {
			others = append(others, p)
		}
	}
	sends := fmt.Sprintf("--protocol %s sends %s; the others: %s", protocol, protocolSends[protocol], strings.Join(others, ", "))
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return msg + " (is the credential right? --credential-env, or the spec's target.credential_env)"
	case protocol == "http":
		return msg + " (--protocol http, the default, sends the request as given: a KServe v2 server wants --protocol kserve, an OpenAI-compatible one --protocol openai or openai-chat)"
	case resp.StatusCode == http.StatusNotFound:
		return msg + fmt.Sprintf(" (is model %s served there? %s)", clip.Quote(model), sends)
	case resp.StatusCode/100 == 2:
		return msg + fmt.Sprintf(" (an answer --protocol %s cannot read: %s)", protocol, sends)
	}
	return msg + " (" + sends + ")"
}

// protocolSends says what each protocol's requests are, for hints.
var protocolSends = map[string]string{
	"http":        "the request as given",
	"kserve":      "KServe v2 inference requests",
	"openai":      "OpenAI /v1/completions requests",
	"openai-chat": "OpenAI /v1/chat/completions requests",
}

// excerpt is the start of an answer's body, quoted, at most n bytes.
func excerpt(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	if len(s) <= n {
		return strconv.Quote(s)
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strconv.Quote(s[:n]) + "…"
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (h *httpTarget) template(model string) *reqTemplate {
	if h.fixed != nil {
		return h.fixed
	}
	if t := h.byModel[model]; t != nil {
		return t
	}
	return h.withHeader(h.build(model))
}

func (h *httpTarget) withHeader(t *reqTemplate) *reqTemplate {
	t.header = h.headers.Clone()
	if t.contentType != "" {
		t.header.Set("Content-Type", t.contentType)
	}
	if h.h1 != nil {
		if u, err := url.Parse(t.url); err == nil {
			t.h1 = renderH1(t.method, u, t.header, t.body)
		}
	}
	if h.sse != nil {
		t.sseHead = renderH1(t.method, h.sseURL, t.header, t.body)
	}
	return t
}

func (h *httpTarget) Do(ctx context.Context, res *Result, clock func() time.Duration) error {
	t := h.template(res.Arrival.Model)
	if t.h1 != nil {
		return h.doH1(ctx, t, res, clock)
	}
	if h.sse != nil {
		return h.doSSE(ctx, t, res, clock)
	}
	var body io.Reader
	inTokens := h.inTokens
	if len(h.prompts) > 0 {
		p := h.prompts[res.Arrival.Seq%int64(len(h.prompts))]
		out := p.OutputTokens
		if h.maxOut > 0 {
			out = min(out, h.maxOut)
		}
		inTokens = p.InputTokens
		body = bytes.NewReader(openAIPromptBody(res.Arrival.Model, h.chat, p.Text, out, h.stream))
	} else if len(t.body) > 0 {
		body = bytes.NewReader(t.body)
	}
	req, err := http.NewRequestWithContext(ctx, t.method, t.url, body)
	if err != nil {
		res.Outcome, res.Err, res.Done = OutcomeError, err, clock()
		return err
	}
	hdr := t.header
	if res.Deadline > 0 {
		// Copy-on-write: the template's header is shared by all requests.
		hdr = make(http.Header, len(t.header)+1)
		for k, v := range t.header {
			hdr[k] = v
		}
		hdr[DeadlineHeader] = []string{strconv.FormatFloat(deadlineLeftMs(res, clock()), 'f', 3, 64)}
	}
	req.Header = hdr
	resp, err := h.client.Do(req)
	if err != nil {
		res.Outcome, res.Err, res.Done = OutcomeError, err, clock()
		return err
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	if h.llm && resp.StatusCode/100 == 2 {
		err = h.readLLM(resp, res, inTokens, clock)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	res.Done = clock()
	switch {
	case err != nil:
		res.Outcome, res.Err = OutcomeError, err
		return err
	case resp.StatusCode/100 == 2:
		res.Outcome = OutcomeOK
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(DroppedHeader) != "":
		res.Outcome = OutcomeDropped
	default:
		res.Outcome = OutcomeError
		res.Err = fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// readLLM reads an OpenAI answer through net/http; inTokens is the
// prompt's length when the server reports no usage.
func (h *httpTarget) readLLM(resp *http.Response, res *Result, inTokens int, clock func() time.Duration) error {
	res.Streamed = true
	ct := resp.Header.Get("Content-Type")
	var st llmStream
	if !h.stream || !strings.HasPrefix(ct, "text/event-stream") {
		// One JSON answer: the whole response is one chunk.
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			return err
		}
		return st.whole(b, clock()-res.Sent, res, inTokens)
	}
	err := ReadSSE(resp.Body, func(data []byte) error { return st.event(data, clock()-res.Sent, res) })
	if err != nil && err != errSSEDone {
		return err
	}
	return st.finish(res, inTokens)
}

// llmStream turns an OpenAI answer's events into a Result's chunks and
// token counts (both clients use it).
type llmStream struct {
	usage     chunkUsage
	haveUsage bool
	done      time.Duration // when [DONE] arrived (0: not seen)
}

// event handles one event's data, which arrived at (since the send).
func (st *llmStream) event(data []byte, at time.Duration, res *Result) error {
	if string(data) == "[DONE]" {
		st.done = at
		return errSSEDone
	}
	c, ok := scanChunk(data)
	if !ok {
		var err error
		if c, err = parseChunk(data); err != nil {
			return err
		}
	}
	if c.usage != nil {
		st.usage, st.haveUsage = *c.usage, true
	}
	if c.content {
		res.Chunks = append(res.Chunks, Chunk{At: at, Tokens: 1})
	}
	return nil
}

// finish sets the token counts once the stream has ended.
func (st *llmStream) finish(res *Result, inTokens int) error {
	if st.haveUsage {
		res.InputTokens, res.OutputTokens = st.usage.PromptTokens, st.usage.CompletionTokens
	} else {
		res.InputTokens, res.OutputTokens = inTokens, len(res.Chunks)
	}
	if len(res.Chunks) == 0 {
		return errors.New("stream ended without any content chunk")
	}
	return nil
}

// whole handles a non-streamed answer: the whole body is one chunk.
func (st *llmStream) whole(b []byte, at time.Duration, res *Result, inTokens int) error {
	c, err := parseChunk(b)
	if err != nil {
		return err
	}
	n := 1
	if c.usage != nil {
		n = c.usage.CompletionTokens
		res.InputTokens = c.usage.PromptTokens
	} else {
		res.InputTokens = inTokens
	}
	res.OutputTokens = n
	res.Chunks = append(res.Chunks, Chunk{At: at, Tokens: n})
	return nil
}

// doSSE sends an OpenAI request over sseClient. The answer's times are
// those of the reads that brought each event (see sseClient); the end of
// the answer is the arrival of [DONE], or of the last byte without one.
func (h *httpTarget) doSSE(ctx context.Context, t *reqTemplate, res *Result, clock func() time.Duration) error {
	head, body := t.sseHead, t.body
	inTokens := h.inTokens
	if cap(res.Chunks) == 0 {
		// One allocation of the right size rather than seven growing ones.
		res.Chunks = make([]Chunk, 0, h.outTokens+1)
	}
	if len(h.prompts) > 0 {
		p := h.prompts[res.Arrival.Seq%int64(len(h.prompts))]
		out := p.OutputTokens
		if h.maxOut > 0 {
			out = min(out, h.maxOut)
		}
		inTokens = p.InputTokens
		body = openAIPromptBody(res.Arrival.Model, h.chat, p.Text, out, h.stream)
		head = renderH1(t.method, h.sseURL, t.header, body)
	}
	var st llmStream
	var last time.Duration // arrival of the last byte read, since the send
	// Only a 2xx answer's body reaches these.
	handler := sseHandler{
		onEvent: func(data []byte, at time.Duration) error {
			last = at - res.Sent
			return st.event(data, last, res)
		},
		onBody: func(b []byte, at time.Duration) error {
			last = at - res.Sent
			return st.whole(b, last, res, inTokens)
		},
	}
	ans, err := h.sse.do(ctx, head, body, res, clock, handler)
	res.Status = ans.status
	switch {
	case err != nil:
		res.Outcome, res.Err, res.Done = OutcomeError, err, clock()
		return err
	case ans.status/100 == 2:
		res.Streamed = true
		res.Done = res.Sent + last
		if st.done > 0 {
			res.Done = res.Sent + st.done
		}
		if ans.eventStream {
			err = st.finish(res, inTokens)
		} else if len(res.Chunks) == 0 {
			err = errors.New("answer without a body")
		}
		if err != nil {
			res.Outcome, res.Err = OutcomeError, err
			return err
		}
		res.Outcome = OutcomeOK
	case ans.status == http.StatusServiceUnavailable && ans.dropped:
		res.Outcome, res.Done = OutcomeDropped, clock()
	default:
		res.Outcome, res.Err, res.Done = OutcomeError, fmt.Errorf("HTTP %d", ans.status), clock()
	}
	return nil
}

func (h *httpTarget) doH1(ctx context.Context, t *reqTemplate, res *Result, clock func() time.Duration) error {
	resp, err := h.h1.do(ctx, t, res, clock)
	res.Done = clock()
	h1Outcome(res, resp, err)
	return err
}

// h1Outcome sets res's status and outcome from an h1 answer or error.
func h1Outcome(res *Result, resp h1Response, err error) {
	res.Status = resp.status
	switch {
	case err != nil:
		res.Outcome, res.Err = OutcomeError, err
	case resp.status/100 == 2:
		res.Outcome = OutcomeOK
	case resp.status == http.StatusServiceUnavailable && resp.dropped:
		res.Outcome = OutcomeDropped
	default:
		res.Outcome = OutcomeError
	}
}
