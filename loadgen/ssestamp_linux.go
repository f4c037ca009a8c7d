//go:build linux

package loadgen

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// kernelStamps asks the kernel to time-stamp every segment c receives
// (SO_TIMESTAMPNS) and returns the raw connection to read it with, or nil
// when the option is refused. With it an event's time is when its bytes
// reached the socket, not when this process got round to reading them: a
// client busy with thousands of streams reads late, and the kernel's stamp
// does not move with it.
func kernelStamps(c net.Conn) syscall.RawConn {
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

// readStamped is one recvmsg(2): the data, and the receive time of the
// last segment it took (Unix ns; 0 when the kernel gave none).
func readStamped(raw syscall.RawConn, p, oob []byte) (n int, wall int64, err error) {
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
	return n, cmsgTimestamp(oob[:oobn]), nil
}

// cmsgTimestamp finds SCM_TIMESTAMPNS in control messages, without
// allocating (syscall.ParseSocketControlMessage would).
func cmsgTimestamp(b []byte) int64 {
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
