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

// Enable asks the kernel to time-stamp every segment c receives
// (SO_TIMESTAMPNS) and returns the raw connection to read it with, or nil
// when c is not TCP or the option is refused.
func Enable(c net.Conn) syscall.RawConn {
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
	return raw
}

// Read is one recvmsg(2) on raw, waiting through the runtime's poller (so
// deadlines hold): the data, and the receive time of the last segment it
// took (Unix ns; 0 when the kernel gave none). oob is scratch for the
// control message (OOBSize bytes). At the end of the stream it returns
// io.EOF.
func Read(raw syscall.RawConn, p, oob []byte) (n int, wall int64, err error) {
	var oobn int
	var rerr error
	err = raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), p, oob, 0)
		return rerr != syscall.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, 0, err
	}
	if n == 0 && len(p) > 0 {
		return 0, 0, io.EOF
	}
	wall = timestamp(oob[:oobn])
	if wall != 0 {
		// Until the kernel has switched receive timestamps on (deferred
		// work after the first socket asks), a segment may carry the
		// sender's monotonic departure time instead: keep only stamps
		// that can be wall-clock receive times.
		if now := time.Now().UnixNano(); wall > now+int64(time.Millisecond) || wall < now-int64(time.Minute) {
			wall = 0
		}
	}
	return n, wall, nil
}

// OOBSize is enough room for the timestamp's control message.
const OOBSize = 64

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
