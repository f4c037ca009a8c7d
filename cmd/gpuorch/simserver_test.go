package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSimServerCommand runs `gpuorch sim-server` in-process on a free
// port: the address file appears, the models answer, and cancelling the
// context (what SIGINT/SIGTERM do) stops it cleanly.
func TestSimServerCommand(t *testing.T) {
	addrFile := filepath.Join(t.TempDir(), "addr")
	cfg := filepath.Join(t.TempDir(), "models.toml")
	if err := os.WriteFile(cfg, []byte("[[llm]]\nname = \"chat\"\ntpot = \"1ms\"\nprefill_per_token = \"1us\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app := newApp()
	var stderr bytes.Buffer
	app.ErrWriter = &stderr
	done := make(chan error, 1)
	go func() {
		done <- app.RunContext(ctx, []string{"gpuorch", "sim-server", "--config", cfg, "--listen", "127.0.0.1:0",
			"--addr-file", addrFile, "--dnn", "m:copies=3:b1=1ms"})
	}()
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			addr = strings.TrimSpace(string(b))
		}
		select {
		case err := <-done:
			t.Fatalf("sim-server exited early: %v; stderr: %s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no address file after 10s")
		}
	}
	for _, c := range []struct{ path, body string }{
		{"/v2/models/m-2/infer", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`},
		{"/v1/completions", `{"model":"chat","prompt":"a b","max_tokens":2}`},
	} {
		resp, err := http.Post("http://"+addr+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", c.path, resp.StatusCode, b)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sim-server: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim-server did not stop within 10s of cancellation")
	}
	if !strings.Contains(stderr.String(), "listening on "+addr) {
		t.Errorf("stderr %q lacks %q", stderr.String(), "listening on "+addr)
	}
}

func TestSimServerCommandUsageErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[[dnn]]\nname = \"m\"\nbatch = 4\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dnn", "m:b1=fast"}, "invalid duration"},
		{[]string{"--config", bad}, bad + ":3:"},
		{[]string{"--dnn", "m", "--fail-rate", "2"}, "fail_rate"},
		{[]string{"--dnn", "m", "extra"}, "no arguments"},
	} {
		app := newApp()
		app.ErrWriter = io.Discard
		err := app.RunContext(context.Background(), append([]string{"gpuorch", "sim-server"}, tc.args...))
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want exit %d mentioning %q", tc.args, err, exitUsage, tc.want)
		}
	}
}
