//go:build !linux

package loadgen

import (
	"errors"
	"net"
	"syscall"
)

// Kernel receive timestamps are Linux-only; elsewhere events are stamped
// when they are read.
func kernelStamps(net.Conn) syscall.RawConn { return nil }

func readStamped(syscall.RawConn, []byte, []byte) (int, int64, error) {
	return 0, 0, errors.New("kernel timestamps are Linux-only")
}
