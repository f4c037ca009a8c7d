//go:build !linux

package rxstamp

import (
	"errors"
	"net"
	"syscall"
)

// Enable: kernel receive timestamps are Linux-only; elsewhere there are none.
func Enable(net.Conn) syscall.RawConn { return nil }

// OOBSize is the scratch size Read wants.
const OOBSize = 64

// Read is never called where Enable returns nil.
func Read(syscall.RawConn, []byte, []byte) (int, int64, error) {
	return 0, 0, errors.New("kernel timestamps are Linux-only")
}
