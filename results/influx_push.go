package results

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
)

// PushResult is what one push delivered.
type PushResult struct {
	Path      string `json:"path"`
	Delivered int64  `json:"delivered"` // points acknowledged by InfluxDB
	Rejected  int64  `json:"rejected"`  // points refused (4xx); kept in rejected-*.lp
	Pending   int64  `json:"pending"`   // points still in the spool
}

// PushSpool delivers the spool in dir to InfluxDB, oldest first, after
// checking the connection. Batches the server rejects (400) are set aside
// and reported; transient failures stop the push with the rest still
// spooled.
func PushSpool(ctx context.Context, cfg InfluxConfig, dir string) (PushResult, error) {
	cfg = cfg.withDefaults()
	res := PushResult{Path: dir}
	if err := Check(ctx, cfg); err != nil {
		return res, err
	}
	sp, err := OpenSpool(dir)
	if err != nil {
		return res, err
	}
	defer sp.Close()
	c := NewInfluxClient(cfg)
	defer c.Close()
	w := c.WriteAPIBlocking(cfg.Org, cfg.Bucket)
	var rejected []error
	_, err = sp.Replay(ctx, cfg.BatchSize, func(ctx context.Context, b []byte, n int) error {
		wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		werr := w.WriteRecord(wctx, string(b))
		if werr == nil {
			res.Delivered += int64(n)
			return nil
		}
		we := classifyWriteError(werr, n)
		if we.kind == failRejected {
			res.Rejected += int64(n)
			name := filepath.Join(dir, fmt.Sprintf("rejected-%d.lp", time.Now().UnixNano()))
			if err := os.WriteFile(name, b, 0o600); err != nil {
				return fmt.Errorf("%w; and saving the rejected batch: %v", we, err)
			}
			we.msg += " (batch kept in " + name + ")"
			rejected = append(rejected, we)
			return nil
		}
		return we
	})
	res.Pending = sp.Pending()
	return res, errors.Join(err, errors.Join(rejected...))
}

// PushFile sends a line-protocol file (a task's local store) to InfluxDB in
// batches. Points are idempotent, so pushing a file again rewrites the same
// points rather than adding to them.
func PushFile(ctx context.Context, cfg InfluxConfig, path string) (PushResult, error) {
	cfg = cfg.withDefaults()
	res := PushResult{Path: path}
	f, err := limitio.Open(ctx, path, limitio.Metrics)
	if err != nil {
		return res, err
	}
	defer f.Close()
	c := NewInfluxClient(cfg)
	defer c.Close()
	w := c.WriteAPIBlocking(cfg.Org, cfg.Bucket)
	var errs []error
	send := func(b []byte, n int) error {
		if n == 0 {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		if werr := w.WriteRecord(wctx, string(b)); werr != nil {
			we := classifyWriteError(werr, n)
			if we.kind != failRejected {
				return we
			}
			res.Rejected += int64(n)
			errs = append(errs, we)
			return nil
		}
		res.Delivered += int64(n)
		return nil
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var buf []byte
	n := 0
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' && len(bytes.TrimSpace(line)) > 0 && line[0] != '#' {
			buf = append(buf, line...)
			n++
		}
		if n >= cfg.BatchSize || len(buf) >= replayBatchBytes { // long lines: bound the batch's bytes too
			if serr := send(buf, n); serr != nil {
				return res, serr
			}
			buf, n = buf[:0], 0
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			var le *limitio.Error
			if errors.As(err, &le) {
				return res, err // names the file and the line
			}
			return res, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if err := send(buf, n); err != nil {
		return res, err
	}
	return res, errors.Join(errs...)
}

// PushExperiment delivers every task's spool under an experiment directory
// to InfluxDB, oldest first, and with all every task's local store too. It
// returns what each file delivered; the error joins every file's error.
func PushExperiment(ctx context.Context, cfg InfluxConfig, expDir string, all bool) ([]PushResult, error) {
	dir := layout.Experiment(expDir)
	spools, _ := filepath.Glob(filepath.Join(dir.TaskGlob(), layout.InfluxSpoolDir))
	var stores []string
	if all {
		stores, _ = filepath.Glob(filepath.Join(dir.TaskGlob(), layout.MetricsFile))
	}
	sort.Strings(spools)
	sort.Strings(stores)
	var out []PushResult
	var errs []error
	for _, files := range []struct {
		paths []string
		push  func(context.Context, InfluxConfig, string) (PushResult, error)
	}{{spools, PushSpool}, {stores, PushFile}} {
		for _, p := range files.paths {
			r, err := files.push(ctx, cfg, p)
			out = append(out, r)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
			}
		}
	}
	return out, errors.Join(errs...)
}
