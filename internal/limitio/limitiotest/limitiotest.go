// Package limitiotest gives each reader of gpuorch's input files the same
// three hostile inputs to be tested with: a file over its kind's size
// limit, a file whose first line is over the line limit, and /dev/zero.
// Imported by tests only.
package limitiotest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/limitio"
)

// Case is one hostile input.
type Case struct {
	Name string
	Path string
	Want string // what the error must say
}

// Cases returns the hostile inputs for files of kind lim, created under
// t's temporary directory with base name name (a reader may care about the
// extension). The big files are sparse: they cost no disk.
func Cases(t testing.TB, lim limitio.Limits, name string) []Case {
	t.Helper()
	dir := t.TempDir()
	var cs []Case
	if lim.Size > 0 {
		p := filepath.Join(dir, "over-size-"+name)
		sparse(t, p, "", lim.Size+1)
		cs = append(cs, Case{"over-size file", p, "more than " + limitio.Bytes(lim.Size) + ", the limit for "})
	}
	p := filepath.Join(dir, "long-line-"+name)
	// A first line of Line+1 bytes, then a normal one.
	sparse(t, p, strings.Repeat("x", lim.Line+1)+"\nok\n", 0)
	cs = append(cs, Case{"over-long line", p, ":1: line longer than " + limitio.Bytes(int64(lim.Line)) + ", the limit for "})
	cs = append(cs, Case{"/dev/zero", "/dev/zero", ": not a regular file but a character device"})
	return cs
}

func sparse(t testing.TB, path, content string, size int64) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if size > 0 {
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
	}
}

// Check fails t unless err is the limit error c wants: it names the file
// and the limit, and is bad input (exit 2).
func Check(t testing.TB, c Case, err error) {
	t.Helper()
	var le *limitio.Error
	switch {
	case err == nil:
		t.Fatalf("%s: no error", c.Name)
	case !errors.As(err, &le) || !errors.Is(err, errkind.ErrInvalid):
		t.Fatalf("%s: %v: not a limit error of kind invalid", c.Name, err)
	case !strings.Contains(err.Error(), c.Path) || !strings.Contains(err.Error(), c.Want):
		t.Fatalf("%s: %v\nwant it to name %s and say %q", c.Name, err, c.Path, c.Want)
	}
}

// At puts c's file at path (a symbolic link to it), for readers that take
// a directory and read a file of a fixed name in it; errors then name path.
func At(t testing.TB, c Case, path string) Case {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(c.Path, path); err != nil {
		t.Fatal(err)
	}
	c.Path = path
	return c
}
