package rxstamp

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

func TestReadStamps(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("kernel receive timestamps are Linux-only")
	}
	c, s := loopbackPair(t)
	raw := Enable(c)
	if raw == nil {
		t.Fatal("SO_TIMESTAMPNS refused on loopback TCP")
	}
	// The kernel turns stamping on in deferred work after the first
	// socket asks; until then Read reports no stamp (0), never a wrong one.
	time.Sleep(20 * time.Millisecond)
	before := time.Now().UnixNano()
	s.Write([]byte("hello"))
	after := time.Now().UnixNano()
	time.Sleep(50 * time.Millisecond) // read late: the stamp is the arrival
	buf := make([]byte, 16)
	n, wall, err := raw.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if wall < before-int64(time.Millisecond) || wall > after+int64(10*time.Millisecond) {
		t.Errorf("stamp %d ns after the write began (write took %d ns); read 50 ms later", wall-before, after-before)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := raw.Read(buf); err == nil {
		t.Error("no data, deadline passed: want an error")
	}
	c.SetReadDeadline(time.Time{})
	s.Close()
	if _, _, err := raw.Read(buf); err != io.EOF {
		t.Errorf("after the peer closed: %v, want io.EOF", err)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if Enable(p1) != nil {
		t.Error("Enable on a pipe: want nil")
	}
}

func TestTimestampParsing(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 2, 3}, make([]byte, 16), {255, 255, 255, 255, 255, 255, 255, 255, 1, 0, 0, 0, 35, 0, 0, 0}} {
		if ts := timestamp(b); ts != 0 {
			t.Errorf("%v: %d, want 0 (no timestamp message)", b, ts)
		}
	}
}

func TestReadAllocatesNothing(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("kernel receive timestamps are Linux-only")
	}
	c, s := loopbackPair(t)
	raw := Enable(c)
	buf, x := make([]byte, 16), []byte("x")
	allocs := testing.AllocsPerRun(100, func() {
		s.Write(x)
		if _, _, err := raw.Read(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("%v allocations per write and read, want 0 on the reading side", allocs)
	}
}

// loopbackPair is both ends of a loopback TCP connection, closed when the
// test ends.
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c, s
}
