package simserver

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RequestIDHeader is the client's id for a request (vLLM, SGLang and TGI
// accept it too); the ground truth keeps it so a client can match its own
// records to the server's.
const RequestIDHeader = "X-Request-Id"

// TruthRecord is the server's own account of one streamed request: when it
// arrived, when each token chunk had been written to the connection and when
// the last byte had. Times after Received are microseconds from Received
// (the server's monotonic clock), taken after each write and flush returned,
// so the bytes were in the kernel's hands. From them follow the server-side
// TTFT (Chunks[0]), ITL (Chunks[k] − Chunks[k−1]) and E2EL (End).
//
// Received is when the request's last bytes reached the server's socket
// (the kernel's receive timestamp, with Serve), or when the handler began
// (Handler alone); HandlerUS is the time between the two: the server's own
// delay in getting to the request.
type TruthRecord struct {
	ID        string `json:"id"`                   // the response id (cmpl-N, chatcmpl-N)
	RequestID string `json:"request_id,omitempty"` // the client's X-Request-Id, if it sent one
	Model     string `json:"model"`
	// Received is when the request arrived (see above), Unix ns.
	Received int64 `json:"received_unix_ns"`
	// HandlerUS is when the handler began.
	HandlerUS uint32 `json:"handler_us"`
	// QueueUS is the wait for a generation slot (LLM concurrency); 0 for DNN models.
	QueueUS uint32 `json:"queue_us"`
	// ChunksUS holds, for each token chunk, when its write returned.
	ChunksUS []uint32 `json:"chunks_us"`
	// EndUS is when the last byte ([DONE], or the usage chunk before it) had
	// been written; 0 when the stream did not end normally.
	EndUS uint32 `json:"end_us"`
	// LagMaxUS is the largest delay of a token chunk's write past the time
	// the latency model had scheduled it: how far the server fell behind its
	// own timeline (timer wake-up, CPU, the write itself). 0 for DNN models.
	LagMaxUS uint32 `json:"lag_max_us"`
	// WriteMaxUS is the longest time from just before a chunk's write to
	// the clock read after its flush: the bytes reached the connection
	// somewhere in that span, so it bounds how exact ChunksUS is (a server
	// preempted mid-write stamps late).
	WriteMaxUS       uint32 `json:"write_max_us"`
	PromptTokens     int    `json:"prompt_tokens"`
	CompletionTokens int    `json:"completion_tokens"` // tokens asked for
	// Completed is false when the stream ended early (the client went away,
	// the server shut down).
	Completed bool `json:"completed"`
}

// truthStore keeps finished records until they are handed out. Records are
// added once per request, at its end, so the stream itself only pays for a
// clock read per chunk.
type truthStore struct {
	mu      sync.Mutex
	recs    []*TruthRecord
	limit   int
	dropped int64
}

func (t *truthStore) add(r *TruthRecord) {
	t.mu.Lock()
	if len(t.recs) < t.limit {
		t.recs = append(t.recs, r)
	} else {
		t.dropped++
	}
	t.mu.Unlock()
}

// Truth returns the ground-truth records of the streamed requests that
// ended since the last drain, in the order they ended, and how many were
// not kept because the store was full (Server.TruthRecords). With drain the
// returned records are removed (and the dropped count reset), so each is
// handed out once. Without truth recording it returns nothing.
func (s *Server) Truth(drain bool) (recs []*TruthRecord, dropped int64) {
	t := s.truth
	if t == nil {
		return nil, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	recs, dropped = t.recs, t.dropped
	if drain {
		t.recs, t.dropped = nil, 0
	} else {
		recs = append([]*TruthRecord(nil), recs...)
	}
	return recs, dropped
}

// handleTruth serves the records as JSON lines; ?drain=1 removes them.
func (s *Server) handleTruth(w http.ResponseWriter, r *http.Request) {
	if s.truth == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "ground-truth recording is off: start sim-server with --truth-records N (docs/sim-server.md)"})
		return
	}
	recs, dropped := s.Truth(r.URL.Query().Get("drain") != "")
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Truth-Records", strconv.Itoa(len(recs)))
	w.Header().Set("X-Truth-Dropped", strconv.FormatInt(dropped, 10))
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	for _, rec := range recs {
		if enc.Encode(rec) != nil {
			return
		}
	}
	bw.Flush()
}

// truthRec is one request's record while it streams.
type truthRec struct {
	store *truthStore
	rec   TruthRecord
	start time.Time // Received, on the monotonic clock
}

func (s *Server) startTruth(received, handler time.Time, id, model, requestID string, promptTokens, out int) *truthRec {
	if s.truth == nil {
		return nil
	}
	t := &truthRec{store: s.truth, start: received, rec: TruthRecord{ID: id, RequestID: requestID, Model: model,
		Received: received.UnixNano(), HandlerUS: usSince(received, handler), PromptTokens: promptTokens, CompletionTokens: out}}
	t.rec.ChunksUS = make([]uint32, 0, out)
	return t
}

func usSince(t0, t time.Time) uint32 {
	d := t.Sub(t0) / time.Microsecond
	if d < 0 {
		return 0
	}
	if d > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(d)
}

// admitted notes when the request got its generation slot.
func (t *truthRec) admitted(at time.Time) {
	if t != nil {
		t.rec.QueueUS = usSince(t.start, at)
	}
}

// chunk notes that a token chunk due at due (zero: no schedule), whose
// write began at began, has just been written.
func (t *truthRec) chunk(due, began time.Time) {
	if t == nil {
		return
	}
	now := time.Now()
	t.rec.ChunksUS = append(t.rec.ChunksUS, usSince(t.start, now))
	if w := usSince(began, now); w > t.rec.WriteMaxUS {
		t.rec.WriteMaxUS = w
	}
	if !due.IsZero() {
		if lag := usSince(due, now); lag > t.rec.LagMaxUS {
			t.rec.LagMaxUS = lag
		}
	}
}

// finish stores the record; completed says the last byte went out.
func (t *truthRec) finish(completed bool) {
	if t == nil {
		return
	}
	if completed {
		t.rec.EndUS = usSince(t.start, time.Now())
	}
	t.rec.Completed = completed
	t.store.add(&t.rec)
}
