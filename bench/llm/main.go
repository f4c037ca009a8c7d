// Command llm-bench checks gpuorch's LLM serving measurements against the
// ground truth of `gpuorch sim-server --truth-records` (when the server
// wrote each chunk), at increasing load, beside peer clients run the way
// their users run them:
//
//   - a closed-loop concurrency sweep and a Poisson request-rate sweep at
//     fixed input/output tokens, each step against the same server;
//   - per step: completed ÷ scheduled, TTFT/ITL/TPOT/E2EL p50 and p99 as
//     gpuorch reports them, the server's truth and the difference, output
//     tokens/s, client CPU per output token, peak RSS, the server's CPU and
//     how far it fell behind its own schedule;
//   - hey (Debian's package; an HTTP load generator: time to first byte and
//     whole-response time, no per-token view) in the closed-loop steps;
//     aiperf and guidellm in the same steps when they are on PATH;
//   - 10,000 concurrent streams for peak RSS.
//
// The server and the client run as separate processes, pinned to separate
// CPUs (taskset) so that each has its own core and the limit found is one
// of them, not a fight over the same core. See docs/benchmarks.md.
//
//	go build -o /tmp/gpuorch ./cmd/gpuorch && go build -o /tmp/llm-bench ./bench/llm
//	/tmp/llm-bench -gpuorch /tmp/gpuorch
package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/bench/internal/benchkit"
)

type options struct {
	gpuorch, hey         string
	baseline             string // another gpuorch binary run in the same closed-loop steps
	serverCPUs, cliCPUs  string
	nice, rt             int
	in, out              int
	tpot, prefill        time.Duration
	step                 time.Duration
	concurrency, rates   []int
	rssStreams           int
	rssTPOT              time.Duration
	modes                map[string]bool
	aiperfVer, guideVer  string
	installHey, dropHead bool
}

