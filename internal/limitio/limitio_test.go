package limitio

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

var small = Limits{What: "test file", Size: 100, Line: 10}

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cases := []struct {
		name, path string
		want       string // content, or the error's message
		limit      bool   // an *Error
	}{
		{"within limits", write(t, "ok", "line one\nline two\n"), "line one\nline two\n", false},
		{"exactly at the limits", write(t, "edge", strings.Repeat(strings.Repeat("x", 10)+"\n", 9)+"x"), strings.Repeat(strings.Repeat("x", 10)+"\n", 9) + "x", false},
		{"no final newline", write(t, "nonl", "abc"), "abc", false},
		{"the null device is empty", os.DevNull, "", false},
		{"over the size", write(t, "big", strings.Repeat("x\n", 51)), "big: more than 100 bytes, the limit for a test file", true},
		{"a line over the limit", write(t, "long", "short\nok\n"+strings.Repeat("y", 11)+"\n"), "long:3: line longer than 10 bytes, the limit for a test file", true},
		{"a last line over the limit", write(t, "longlast", "short\n"+strings.Repeat("y", 11)), "longlast:2: line longer than 10 bytes", true},
		{"/dev/zero", "/dev/zero", "/dev/zero: not a regular file but a character device; want a test file", true},
		{"a directory", dir, dir + ": not a regular file but a directory", true},
		{"a named pipe, with no writer", fifo, "fifo: not a regular file but a named pipe", true},
		{"a socket", sock, "sock: not a regular file but a socket", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := ReadFile(c.path, small)
			if !c.limit {
				if err != nil || string(b) != c.want {
					t.Fatalf("got %q, %v; want %q", b, err, c.want)
				}
				return
			}
			var le *Error
			if !errors.As(err, &le) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %q, %v; want an *Error %q", b, err, c.want)
			}
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Fatalf("%v: not of kind invalid", err)
			}
		})
	}
}

func TestMissingFileKeepsItsKind(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "nope"), small)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want fs.ErrNotExist", err)
	}
	long := "/" + strings.Repeat("d", 1<<20)
	_, err = ReadFile(long, small)
	if err == nil || len(err.Error()) > 1024 {
		t.Fatalf("a 1 MB path is echoed in full: %d bytes", len(err.Error()))
	}
}

// A file over the size limit is refused from its size alone: a sparse
// file far over the limit costs nothing to refuse.
func TestOverSizeRefusedBeforeReading(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil { // 1 TiB of holes
		t.Skipf("no sparse files here: %v", err)
	}
	f.Close()
	_, err = ReadFile(p, Config)
	if err == nil || !strings.Contains(err.Error(), "more than 16 MiB, the limit for a config file") {
		t.Fatalf("got %v", err)
	}
}

func TestReaderStreams(t *testing.T) {
	// bufio on top sees the lines before the bad one, then the error.
	r := NewReader(context.Background(), strings.NewReader("a\nbb\n"+strings.Repeat("c", 11)+"\nd\n"), "<stdin>", small)
	br := bufio.NewReaderSize(r, 16)
	var got []string
	var err error
	for {
		var l string
		l, err = br.ReadString('\n')
		if err != nil {
			break
		}
		got = append(got, l)
	}
	if strings.Join(got, "") != "a\nbb\n" || err == nil || err.Error() != "<stdin>:3: line longer than 10 bytes, the limit for a test file" {
		t.Fatalf("got %q, %v", got, err)
	}
	// Once failed, always failed.
	if _, err2 := r.Read(make([]byte, 4)); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("second read: %v", err2)
	}
}

func TestReaderSizeOnAStream(t *testing.T) {
	// Standard input has no size to check up front: the count stops it.
	_, err := ReadAll(context.Background(), strings.NewReader(strings.Repeat("0123456\n", 13)), "<stdin>", small)
	if err == nil || err.Error() != "<stdin>: more than 100 bytes, the limit for a test file" {
		t.Fatalf("got %v", err)
	}
	b, err := ReadAll(context.Background(), strings.NewReader("ok\n"), "<stdin>", small)
	if err != nil || string(b) != "ok\n" {
		t.Fatalf("got %q, %v", b, err)
	}
}

