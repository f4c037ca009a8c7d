package simserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// childEnv makes the test binary act as a sim-server process, so the
// benchmark can measure the server's CPU apart from its own client's.
const childEnv = "GPUORCH_SIMSERVER_BENCH_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(benchChild(spec))
	}
	os.Exit(m.Run())
}

// benchChild serves a --dnn style spec (--llm style after "llm=", with
// ground-truth recording after a leading "truth;") until stdin closes,
// printing its address on stdout.
// The spec "baseline" serves a minimal net/http handler instead: read the
// body, sleep 3 ms, answer a fixed body (the floor for any HTTP server).
func benchChild(spec string) int {
	var h http.Handler
	if spec == "baseline" {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			time.Sleep(3 * time.Millisecond)
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"model_name":"m","outputs":[]}`))
		})
	} else {
		kind := "dnn"
		truth := 0
		if rest, ok := strings.CutPrefix(spec, "truth;"); ok {
			truth, spec = 1_000_000, rest
		}
		if rest, ok := strings.CutPrefix(spec, "llm="); ok {
			kind, spec = "llm", rest
		}
		d, l, err := ParseModelFlag(kind, spec)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		cfg := Config{Server: ServerConfig{TruthRecords: truth}}
		if d != nil {
			cfg.DNN = []DNNModel{*d}
		} else {
			cfg.LLM = []LLMModel{*l}
		}
		srv, err := New(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		h = srv.Handler()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if path := os.Getenv(childEnv + "_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Println(ln.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	hs := &http.Server{Handler: h}
	go func() { <-ctx.Done(); hs.Close() }()
	if err := hs.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// cpuTime is a process's user+system CPU time from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100), nil // USER_HZ = 100 on Linux
}

// cpuTimeNS is a process's CPU time in nanoseconds, summed over its threads
// from /proc/PID/task/*/schedstat (precise where /proc/PID/stat counts 10 ms
// ticks); threads that have exited are not counted, and Go seldom ends one.
func cpuTimeNS(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread just ended
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum, nil
}

// BenchmarkManyModels is issue 3's setting: 4,000 model copies (azure,
// memory_load_factor 4) at 1,000 requests/s in total, spread round-robin,
// against a sim-server in its own process. It reports the server's CPU,
// beside a minimal net/http server's under the same load.
//
//	go test -run '^$' -bench ManyModels -benchtime 1x ./loadgen/simserver/
func BenchmarkManyModels(b *testing.B) {
	const models = 4000
	b.Run("sim-server", func(b *testing.B) {
		benchLoad(b, "resnet50_v2:copies="+strconv.Itoa(models)+":b1=3ms", models)
	})
	b.Run("minimal-net-http", func(b *testing.B) { benchLoad(b, "baseline", models) })
}

func benchLoad(b *testing.B, spec string, models int) {
	const (
		rate = 1000
		dur  = 10 * time.Second
	)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), childEnv+"="+spec)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		addr, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		url := "http://" + strings.TrimSpace(addr)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}, Timeout: 5 * time.Second}
		var okN, errN atomic.Int64
		var wg sync.WaitGroup
		cpu0, _ := cpuTime(cmd.Process.Pid)
		start := time.Now()
		gap := time.Second / rate
		n := int(dur / gap)
		for k := 0; k < n; k++ {
			time.Sleep(time.Until(start.Add(time.Duration(k) * gap)))
			wg.Add(1)
			go func(k int) {
				defer wg.Done()
				resp, err := hc.Post(fmt.Sprintf("%s/v2/models/resnet50_v2-%d/infer", url, k%models), "application/json", strings.NewReader(smallInfer))
				if err != nil {
					errN.Add(1)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					okN.Add(1)
				} else {
					errN.Add(1)
				}
			}(k)
		}
		wg.Wait()
		elapsed := time.Since(start)
		cpu1, _ := cpuTime(cmd.Process.Pid)
		rss := rssMB(cmd.Process.Pid)
		stdin.Close()
		cmd.Wait()
		cpu := cpu1 - cpu0
		b.ReportMetric(float64(cpu)/float64(elapsed)*100, "server-cpu-%")
		b.ReportMetric(float64(cpu.Microseconds())/float64(okN.Load()), "server-cpu-µs/req")
		b.ReportMetric(float64(okN.Load())/elapsed.Seconds(), "ok-req/s")
		b.ReportMetric(rss, "server-rss-MB")
		if errN.Load() > 0 {
			b.Errorf("%d requests failed", errN.Load())
		}
	}
}

// rssMB is a process's resident set size from /proc/PID/status.
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkLLMStreaming: concurrent streams at 10 ms per token against a
// sim-server in its own process, with ground-truth recording off and on
// (--truth-records); reports the server's CPU per streamed token and what
// the clients measured (mean TPOT, p99 of the gaps between chunks), so the
// cost of recording shows as the difference between the two.
//
//	go test -run '^$' -bench LLMStreaming -benchtime 1x -count 3 ./loadgen/simserver/
func BenchmarkLLMStreaming(b *testing.B) {
	for _, conc := range []int{128, 512} {
		for _, truth := range []bool{false, true} {
			name := fmt.Sprintf("streams=%d/truth=%v", conc, truth)
			b.Run(name, func(b *testing.B) { benchStreaming(b, conc, truth) })
		}
	}
}

func benchStreaming(b *testing.B, conc int, truth bool) {
	const tokens = 200
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(exe)
		spec := "llm=m:prefill_per_token=100us:tpot=10ms:concurrency=" + strconv.Itoa(conc)
		if truth {
			spec = "truth;" + spec
		}
		cmd.Env = append(os.Environ(), childEnv+"="+spec)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		addr, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		base := "http://" + strings.TrimSpace(addr)
		body := fmt.Sprintf(`{"model":"m","prompt":%q,"max_tokens":%d,"stream":true}`, strings.Repeat("w ", 100), tokens)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
		var mu sync.Mutex
		var tpots, gaps []time.Duration
		var wg sync.WaitGroup
		cpu0, _ := cpuTimeNS(cmd.Process.Pid)
		start := time.Now()
		for c := 0; c < conc; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := hc.Post(base+"/v1/completions", "application/json", strings.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				defer resp.Body.Close()
				sc := bufio.NewScanner(resp.Body)
				var first, last time.Time
				var my []time.Duration
				n := 0
				for sc.Scan() {
					if !strings.HasPrefix(sc.Text(), "data: {") {
						continue
					}
					now := time.Now()
					if n == 0 {
						first = now
					} else {
						my = append(my, now.Sub(last))
					}
					last = now
					n++
				}
				if n != tokens {
					b.Errorf("%d chunks, want %d", n, tokens)
					return
				}
				mu.Lock()
				tpots = append(tpots, last.Sub(first)/(tokens-1))
				gaps = append(gaps, my...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		cpu1, _ := cpuTimeNS(cmd.Process.Pid)
		var recs int
		if truth {
			resp, err := hc.Get(base + "/truth?drain=1")
			if err != nil {
				b.Fatal(err)
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				recs++
			}
			resp.Body.Close()
			if recs != conc {
				b.Errorf("%d truth records, want %d", recs, conc)
			}
		}
		stdin.Close()
		cmd.Wait()
		cpu := cpu1 - cpu0
		b.ReportMetric(float64(cpu)/float64(elapsed)*100, "server-cpu-%")
		b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(conc*tokens), "server-cpu-µs/token")
		b.ReportMetric(float64(mean(tpots))/1e6, "mean-tpot-ms")
		b.ReportMetric(float64(pct(gaps, 99))/1e6, "p99-gap-ms")
	}
}

// pct is the p-th percentile of ds (sorts ds).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*p/100))]
}