func main() {
	var o options
	var conc, rates, modes string
	flag.StringVar(&o.gpuorch, "gpuorch", "", "gpuorch binary (required)")
	flag.StringVar(&o.hey, "hey", "hey", "hey binary (Debian package hey); \"\" skips it")
	flag.StringVar(&o.baseline, "gpuorch-baseline", "", "another gpuorch binary (e.g. built from an older commit) to run in the same closed-loop steps, as \"gpuorch (baseline)\"")
	flag.BoolVar(&o.installHey, "install-hey", false, "apt-get install hey when it is missing")
	flag.StringVar(&o.serverCPUs, "server-cpus", "0", "CPU list for sim-server (taskset -c); \"\" = no pinning")
	flag.StringVar(&o.cliCPUs, "client-cpus", "1", "CPU list for the clients (taskset -c); \"\" = no pinning")
	flag.IntVar(&o.rt, "rt", 0, "run the server and the clients at SCHED_FIFO priority N (chrt -f N; root): on a shared machine, other jobs' real-time threads then cannot take their cores")
	flag.IntVar(&o.nice, "nice", 0, "nice value for the server and the clients (negative needs root; shields them from other work on a shared machine)")
	flag.IntVar(&o.in, "input-tokens", 128, "prompt tokens per request")
	flag.IntVar(&o.out, "output-tokens", 64, "output tokens per request")
	flag.DurationVar(&o.tpot, "tpot", 20*time.Millisecond, "sim-server decode time per token")
	flag.DurationVar(&o.prefill, "prefill", 100*time.Microsecond, "sim-server prefill time per prompt token")
	flag.DurationVar(&o.step, "step", 15*time.Second, "length of each step's schedule")
	flag.StringVar(&conc, "concurrency", "100,250,500,750,1000,1500,2000", "closed-loop concurrency steps")
	flag.StringVar(&rates, "rates", "100,200,400,600,800,1200", "Poisson request-rate steps (requests/s)")
	flag.IntVar(&o.rssStreams, "rss-streams", 10000, "concurrent streams of the RSS step")
	flag.DurationVar(&o.rssTPOT, "rss-tpot", 250*time.Millisecond, "decode time per token in the RSS step (a server on one core cannot pace 10,000 streams at 20 ms)")
	flag.StringVar(&modes, "modes", "closed,poisson,rss", "what to run: closed, poisson, rss")
	flag.StringVar(&o.aiperfVer, "aiperf-version", "0.13.0", "aiperf version the comparison is pinned to (run only when `aiperf` on PATH reports it)")
	flag.StringVar(&o.guideVer, "guidellm-version", "0.7.3", "guidellm version the comparison is pinned to (run only when `guidellm` on PATH reports it)")
	flag.Parse()
	if o.gpuorch == "" {
		log.Fatal("give -gpuorch BIN (go build -o /tmp/gpuorch ./cmd/gpuorch)")
	}
	o.concurrency, o.rates = benchkit.Ints(conc), benchkit.Ints(rates)
	o.modes = map[string]bool{}
	for _, m := range strings.Split(modes, ",") {
		o.modes[strings.TrimSpace(m)] = true
	}
	if o.nice != 0 {
		// Children inherit it: the server and every client get the same.
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, o.nice); err != nil {
			log.Fatalf("setpriority %d: %v", o.nice, err)
		}
	}
	rtPriority = o.rt
	peers := findPeers(&o)
	if o.baseline != "" {
		peers = append([]peer{baselinePeer{bin: o.baseline}}, peers...)
	}

	fmt.Printf("# LLM serving benchmark %s, %d CPUs, load before: %s\n", time.Now().UTC().Format(time.RFC3339), benchkit.NumCPU(), benchkit.LoadAvg())
	fmt.Printf("sim-server on CPUs %q, clients on CPUs %q, nice %d, SCHED_FIFO %d (0: off); %d input / %d output tokens, tpot %v, prefill %v per token, %v steps\n",
		o.serverCPUs, o.cliCPUs, o.nice, o.rt, o.in, o.out, o.tpot, o.prefill, o.step)
	for _, p := range peers {
		fmt.Printf("peer: %s\n", p)
	}
	fmt.Println()

	var rows []row
	if o.modes["closed"] || o.modes["poisson"] {
		srv := startServer(&o, o.tpot)
		// A fresh server grows its heap and threads in its first second.
		runGpuorch(&o, srv, "closed", 100, 3*time.Second)
		srv.drainTruth()
		if o.modes["closed"] {
			for _, c := range o.concurrency {
				rows = append(rows, step(&o, srv, "closed", c, peers)...)
			}
		}
		if o.modes["poisson"] {
			for _, r := range o.rates {
				rows = append(rows, step(&o, srv, "poisson", r, nil)...)
			}
		}
		srv.stop()
	}
	if o.modes["rss"] {
		srv := startServer(&o, o.rssTPOT)
		rows = append(rows, step(&o, srv, "closed", o.rssStreams, nil)...)
		srv.stop()
	}
	printTable(rows)
	headline(rows)
	fmt.Printf("\nload after: %s\n", benchkit.LoadAvg())
}

// A row is one tool's (or the truth's) figures for one step.
type row struct {
	mode            string // closed, poisson
	level           int    // concurrency or rate
	tool            string // gpuorch, truth, error, hey, ...
	ratio           float64
	scheduled       int64
	ttft, itl, tpot [2]time.Duration // p50, p99
	e2el            [2]time.Duration
	has             map[string]bool // which metrics the tool measures
	outTokS         float64
	cpuPerTok       float64 // µs of client CPU per output token
	rssMB           float64
	serverCPU       float64 // % of one core
	serverPerTok    float64 // µs of server CPU per token it streamed
	lagP99          time.Duration
	handlerP99      time.Duration // the server's delay from a request's arrival to its handler
	writeP99        time.Duration // p99 over streams of the longest chunk write: the truth's own uncertainty
	load            string
	note            string
}

