//go:build linux

// Package rxstamp reads TCP connections with the kernel's receive
// timestamps (SO_TIMESTAMPNS): when the bytes reached the socket, not when
// a busy process got round to reading them. The load generator stamps
// stream events with it; the simulated server stamps request arrivals.
package rxstamp

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// Conn reads one connection with receive timestamps. It is used by one
// goroutine at a time, and allocates nothing per read.
type Conn struct {
	raw  syscall.RawConn
	recv func(fd uintptr) bool // c.recvmsg, bound once
	msg  syscall.Msghdr
	iov  syscall.Iovec
	oob  [64]byte
	n    int
	err  syscall.Errno
}

// Enable asks the kernel to time-stamp every segment c receives
// (SO_TIMESTAMPNS) and returns the reader for it, or nil when c is not TCP
// or the option is refused.
func Enable(c net.Conn) *Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return nil
	}
	r := &Conn{raw: raw}
	r.recv = r.recvmsg
	return r
}

func (c *Conn) recvmsg(fd uintptr) bool {
	n, _, e := syscall.Syscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&c.msg)), 0)
	c.n, c.err = int(n), e
	return e != syscall.EAGAIN
}

// Read is one recvmsg(2), waiting through the runtime's poller (so
// deadlines hold): the data, and the receive time of the last segment it
// took (Unix ns; 0 when the kernel gave none). At the end of the stream it
// returns io.EOF.
func (c *Conn) Read(p []byte) (n int, wall int64, err error) {
	if len(p) == 0 {
		return 0, 0, nil
	}
	c.iov.Base = &p[0]
	c.iov.SetLen(len(p))
	c.msg.Iov = &c.iov
	c.msg.Iovlen = 1
	c.msg.Control = &c.oob[0]
	c.msg.SetControllen(len(c.oob))
	c.msg.Flags = 0
	err = c.raw.Read(c.recv)
	c.iov.Base = nil // don't keep p alive
	if err == nil && c.err != 0 {
		err = c.err
	}
	if err != nil {
		return 0, 0, err
	}
	if c.n == 0 {
		return 0, 0, io.EOF
	}
	wall = timestamp(c.oob[:c.msg.Controllen])
	if wall != 0 {
		// Until the kernel has switched receive timestamps on (deferred
		// work after the first socket asks), a segment may carry the
		// sender's monotonic departure time instead: keep only stamps
		// that can be wall-clock receive times.
		if now := time.Now().UnixNano(); wall > now+int64(time.Millisecond) || wall < now-int64(time.Minute) {
			wall = 0
		}
	}
	return c.n, wall, nil
}

// timestamp finds SCM_TIMESTAMPNS in control messages, without
// allocating (syscall.ParseSocketControlMessage would).
func timestamp(b []byte) int64 {
	const hdr = int(unsafe.Sizeof(syscall.Cmsghdr{}))
	for len(b) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < hdr || l > len(b) {
			return 0
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(b[hdr:]))
			nsec := int64(binary.NativeEndian.Uint64(b[hdr+8:]))
			return sec*int64(time.Second) + nsec
		}
		l = (l + 7) &^ 7 // CMSG_ALIGN on 64-bit
		if l > len(b) {
			return 0
		}
		b = b[l:]
	}
	return 0
}
