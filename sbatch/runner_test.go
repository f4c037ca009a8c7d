package sbatch_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
	"github.com/gpuorch/gpuorch/internal/testgate"
	"github.com/gpuorch/gpuorch/sbatch"
)

// retryLog is a slog destination that counts the runner's retries.
type retryLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *retryLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *retryLog) retries() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), "slurm unreachable, retrying")
}

func (l *retryLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// hungConf is testgate.SlurmUnreachableConf with slurmctld's port on a listener
// that accepts connections and never answers, and a message timeout longer
// than the runner's: a controller that hangs.
func hungConf(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	env := testgate.SlurmUnreachableConf(t)
	path := strings.TrimPrefix(env, "SLURM_CONF=")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	conf := strings.Replace(string(b), "\nSlurmctldPort=9\n", "\nSlurmctldPort="+port+"\n", 1)
	conf = strings.Replace(conf, "\nMessageTimeout=1\n", "\nMessageTimeout=60\n", 1)
	if conf == string(b) || !strings.Contains(conf, "MessageTimeout=60") {
		t.Fatalf("testgate.SlurmUnreachableConf no longer sets SlurmctldPort=9 and MessageTimeout=1:\n%s", b)
	}
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return env
}

// TestRunnerTimeout runs Slurm's tools against a controller that never
// answers: each call ends at the runner's timeout as unavailable; a read is
// tried Attempts times, a change once.
func TestRunnerTimeout(t *testing.T) {
	testgate.Slurm(t)
	env := hungConf(t)
	tests := []struct {
		name     string
		argv     []string
		attempts int
	}{
		{"a read is retried", []string{"scontrol", "show", "config"}, 3},
		{"a change is not", []string{"scontrol", "requeue", "1"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log retryLog
			r := sbatch.Runner{Env: []string{env}, Timeout: time.Second, Attempts: 3, Backoff: 10 * time.Millisecond, Log: log.logger()}
			start := time.Now()
			_, err := r.Run(ctxT(t, 30*time.Second), tt.argv[0], tt.argv[1:]...)
			took := time.Since(start)
			var se *sbatch.Error
			if !errors.As(err, &se) || !errors.Is(err, errkind.ErrUnavailable) {
				t.Fatalf("err = %v, want an unavailable *sbatch.Error", err)
			}
			if want := tt.argv[0] + ": " + tt.argv[0] + " did not answer within 1s"; err.Error() != want {
				t.Errorf("message %q, want %q", err, want)
			}
			if !reflect.DeepEqual(se.Args, tt.argv) || se.ExitCode != -1 {
				t.Errorf("args %q exit %d, want %q and -1", se.Args, se.ExitCode, tt.argv)
			}
			if got := log.retries() + 1; got != tt.attempts {
				t.Errorf("%d attempts, want %d", got, tt.attempts)
			}
			if min := time.Duration(tt.attempts) * time.Second; took < min || took > min+5*time.Second {
				t.Errorf("took %v, want about %v", took, min)
			}
		})
	}
}

// TestRunnerUnreachable points Slurm's tools at a closed controller port:
// every failure is unavailable and quotes Slurm; reads and calls that surely
// never reached slurmctld (a connect failure) are retried, others are not.
func TestRunnerUnreachable(t *testing.T) {
	testgate.Slurm(t)
	env := testgate.SlurmUnreachableConf(t)
	tests := []struct {
		argv     []string
		want     string // in the message
		attempts int
	}{
		{[]string{"scontrol", "show", "node", "-o"}, "Unable to contact slurm controller", 3},
		{[]string{"squeue", "--noheader"}, "Unable to contact slurm controller", 3},
		{[]string{"sinfo"}, "Unable to contact slurm controller", 3},
		{[]string{"sbatch", "--parsable", "--hold", "--wrap", "true"}, "Unable to contact slurm controller", 3},
		{[]string{"srun", "-N1", "true"}, "Unable to contact slurm controller (connect failure)", 3},
		{[]string{"scontrol", "requeue", "1"}, "Unexpected message received for job 1", 1},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.argv, " "), func(t *testing.T) {
			var log retryLog
			r := sbatch.Runner{Env: []string{env}, Attempts: 3, Backoff: 10 * time.Millisecond, Log: log.logger()}
			_, err := r.Run(ctxT(t, 30*time.Second), tt.argv[0], tt.argv[1:]...)
			var se *sbatch.Error
			if !errors.As(err, &se) || !errors.Is(err, errkind.ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want unavailable, saying %q", err, tt.want)
			}
			if !reflect.DeepEqual(se.Args, tt.argv) || se.ExitCode <= 0 || !strings.Contains(se.Stderr, tt.want) {
				t.Errorf("error fields %+v", se)
			}
			if got := log.retries() + 1; got != tt.attempts {
				t.Errorf("%d attempts, want %d", got, tt.attempts)
			}
		})
	}
}