// /dev/zero through a reader (what `gpuorch run - < /dev/zero` gives):
// the first read past the line limit ends it.
func TestDevZeroAsAStream(t *testing.T) {
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	_, err = ReadAll(context.Background(), f, "<stdin>", Limits{What: "config file", Size: 16 << 20, Line: 64 << 10})
	if err == nil || !strings.Contains(err.Error(), "<stdin>:1: line longer than 64 KiB") {
		t.Fatalf("got %v", err)
	}
	// No line limit: the size limit ends it.
	_, err = ReadAll(context.Background(), f, "<stdin>", Limits{What: "blob", Size: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "<stdin>: more than 1 MiB") {
		t.Fatalf("got %v", err)
	}
}

// An endless stream with neither limit (a log) still stops when its
// context is done.
func TestReaderStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := NewReader(ctx, zeroLines{}, "log", Limits{What: "log", Line: 100})
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, r)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read did not stop after cancel")
	}
}

// ReadAll returns at once when its context is done, even while a read
// waits (a terminal, a silent pipe).
func TestReadAllStopsWhileAReadWaits(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := ReadAll(ctx, pr, "<stdin>", Config)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadAll waited for the read")
	}
}

type zeroLines struct{}

func (zeroLines) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
		if i%50 == 49 {
			p[i] = '\n'
		}
	}
	return len(p), nil
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{100: "100 bytes", 64 << 10: "64 KiB", 16 << 20: "16 MiB", 1 << 30: "1 GiB", 1<<20 + 1: "1048577 bytes"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// FuzzReader: whatever the chunking, the reader passes exactly the bytes
// within the limits and names the first line over the limit.
func FuzzReader(f *testing.F) {
	f.Add([]byte("a\nbb\nccc\n"), uint8(2), uint8(20), uint8(3))
	f.Add([]byte("0123456789\n\n\nx"), uint8(10), uint8(14), uint8(1))
	f.Add(make([]byte, 300), uint8(255), uint8(255), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, line, size, step uint8) {
		lim := Limits{What: "fuzz", Size: int64(size), Line: int(line)}
		if step == 0 {
			step = 1
		}
		// What the limits allow, line by line.
		wantLen, wantErr := len(data), ""
		n, col, ln := 0, 0, 1
		for i, c := range data {
			if c == '\n' {
				ln++
				col = 0
			} else if col++; lim.Line > 0 && col > lim.Line {
				wantLen, wantErr = i, "fuzz:"+itoa(ln)+": line longer than"
				break
			}
			if n++; lim.Size > 0 && int64(n) > lim.Size {
				wantLen, wantErr = i, "fuzz: more than"
				break
			}
		}
		r := NewReader(context.Background(), &stepReader{data, int(step)}, "fuzz", lim)
		got, err := io.ReadAll(r)
		if string(got) != string(data[:wantLen]) {
			t.Fatalf("passed %d bytes, want %d", len(got), wantLen)
		}
		switch {
		case wantErr == "" && err != nil:
			t.Fatalf("unexpected %v", err)
		case wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), wantErr)):
			t.Fatalf("got %v, want %q…", err, wantErr)
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }

// stepReader returns at most step bytes a read.
type stepReader struct {
	b    []byte
	step int
}

func (s *stepReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), s.step)], s.b)
	s.b = s.b[n:]
	return n, nil
}

func TestLineReader(t *testing.T) {
	l := NewLineReader(context.Background(), strings.NewReader("yes\n"+strings.Repeat("k", 11)+"\n"), "<stdin>", small)
	if s, err := l.ReadLine(); s != "yes\n" || err != nil {
		t.Fatalf("got %q, %v", s, err)
	}
	if _, err := l.ReadLine(); err == nil || err.Error() != "<stdin>:2: line longer than 10 bytes, the limit for a test file" {
		t.Fatalf("got %v", err)
	}
	// A terminal nobody types into: cancel ends the wait.
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	l = NewLineReader(ctx, pr, "<stdin>", small)
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := l.ReadLine(); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}
