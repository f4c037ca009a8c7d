package tomlstrict

import (
	"fmt"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// Error is a problem in a TOML input. It names the file (or the --set
// argument an override came from), the line (0 when there is none to point
// at) and the dotted key. It is bad input: errors.Is(err, errkind.ErrInvalid)
// holds, so the CLI exits with the usage code.
type Error struct {
	File string // the file, or "--set KEY=VALUE" for an override
	Line int    // 1-based; 0 when unknown
	Key  string // dotted key, e.g. "workload.rate"; "" for most syntax errors
	Msg  string
	Err  error // the cause, when there is one (a toml.ParseError for a syntax error)
}

// Error formats as "FILE:LINE: MSG", "FILE: MSG" without a line, and
// "LINE: MSG" for input read from bytes with no file name.
func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes every Error invalid input (errkind.ErrInvalid).
func (e *Error) Is(target error) bool { return target == errkind.ErrInvalid }