func step(o *options, srv *server, mode string, level int, peers []peer) []row {
	srv.drainTruth()
	c0, t0 := srv.cpu(), time.Now()
	g := runGpuorch(o, srv, mode, level, o.step)
	cpu, wall := srv.cpu()-c0, time.Since(t0)
	tr := srv.truth()
	truthRow := tr.row(mode, level)
	truthRow.serverCPU = 100 * cpu.Seconds() / wall.Seconds()
	truthRow.lagP99, truthRow.handlerP99, truthRow.writeP99 = tr.lagP99, tr.handlerP99, tr.writeP99
	if tr.tokens > 0 {
		truthRow.serverPerTok = float64(cpu.Microseconds()) / float64(tr.tokens)
	}
	truthRow.outTokS = float64(tr.tokens) / wall.Seconds()
	g.serverCPU, g.lagP99, g.handlerP99 = truthRow.serverCPU, tr.lagP99, tr.handlerP99
	rows := []row{g, truthRow, diff(g, truthRow)}
	for _, p := range peers {
		srv.drainTruth()
		c0, t0 := srv.cpu(), time.Now()
		pr := p.run(o, srv, level)
		cpu, wall := srv.cpu()-c0, time.Since(t0)
		tr := srv.truth()
		t := tr.row(mode, level)
		t.tool = "truth (" + p.name() + ")"
		t.serverCPU, t.lagP99, t.handlerP99, t.writeP99 = 100*cpu.Seconds()/wall.Seconds(), tr.lagP99, tr.handlerP99, tr.writeP99
		if tr.tokens > 0 {
			t.serverPerTok = float64(cpu.Microseconds()) / float64(tr.tokens)
		}
		pr.mode, pr.level = mode, level
		pr.serverCPU, pr.lagP99, pr.handlerP99 = t.serverCPU, t.lagP99, t.handlerP99
		rows = append(rows, pr, t, diff(pr, t))
	}
	return rows
}

// diff is a − truth for the metrics a measures.
func diff(a, truth row) row {
	d := row{mode: a.mode, level: a.level, tool: a.tool + " − truth", has: a.has}
	for i := range 2 {
		d.ttft[i] = a.ttft[i] - truth.ttft[i]
		d.itl[i] = a.itl[i] - truth.itl[i]
		d.tpot[i] = a.tpot[i] - truth.tpot[i]
		d.e2el[i] = a.e2el[i] - truth.e2el[i]
	}
	return d
}

// ---- sim-server ----

type server struct {
	cmd  *exec.Cmd
	addr string
	hc   *http.Client
}

// rtPriority is -rt, for pinned (set once in main).
var rtPriority int

func pinned(cpus string, argv ...string) *exec.Cmd {
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	if rtPriority > 0 {
		argv = append([]string{"chrt", "-f", strconv.Itoa(rtPriority)}, argv...)
	}
	return exec.Command(argv[0], argv[1:]...)
}

