package llmbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/layout"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/orchestrator"
	"github.com/gpuorch/gpuorch/perfmodel"
	"github.com/gpuorch/gpuorch/results"
	"github.com/gpuorch/gpuorch/sbatch"
)

// CheckEndpoint is the readiness check of an OpenAI-compatible endpoint:
// GET <base>/v1/models with the credential as a bearer token. A 401 or 403
// means the endpoint rejected the credential; no answer wraps
// errkind.ErrUnavailable.
func CheckEndpoint(ctx context.Context, base, secret string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/v1/models", nil)
	if err != nil {
		return err
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return fmt.Errorf("%w: readiness check of %s: %v", errkind.ErrUnavailable, base, redactErr(err, secret))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("readiness check: %s rejected the credential (HTTP %d)", base, resp.StatusCode)
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("readiness check: GET %s/v1/models answered HTTP %d", strings.TrimRight(base, "/"), resp.StatusCode)
	}
	return nil
}

func redactErr(err error, secret string) string {
	s := err.Error()
	if secret != "" {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}

// Create makes the experiment directory of a benchmark: the plan and
// manifests (Create), bench-spec.json, bench.json, the wrapper script that
// executors run, and each task's predicted values when bt has them.
// binary is the gpuorch the wrapper calls.
func Create(home string, spec *Spec, plan *orchestrator.Plan, bt *TaskInfo, binary string) (*orchestrator.Experiment, error) {
	exp, err := orchestrator.Create(home, nil, plan, plan.Run.Executor)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteJSON(layout.Experiment(exp.Dir).BenchSpec(), spec, 0o644); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteJSON(layout.Experiment(exp.Dir).BenchTask(), bt, 0o644); err != nil {
		return nil, err
	}
	script := "#!/bin/sh\n# gpuorch bench: start the model server, then the load (see bench.json)\nGPUORCH_BIN=" + sbatch.Quote(binary) + "\nexport GPUORCH_BIN\nexec \"$GPUORCH_BIN\" bench task \"$@\"\n"
	if err := atomicfile.WriteFile(layout.Experiment(exp.Dir).BenchWrapper(), []byte(script), 0o755); err != nil {
		return nil, err
	}
	if len(bt.Predictions) == len(exp.Plan.Tasks) {
		for i, t := range exp.Plan.Tasks {
			if err := WritePrediction(exp.TaskDir(i), exp.ID(), &t, bt.Predictions[i]); err != nil {
				return nil, err
			}
		}
	}
	return exp, nil
}

// PredictionPoint is a prediction as a point with the task's tags.
func PredictionPoint(expID string, t *orchestrator.Task, p perfmodel.Prediction) results.Point {
	tags := map[string]string{
		results.TagExperiment: expID, results.TagTask: t.Name, results.TagWorkload: t.Workload,
		results.TagProtocol: t.Config.Target.Protocol, "concurrency": strconv.Itoa(p.Concurrency),
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return results.Point{Measurement: results.MeasServingPrediction, Tags: tags, Time: time.Now().UTC(), Fields: map[string]any{
		"ttft_ms": ms(p.TTFT), "tpot_ms": ms(p.TPOT), "e2el_ms": ms(p.E2EL),
		"output_tokens_per_s": p.OutputTokensPerS, "requests_per_s": p.RequestsPerS,
		"batch": int64(p.Batch), "kv_capacity": int64(p.KVCapacity), "queue_ms": p.QueueS * 1000,
	}}
}

// WritePrediction stores one task's prediction in its prediction.lp.
func WritePrediction(taskDir, expID string, t *orchestrator.Task, p perfmodel.Prediction) error {
	lf, err := results.OpenLineFile(layout.Task(taskDir).Prediction())
	if err != nil {
		return err
	}
	if err := lf.Write(context.Background(), PredictionPoint(expID, t, p)); err != nil {
		lf.Close()
		return err
	}
	return lf.Close()
}

func readJSON(path string, v any) error {
	b, err := limitio.ReadFile(path, limitio.Record)
	if err != nil {
		return err // names the file
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// ReadTaskInfo reads bench.json from an experiment directory.
func ReadTaskInfo(dir string) (*TaskInfo, error) {
	var bt TaskInfo
	if err := readJSON(layout.Experiment(dir).BenchTask(), &bt); err != nil {
		return nil, err
	}
	return &bt, nil
}

// Server is a model server a benchmark task started.
type Server struct {
	URL  string
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

// StartServer starts argv (each "{port}" replaced by a free loopback port;
// argv[0] "gpuorch" = self) with $PORT and $GPUORCH_SERVER_PORT set, output
// to logPath, and waits until GET /v1/models answers 200, the process exits,
// or ready passes.
func StartServer(ctx context.Context, argv []string, self, logPath string, ready time.Duration) (*Server, error) {
	if len(argv) == 0 {
		return nil, errors.New("no server command")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = strings.ReplaceAll(a, "{port}", strconv.Itoa(port))
	}
	if args[0] == "gpuorch" {
		args[0] = self
	}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "GPUORCH_SERVER_PORT="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start model server %s: %w", args[0], err)
	}
	s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, done: make(chan error, 1), log: lf}
	go func() { s.done <- cmd.Wait() }()
	if ready <= 0 {
		ready = 10 * time.Minute
	}
	deadline := time.Now().Add(ready)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for {
		resp, err := client.Get(s.URL + "/v1/models")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case err := <-s.done:
			lf.Close()
			return nil, fmt.Errorf("model server exited before it was ready (%v); see %s", err, logPath)
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("%w: model server not ready after %v (GET %s/v1/models); see %s", errkind.ErrUnavailable, ready, s.URL, logPath)
		}
	}
}

// Stop ends the server: SIGTERM to its process group, SIGKILL after 10 s.
func (s *Server) Stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	pg := s.cmd.Process.Pid
	_ = syscall.Kill(-pg, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pg, syscall.SIGKILL)
		<-s.done
	}
	s.log.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
