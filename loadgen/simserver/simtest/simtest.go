// Package simtest starts the simulated model server inside a test, on a
// real loopback listener, for the tests of the packages that load it.
package simtest

import (
	"context"
	"net"
	"testing"

	"github.com/gpuorch/gpuorch/loadgen/simserver"
)

// Start serves cfg on 127.0.0.1 until the test ends and returns the
// server's base URL. A server that ends with an error fails the test.
func Start(tb testing.TB, cfg simserver.Config) string {
	tb.Helper()
	srv, err := simserver.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("sim-server: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}
