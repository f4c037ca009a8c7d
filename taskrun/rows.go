package taskrun

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/loadgen"
)

// RequestRow is one per-request row of requests.jsonl, in milliseconds.
type RequestRow struct {
	Index int `json:"index"`
	// IntendedMS is when the schedule meant it to be sent; SentMS when it
	// was (both from the run's start); E2ELMS until its answer ended.
	IntendedMS   float64   `json:"intended_ms"`
	SentMS       float64   `json:"sent_ms"`
	Outcome      string    `json:"outcome"`
	Status       int       `json:"status,omitempty"`
	Error        string    `json:"error,omitempty"`
	InputTokens  int       `json:"input_tokens"`
	OutputTokens int       `json:"output_tokens"`
	TTFTMS       float64   `json:"ttft_ms"`
	TPOTMS       float64   `json:"tpot_ms"`
	E2ELMS       float64   `json:"e2el_ms"`
	ITLMS        []float64 `json:"itl_ms,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// NewRequestRow is res as a row (Index is the caller's).
func NewRequestRow(res *loadgen.Result) RequestRow {
	row := RequestRow{IntendedMS: ms(res.Arrival.At), SentMS: ms(res.Sent), Outcome: res.Outcome.String(), Status: res.Status,
		InputTokens: res.InputTokens, OutputTokens: res.OutputTokens, TTFTMS: ms(res.TTFT()), TPOTMS: ms(res.TPOT())}
	if res.Done > res.Sent && res.Sent > 0 {
		row.E2ELMS = ms(res.E2EL())
	}
	if res.Err != nil {
		row.Error = res.Err.Error()
	}
	for _, d := range res.ITLs(nil) {
		row.ITLMS = append(row.ITLMS, ms(d))
	}
	return row
}

// ReadRequestRows reads a task's requests.jsonl in send order, streamed
// within limitio.Metrics' limits; lines that are not rows are skipped.
func ReadRequestRows(ctx context.Context, path string) ([]RequestRow, error) {
	f, err := limitio.Open(ctx, path, limitio.Metrics)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []RequestRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), limitio.Metrics.Line+2) // the reader bounds lines
	for sc.Scan() {
		var r RequestRow
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			rows = append(rows, r)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Slice(rows, func(a, b int) bool { return rows[a].SentMS < rows[b].SentMS })
	return rows, nil
}

// rowWriter writes per-request rows from the sender goroutines.
type rowWriter struct {
	mu  sync.Mutex
	f   *os.File
	bw  *bufio.Writer
	n   int
	err error
}

func newRowWriter(path string) (*rowWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &rowWriter{f: f, bw: bufio.NewWriter(f)}, nil
}

func (w *rowWriter) write(res *loadgen.Result) {
	row := NewRequestRow(res)
	w.mu.Lock()
	defer w.mu.Unlock()
	row.Index = w.n
	w.n++
	b, _ := json.Marshal(row)
	if _, err := w.bw.Write(append(b, '\n')); err != nil && w.err == nil {
		w.err = err
	}
}

// close flushes and closes the file; a second call does nothing.
func (w *rowWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
	if err := w.f.Close(); err != nil && w.err == nil {
		w.err = err
	}
	w.f = nil
	return w.err
}