func startServer(o *options, tpot time.Duration) *server {
	dir, err := os.MkdirTemp("", "llm-bench")
	if err != nil {
		log.Fatal(err)
	}
	addrFile := filepath.Join(dir, "addr")
	spec := fmt.Sprintf("sim-llm:tpot=%s:prefill_per_token=%s:concurrency=1000000:max_tokens=%d", tpot, o.prefill, o.out)
	cmd := pinned(o.serverCPUs, o.gpuorch, "sim-server", "--listen", "127.0.0.1:0", "--addr-file", addrFile,
		"--llm", spec, "--truth-records", "10000000")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	for i := 0; ; i++ {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			s := &server{cmd: cmd, addr: strings.TrimSpace(string(b)), hc: &http.Client{Timeout: 5 * time.Minute}}
			fmt.Printf("sim-server %s (pid %d): --llm %s\n", s.addr, cmd.Process.Pid, spec)
			return s
		}
		if i > 100 {
			log.Fatal("sim-server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
}

func (s *server) url() string { return "http://" + s.addr }

// cpu is the server's CPU time so far (threads' schedstat; the taskset
// wrapper execs, so the pid is the server's).
func (s *server) cpu() time.Duration { return cpuTime(s.cmd.Process.Pid) }

func cpuTime(pid int) time.Duration {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

func (s *server) drainTruth() { _ = s.fetchTruth(func(*truthRecord) {}) }

type truthRecord struct {
	ChunksUS  []uint32 `json:"chunks_us"`
	HandlerUS uint32   `json:"handler_us"`
	EndUS     uint32   `json:"end_us"`
	LagMaxUS  uint32   `json:"lag_max_us"`
	WriteMax  uint32   `json:"write_max_us"`
	Completed bool     `json:"completed"`
	Tokens    int      `json:"completion_tokens"`
}

func (s *server) fetchTruth(fn func(*truthRecord)) error {
	resp, err := s.hc.Get(s.url() + "/truth?drain=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if d := resp.Header.Get("X-Truth-Dropped"); d != "" && d != "0" {
		log.Printf("sim-server dropped %s truth records (store full)", d)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r truthRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return err
		}
		fn(&r)
	}
	return sc.Err()
}

// truthStats are the server's account of one step's completed streams.
type truthStats struct {
	ttft, itl, tpot, e2el, lag, handler, write []time.Duration
	tokens                                     int64
	lagP99, handlerP99, writeP99               time.Duration
}

func (s *server) truth() *truthStats {
	t := &truthStats{}
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	err := s.fetchTruth(func(r *truthRecord) {
		if !r.Completed || len(r.ChunksUS) == 0 {
			return
		}
		c := r.ChunksUS
		t.ttft = append(t.ttft, us(c[0]))
		for k := 1; k < len(c); k++ {
			t.itl = append(t.itl, us(c[k]-c[k-1]))
		}
		if n := len(c); n > 1 {
			t.tpot = append(t.tpot, us(r.EndUS-c[0])/time.Duration(n-1))
		}
		t.e2el = append(t.e2el, us(r.EndUS))
		t.lag = append(t.lag, us(r.LagMaxUS))
		t.handler = append(t.handler, us(r.HandlerUS))
		t.write = append(t.write, us(r.WriteMax))
		t.tokens += int64(len(c))
	})
	if err != nil {
		log.Printf("truth: %v", err)
	}
	t.lagP99, t.handlerP99, t.writeP99 = pct(t.lag, 99), pct(t.handler, 99), pct(t.write, 99)
	return t
}

func (t *truthStats) row(mode string, level int) row {
	r := row{mode: mode, level: level, tool: "truth (server)", has: allMetrics(), load: benchkit.LoadAvg()}
	r.ttft = [2]time.Duration{pct(t.ttft, 50), pct(t.ttft, 99)}
	r.itl = [2]time.Duration{pct(t.itl, 50), pct(t.itl, 99)}
	r.tpot = [2]time.Duration{pct(t.tpot, 50), pct(t.tpot, 99)}
	r.e2el = [2]time.Duration{pct(t.e2el, 50), pct(t.e2el, 99)}
	r.scheduled = int64(len(t.e2el))
	r.ratio = math.NaN()
	r.cpuPerTok, r.rssMB = math.NaN(), math.NaN()
	return r
}

func allMetrics() map[string]bool {
	return map[string]bool{"ttft": true, "itl": true, "tpot": true, "e2el": true}
}

// pct is the p-th percentile (nearest rank) of ds; it sorts ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// ---- gpuorch ----

func runGpuorch(o *options, srv *server, mode string, level int, d time.Duration) row {
	args := []string{o.gpuorch, "loadgen", "run", "--json", "--no-progress", "--target", srv.url(),
		"--protocol", "openai", "--model", "sim-llm", "--duration", d.String(), "--timeout", "10m",
		"--input-tokens", strconv.Itoa(o.in), "--output-tokens", strconv.Itoa(o.out), "--seed", "1",
		"--drain", "5m", "--max-in-flight", "100000"}
	if mode == "closed" {
		args = append(args, "--arrival", "closed", "--concurrency", strconv.Itoa(level))
	} else {
		args = append(args, "--arrival", "poisson", "--rate", strconv.Itoa(level))
	}
	cmd := pinned(o.cliCPUs, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	err := run(cmd)
	r := row{mode: mode, level: level, tool: "gpuorch", has: allMetrics(), load: benchkit.LoadAvg()}
	cpu, rss := usage(cmd)
	r.rssMB = float64(rss) / 1024
	if err != nil {
		r.note = err.Error()
		return r
	}
	type q struct{ P50, P99 time.Duration }
	var sum struct {
		Total struct {
			Offered      int64 `json:"offered"`
			Completed    int64 `json:"completed"`
			OutputTokens int64 `json:"output_tokens"`
			TTFT         q     `json:"ttft"`
			ITL          q     `json:"itl"`
			TPOT         q     `json:"tpot"`
			E2EL         q     `json:"e2el"`
		} `json:"total"`
	}
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		r.note = "summary: " + err.Error()
		return r
	}
	t := sum.Total
	r.scheduled = t.Offered
	if t.Offered > 0 {
		r.ratio = float64(t.Completed) / float64(t.Offered)
	}
	r.ttft = [2]time.Duration{t.TTFT.P50, t.TTFT.P99}
	r.itl = [2]time.Duration{t.ITL.P50, t.ITL.P99}
	r.tpot = [2]time.Duration{t.TPOT.P50, t.TPOT.P99}
	r.e2el = [2]time.Duration{t.E2EL.P50, t.E2EL.P99}
	r.outTokS = float64(t.OutputTokens) / d.Seconds()
	if t.OutputTokens > 0 {
		r.cpuPerTok = float64(cpu.Microseconds()) / float64(t.OutputTokens)
	}
	return r
}

// usage is a finished child's CPU time and peak RSS (KB). The peak is the
// child's own VmHWM, sampled while it ran (runPeak): Go starts children
// with vfork, so ru_maxrss would also cover this process's RSS.
func usage(cmd *exec.Cmd) (time.Duration, int64) {
	if cmd.ProcessState == nil {
		return 0, 0
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return cpu, peaks[cmd]
}

// peaks holds each child's sampled VmHWM (KB), by command.
var peaks = map[*exec.Cmd]int64{}

// run starts cmd, samples its VmHWM every 50 ms until it exits, and waits.
func run(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	var peak int64
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); err == nil {
				for _, l := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
						kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
						peak = max(peak, kb)
					}
				}
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	peaks[cmd] = peak
	return err
}

// ---- peers ----

type peer interface {
	name() string
	run(o *options, srv *server, concurrency int) row
}

func (h heyPeer) String() string {
	return "hey " + h.version + " (" + h.bin + "): HTTP load generator, closed loop of -c workers; per request: time to first response byte after the request is written (Response-delay) and whole-response time; no view of chunks, tokens or ITL; CSV times in s with 4 decimals (0.1 ms)"
}

func findPeers(o *options) []peer {
	var ps []peer
	if o.hey != "" {
		bin, err := exec.LookPath(o.hey)
		if err != nil && o.installHey {
			fmt.Println("installing hey (Debian package) ...")
			c := exec.Command("apt-get", "install", "-y", "-q", "hey")
			c.Stdout, c.Stderr = os.Stderr, os.Stderr
			if c.Run() == nil {
				bin, err = exec.LookPath(o.hey)
			}
		}
		if err != nil {
			fmt.Printf("hey: not found (%v); give -install-hey, or apt-get install hey\n", err)
		} else {
			v, _ := exec.Command("dpkg-query", "-W", "-f", "${Version}", "hey").Output()
			ps = append(ps, heyPeer{bin: bin, version: strings.TrimSpace(string(v))})
		}
	}
	for _, p := range []struct {
		bin, want string
		mk        func(bin, v string) peer
	}{
		{"aiperf", o.aiperfVer, func(b, v string) peer { return aiperfPeer{bin: b, version: v} }},
		{"guidellm", o.guideVer, func(b, v string) peer { return guidellmPeer{bin: b, version: v} }},
	} {
		bin, err := exec.LookPath(p.bin)
		if err != nil {
			fmt.Printf("%s: not installed (pip install %s==%s; these machines reach no PyPI), not run\n", p.bin, p.bin, p.want)
			continue
		}
		out, _ := exec.Command(bin, "--version").CombinedOutput()
		if !strings.Contains(string(out), p.want) {
			fmt.Printf("%s: %s reports %q, not the pinned %s; not run\n", p.bin, bin, strings.TrimSpace(string(out)), p.want)
			continue
		}
		ps = append(ps, p.mk(bin, p.want))
	}
	return ps
}

// baselinePeer is another gpuorch build in the same steps.
type baselinePeer struct{ bin string }

func (b baselinePeer) name() string { return "gpuorch baseline" }

func (b baselinePeer) String() string { return "gpuorch baseline (" + b.bin + ")" }

func (b baselinePeer) run(o *options, srv *server, c int) row {
	oo := *o
	oo.gpuorch = b.bin
	r := runGpuorch(&oo, srv, "closed", c, o.step)
	r.tool = "gpuorch (baseline)"
	return r
}

type heyPeer struct{ bin, version string }

func (h heyPeer) name() string { return "hey" }

func (h heyPeer) run(o *options, srv *server, c int) row {
	r := row{tool: "hey", has: map[string]bool{"ttft": true, "e2el": true}, load: benchkit.LoadAvg()}
	dir, _ := os.MkdirTemp("", "hey")
	defer os.RemoveAll(dir)
	body := filepath.Join(dir, "body.json")
	prompt := strings.TrimSpace(strings.Repeat("hello ", o.in))
	b, _ := json.Marshal(map[string]any{"model": "sim-llm", "prompt": prompt, "max_tokens": o.out, "min_tokens": o.out,
		"ignore_eos": true, "stream": true, "stream_options": map[string]bool{"include_usage": true}})
	_ = os.WriteFile(body, b, 0o644)
	cmd := pinned(o.cliCPUs, h.bin, "-z", o.step.String(), "-c", strconv.Itoa(c), "-t", "600", "-m", "POST",
		"-T", "application/json", "-D", body, "-o", "csv", srv.url()+"/v1/completions")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	err := run(cmd)
	cpu, rss := usage(cmd)
	r.rssMB = float64(rss) / 1024
	if err != nil {
		r.note = err.Error()
		return r
	}
	recs, err := csv.NewReader(&out).ReadAll()
	if err != nil || len(recs) < 1 {
		r.note = fmt.Sprintf("csv: %v", err)
		return r
	}
	sec := func(s string) time.Duration {
		f, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
		return time.Duration(f * float64(time.Second))
	}
	var ttft, e2el []time.Duration
	ok := 0
	for _, rec := range recs[1:] { // response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
		if len(rec) < 8 {
			continue
		}
		r.scheduled++
		if strings.TrimSpace(rec[6]) != "200" {
			continue
		}
		ok++
		// Time to first byte from the request's start, as gpuorch's TTFT:
		// dial (new connections) + request write + response delay.
		ttft = append(ttft, sec(rec[1])+sec(rec[3])+sec(rec[4]))
		e2el = append(e2el, sec(rec[0]))
	}
	if r.scheduled > 0 {
		r.ratio = float64(ok) / float64(r.scheduled)
	}
	r.ttft = [2]time.Duration{pct(ttft, 50), pct(ttft, 99)}
	r.e2el = [2]time.Duration{pct(e2el, 50), pct(e2el, 99)}
	toks := int64(ok * o.out) // hey counts no tokens; every completed answer carries o.out
	r.outTokS = float64(toks) / o.step.Seconds()
	if toks > 0 {
		r.cpuPerTok = float64(cpu.Microseconds()) / float64(toks)
	}
	return r
}

// aiperfPeer runs `aiperf profile` (pinned version) with the same load and
// reads profile_export_aiperf.json. Not installable here (no PyPI), so this
// path has not been run on this machine.
type aiperfPeer struct{ bin, version string }

func (a aiperfPeer) name() string { return "aiperf" }

func (a aiperfPeer) String() string {
	return "aiperf " + a.version + ": NVIDIA's LLM benchmark; TTFT to the first non-empty chunk, ITL = (request latency − TTFT)/(OSL − 1) per request (gpuorch's TPOT), inter-chunk latency per gap"
}

func (a aiperfPeer) run(o *options, srv *server, c int) row {
	r := row{tool: "aiperf", has: allMetrics(), load: benchkit.LoadAvg()}
	dir, _ := os.MkdirTemp("", "aiperf")
	defer os.RemoveAll(dir)
	cmd := pinned(o.cliCPUs, a.bin, "profile", "--model", "sim-llm", "--url", srv.url(), "--endpoint-type", "completions",
		"--streaming", "--concurrency", strconv.Itoa(c), "--benchmark-duration", strconv.Itoa(int(o.step.Seconds())),
		"--synthetic-input-tokens-mean", strconv.Itoa(o.in), "--output-tokens-mean", strconv.Itoa(o.out),
		"--extra-inputs", "ignore_eos:true", "--extra-inputs", "min_tokens:"+strconv.Itoa(o.out),
		"--tokenizer", "gpt2", "--artifact-dir", dir)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	err := run(cmd)
	cpu, rss := usage(cmd)
	r.rssMB = float64(rss) / 1024
	if err != nil {
		r.note = err.Error()
		return r
	}
	b, err := os.ReadFile(filepath.Join(dir, "profile_export_aiperf.json"))
	if err != nil {
		r.note = err.Error()
		return r
	}
	var ex map[string]struct {
		Unit     string  `json:"unit"`
		Avg      float64 `json:"avg"`
		P50, P99 float64
	}
	_ = json.Unmarshal(b, &ex)
	ms := func(tag string) [2]time.Duration {
		m := ex[tag]
		return [2]time.Duration{time.Duration(m.P50 * 1e6), time.Duration(m.P99 * 1e6)}
	}
	r.ttft, r.e2el = ms("time_to_first_token"), ms("request_latency")
	r.itl = ms("inter_chunk_latency")  // per gap, as gpuorch's ITL
	r.tpot = ms("inter_token_latency") // aiperf's ITL is a per-request average: gpuorch's TPOT
	r.outTokS = ex["output_token_throughput"].Avg
	if toks := ex["output_token_throughput"].Avg * o.step.Seconds(); toks > 0 {
		r.cpuPerTok = float64(cpu.Microseconds()) / toks
	}
	r.ratio = math.NaN()
	return r
}

// guidellmPeer runs `guidellm run` (pinned version) and reads its
// benchmarks.json. Not installable here (no PyPI): not run on this machine.
type guidellmPeer struct{ bin, version string }

func (g guidellmPeer) name() string { return "guidellm" }

func (g guidellmPeer) String() string {
	return "guidellm " + g.version + ": per-request averages only; its ITL = (last − first token)/(n − 1), its TPOT = (last token − start)/n"
}

func (g guidellmPeer) run(o *options, srv *server, c int) row {
	r := row{tool: "guidellm", has: map[string]bool{"ttft": true, "tpot": true, "e2el": true}, load: benchkit.LoadAvg()}
	dir, _ := os.MkdirTemp("", "guidellm")
	defer os.RemoveAll(dir)
	outFile := filepath.Join(dir, "benchmarks.json")
	cmd := pinned(o.cliCPUs, g.bin, "run",
		"--backend", "kind=openai_http,target="+srv.url()+",request_format=/v1/completions",
		"--profile", fmt.Sprintf("kind=concurrent,streams=%d", c),
		"--constraint", fmt.Sprintf("kind=max_duration,seconds=%d", int(o.step.Seconds())),
		"--data", fmt.Sprintf("kind=synthetic_text,prompt_tokens=%d,output_tokens=%d", o.in, o.out),
		"--output", "kind=json,path="+outFile)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	err := run(cmd)
	_, rss := usage(cmd)
	r.rssMB = float64(rss) / 1024
	if err != nil {
		r.note = err.Error()
		return r
	}
	b, err := os.ReadFile(outFile)
	if err != nil {
		r.note = err.Error()
		return r
	}
	type dist struct {
		Successful struct {
			Median      float64 `json:"median"`
			Percentiles struct {
				P99 float64 `json:"p99"`
			} `json:"percentiles"`
		} `json:"successful"`
	}
	var rep struct {
		Benchmarks []struct {
			Metrics struct {
				TTFT dist `json:"time_to_first_token_ms"`
				ITL  dist `json:"inter_token_latency_ms"`
				Lat  dist `json:"request_latency"` // seconds
			} `json:"metrics"`
		} `json:"benchmarks"`
	}
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Benchmarks) == 0 {
		r.note = fmt.Sprintf("benchmarks.json: %v", err)
		return r
	}
	m := rep.Benchmarks[0].Metrics
	msd := func(d dist, unit float64) [2]time.Duration {
		return [2]time.Duration{time.Duration(d.Successful.Median * unit), time.Duration(d.Successful.Percentiles.P99 * unit)}
	}
	r.ttft = msd(m.TTFT, 1e6)
	r.tpot = msd(m.ITL, 1e6) // guidellm's ITL excludes the first token: nearest to gpuorch's TPOT
	r.e2el = msd(m.Lat, 1e9)
	r.ratio, r.cpuPerTok = math.NaN(), math.NaN()
	return r
}

