package simserver

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/gpuorch/gpuorch/internal/rxstamp"
)

// With ground-truth recording, accepted connections are read with the
// kernel's receive timestamps, so a request's arrival is when its bytes
// reached the socket, not when the server, perhaps behind, got round to
// it: the difference is the server's own delay, and belongs to its TTFT.

type rxListener struct{ net.Listener }

func (l rxListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	raw := rxstamp.Enable(c)
	if raw == nil {
		return c, nil
	}
	return &rxConn{Conn: c, raw: raw}, nil
}

// rxConn remembers when the last bytes it read arrived. net/http reads a
// connection from one goroutine at a time.
type rxConn struct {
	net.Conn
	raw    *rxstamp.Conn
	lastRx atomic.Int64 // Unix ns
}

func (c *rxConn) Read(p []byte) (int, error) {
	n, wall, err := c.raw.Read(p)
	if n > 0 {
		if wall == 0 {
			wall = time.Now().UnixNano()
		}
		c.lastRx.Store(wall)
	}
	return n, err
}

type rxConnKey struct{}

// connContext gives handlers their connection (http.Server.ConnContext).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if rc, ok := c.(*rxConn); ok {
		return context.WithValue(ctx, rxConnKey{}, rc)
	}
	return ctx
}

// arrival is when the request read so far on ctx's connection reached the
// socket, on now's clock (monotonic reading kept); now itself without one.
func arrival(ctx context.Context, now time.Time) time.Time {
	rc, _ := ctx.Value(rxConnKey{}).(*rxConn)
	if rc == nil {
		return now
	}
	rx := rc.lastRx.Load()
	d := time.Duration(now.UnixNano() - rx)
	if rx == 0 || d < 0 || d > time.Minute {
		return now
	}
	return now.Add(-d)
}
