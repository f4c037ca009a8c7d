//go:build !linux

package rxstamp

import (
	"errors"
	"net"
)

// Conn: kernel receive timestamps are Linux-only.
type Conn struct{}

// Enable returns nil: there are no receive timestamps here.
func Enable(net.Conn) *Conn { return nil }

// Read is never called on a nil Conn.
func (c *Conn) Read([]byte) (int, int64, error) {
	return 0, 0, errors.New("kernel timestamps are Linux-only")
}