// TestRunnerSlurmError: a call Slurm refuses is Slurm's own error, not an
// unavailable service, and is not retried; a call that works returns the
// tool's output.
func TestRunnerSlurmError(t *testing.T) {
	testgate.Slurm(t)
	var log retryLog
	r := sbatch.Runner{Attempts: 3, Backoff: 10 * time.Millisecond, Log: log.logger()}
	ctx := ctxT(t, 30*time.Second)
	_, err := r.Run(ctx, "scontrol", "show", "job", "-o", "2147000000")
	var se *sbatch.Error
	if !errors.As(err, &se) || errors.Is(err, errkind.ErrUnavailable) || !strings.Contains(err.Error(), "Invalid job id specified") {
		t.Fatalf("err = %v, want Slurm's invalid job id, not unavailable", err)
	}
	if se.ExitCode != 1 || se.Args[0] != "scontrol" || log.retries() != 0 {
		t.Errorf("exit %d, args %q, %d retries", se.ExitCode, se.Args, log.retries())
	}
	out, err := r.Run(ctx, "scontrol", "show", "partition", "-o")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range sbatch.ParseOneliners(string(out)) {
		names[p["PartitionName"]] = true
	}
	if !names["debug"] || !names["gpu"] {
		t.Errorf("partitions %v, want debug and gpu (test/slurm/partitions.conf)", names)
	}
}

// TestRunnerMissingTool needs no cluster: a tool that is not installed is an
// unavailable Slurm, said plainly, and not retried.
func TestRunnerMissingTool(t *testing.T) {
	var log retryLog
	r := sbatch.Runner{BinDir: t.TempDir(), Attempts: 3, Backoff: time.Second, Log: log.logger()}
	start := time.Now()
	_, err := r.Run(ctxT(t, 30*time.Second), "squeue", "--noheader")
	if !errors.Is(err, errkind.ErrUnavailable) {
		t.Fatalf("err = %v, want unavailable", err)
	}
	if want := "squeue not found: Slurm's tools are not installed here (for a test cluster run test/slurm/up.sh)"; err.Error() != "squeue: "+want {
		t.Errorf("message %q", err)
	}
	if log.retries() != 0 || time.Since(start) > 500*time.Millisecond {
		t.Errorf("%d retries in %v: a missing tool was retried", log.retries(), time.Since(start))
	}
}

// TestClusterName reads the cluster's name from slurmctld and checks it
// against slurm.conf.
func TestClusterName(t *testing.T) {
	testgate.Slurm(t)
	b, err := os.ReadFile("/etc/slurm/slurm.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && strings.EqualFold(k, "ClusterName") {
			want = v
		}
	}
	ctx := ctxT(t, 30*time.Second)
	got, err := (&sbatch.Client{}).ClusterName(ctx)
	if err != nil || got != want || got == "" {
		t.Fatalf("ClusterName = %q, %v; slurm.conf says %q", got, err, want)
	}
	down := &sbatch.Client{Env: []string{testgate.SlurmUnreachableConf(t)}, Attempts: 1}
	if _, err := down.ClusterName(ctx); !errors.Is(err, errkind.ErrUnavailable) || !strings.Contains(err.Error(), "Unable to contact slurm controller") {
		t.Fatalf("unreachable: err = %v, want unavailable quoting Slurm", err)
	}
}
