package loadgen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// errSSEDone stops ReadSSE at the OpenAI "[DONE]" sentinel.
var errSSEDone = errors.New("sse: done")

// maxSSELine bounds one line of an event stream (a JSON chunk).
const maxSSELine = 4 << 20

// ReadSSE reads a server-sent-events stream and calls fn with the data of
// each event as soon as the event is complete (at its terminating blank
// line, or at the end of the stream). Multi-line data is joined with "\n";
// comment lines and fields other than data are ignored; CRLF and LF line
// endings are both accepted. It stops at the first error fn returns and
// returns that error.
func ReadSSE(r io.Reader, fn func(data []byte) error) error {
	br := bufio.NewReaderSize(r, 4096)
	var data []byte
	have := false
	for {
		line, err := readLine(br)
		if len(line) == 0 && err == nil {
			if have {
				if ferr := fn(data); ferr != nil {
					return ferr
				}
				data, have = data[:0], false
			}
			continue
		}
		if len(line) > 0 {
			if line[0] != ':' {
				field, value := line, []byte(nil)
				if i := bytes.IndexByte(line, ':'); i >= 0 {
					field, value = line[:i], line[i+1:]
					if len(value) > 0 && value[0] == ' ' {
						value = value[1:]
					}
				}
				if string(field) == "data" {
					if have {
						data = append(data, '\n')
					}
					data = append(data, value...)
					have = true
				}
			}
		}
		if err != nil {
			if err == io.EOF {
				if have {
					return fn(data)
				}
				return nil
			}
			return err
		}
	}
}

// readLine returns one line without its line ending. The returned slice is
// only valid until the next call.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		buf := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			line, err = br.ReadSlice('\n')
			buf = append(buf, line...)
			if len(buf) > maxSSELine {
				return nil, fmt.Errorf("sse: line longer than %d bytes", maxSSELine)
			}
		}
		line = buf
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if err == io.EOF && len(line) == 0 {
		return nil, io.EOF
	}
	return line, err
}

type chunkUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

type parsedChunk struct {
	content bool // the chunk carries generated text
	usage   *chunkUsage
}

// parseChunk decodes one OpenAI completion or chat-completion chunk (or a
// whole non-streamed answer).
func parseChunk(b []byte) (parsedChunk, error) {
	var c struct {
		Choices []struct {
			Text  string `json:"text"`
			Delta struct {
				Content          string `json:"content"`
				ReasoningContent string `json:"reasoning_content"`
			} `json:"delta"`
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage *chunkUsage     `json:"usage"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return parsedChunk{}, fmt.Errorf("bad stream chunk %.80q: %w", b, err)
	}
	if len(c.Error) > 0 && string(c.Error) != "null" {
		return parsedChunk{}, fmt.Errorf("server error in stream: %.200s", c.Error)
	}
	p := parsedChunk{usage: c.Usage}
	for _, ch := range c.Choices {
		if ch.Text != "" || ch.Delta.Content != "" || ch.Delta.ReasoningContent != "" || ch.Message.Content != "" {
			p.content = true
		}
	}
	return p, nil
}