// ---- output ----

func fmtD(d time.Duration, has bool) string {
	if !has {
		return "n/a"
	}
	ms := float64(d) / 1e6
	switch {
	case math.Abs(ms) >= 100:
		return fmt.Sprintf("%.0f", ms)
	case math.Abs(ms) >= 1:
		return fmt.Sprintf("%.2f", ms)
	}
	return fmt.Sprintf("%.3f", ms)
}

func fmtF(f float64, format string) string {
	if math.IsNaN(f) || f == 0 {
		return ""
	}
	return fmt.Sprintf(format, f)
}

func printTable(rows []row) {
	fmt.Println("\n## Results (ms; error = tool − server truth)")
	fmt.Println("| mode | level | tool | completed ÷ scheduled | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | TPOT p50 | TPOT p99 | E2EL p50 | E2EL p99 | out tok/s | client CPU µs/tok | peak RSS MB | server CPU % | server CPU µs/tok | server lag p99 | server handler delay p99 | truth write span p99 | load | note |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		ratio := ""
		switch {
		case strings.HasPrefix(r.tool, "truth"):
			ratio = fmt.Sprintf("%d completed streams", r.scheduled)
		case r.scheduled > 0 && !math.IsNaN(r.ratio):
			ratio = fmt.Sprintf("%.2f%% of %d", 100*r.ratio, r.scheduled)
		}
		h := r.has
		if h == nil {
			h = map[string]bool{}
		}
		lag, hd, wr := "", "", ""
		if strings.HasPrefix(r.tool, "truth") {
			lag, hd, wr = fmtD(r.lagP99, true), fmtD(r.handlerP99, true), fmtD(r.writeP99, true)
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.mode, r.level, r.tool, ratio,
			fmtD(r.ttft[0], h["ttft"]), fmtD(r.ttft[1], h["ttft"]), fmtD(r.itl[0], h["itl"]), fmtD(r.itl[1], h["itl"]),
			fmtD(r.tpot[0], h["tpot"]), fmtD(r.tpot[1], h["tpot"]), fmtD(r.e2el[0], h["e2el"]), fmtD(r.e2el[1], h["e2el"]),
			fmtF(r.outTokS, "%.0f"), fmtF(r.cpuPerTok, "%.2f"), fmtF(r.rssMB, "%.0f"), fmtF(r.serverCPU, "%.0f"),
			fmtF(r.serverPerTok, "%.2f"), lag, hd, wr, r.load, r.note)
	}
}

// headline: the highest closed-loop concurrency at which gpuorch's p99 ITL
// is within 1 ms of the server's with ≥ 99% completed, and where the
// server itself fell behind.
func headline(rows []row) {
	best := map[string]int{}
	for i, r := range rows {
		if r.tool != "gpuorch" || i+2 >= len(rows) {
			continue
		}
		e := rows[i+2]
		ok := r.ratio >= 0.99 && e.itl[1].Abs() < time.Millisecond
		fmt.Printf("%s %d: completed %.2f%%, ITL p99 error %v, TTFT p50/p99 error %v/%v, server lag p99 %v, handler delay p99 %v, server CPU %.0f%% → %v\n",
			r.mode, r.level, 100*r.ratio, e.itl[1], e.ttft[0], e.ttft[1], r.lagP99, r.handlerP99, r.serverCPU, map[bool]string{true: "met", false: "not met"}[ok])
		if ok {
			best[r.mode] = max(best[r.mode], r.level)
		}
	}
	fmt.Printf("\nheadline: highest level with gpuorch's p99 ITL error < 1 ms and ≥ 99%% completed: closed loop %d streams, Poisson %d requests/s\n",
		best["closed"], best["poisson"])
}
