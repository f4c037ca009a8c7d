// Command loadgen-bench compares gpuorch's load generator with vegeta on
// this machine: open-loop load against a minimal Go HTTP server on loopback
// at increasing rates, CPU per request at a fixed rate, peak RSS over a long
// run, and the mean-rate accuracy of a 60 s run. Both tools run as child
// processes, so their CPU time and RSS are measured apart from the server's.
//
//	go build -o /tmp/gpuorch ./cmd/gpuorch
//	(cd bench/tools && go build -o /tmp/vegeta github.com/tsenart/vegeta/v12)
//	go run ./bench/loadgen -gpuorch /tmp/gpuorch -vegeta /tmp/vegeta
//
// See docs/benchmarks.md for the figures and what they mean.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/bench/internal/benchkit"
)

func main() {
	serve := flag.String("serve", "", "internal: run the minimal HTTP server on this address")
	gpuorch := flag.String("gpuorch", "", "gpuorch binary")
	vegeta := flag.String("vegeta", "", "vegeta binary (empty: skip vegeta)")
	modes := flag.String("modes", "sweep,cpu,accuracy", "what to run: sweep, cpu, accuracy, rss, shards")
	gRates := flag.String("gpuorch-rates", "5000,10000,15000,20000,25000,30000,40000", "open-loop rates for gpuorch (req/s)")
	vRates := flag.String("vegeta-rates", "2500,5000,7500,10000,15000,20000", "rates for vegeta (req/s)")
	step := flag.Duration("step", 10*time.Second, "length of each sweep step")
	cpuRate := flag.Int("cpu-rate", 5000, "rate for the CPU-per-request comparison")
	cpuDur := flag.Duration("cpu-duration", 20*time.Second, "length of the CPU comparison runs")
	accRate := flag.Int("accuracy-rate", 10000, "rate of the 60 s accuracy run")
	accDur := flag.Duration("accuracy-duration", 60*time.Second, "length of the accuracy run")
	rssRate := flag.Int("rss-rate", 20000, "rate of the long RSS run")
	rssReqs := flag.Int("rss-requests", 10_000_000, "requests in the long RSS run")
	shardRate := flag.Int("shard-rate", 8000, "total rate of the shards comparison")
	shardDur := flag.Duration("shard-duration", 20*time.Second, "length of each run of the shards comparison")
	shardCounts := flag.String("shard-counts", "1,2,4", "shard counts to compare (1: one unsharded process)")
	serverKind := flag.String("server", "http", "the server under test: http (Go's net/http) or raw (a canned answer over raw TCP: a fraction of net/http's CPU per request, so that on one machine the generator meets its limit before the server does)")
	flag.StringVar(&toolCPUs, "tool-cpus", "", "run gpuorch and vegeta on these CPUs (taskset -c list, e.g. 0)")
	flag.StringVar(&serverCPUs, "server-cpus", "", "run the server on these CPUs (taskset -c list, e.g. 1)")
	nice := flag.Int("nice", 0, "run the server and both tools at this nice value (e.g. -10 to shield them from other work on a shared machine; negative needs root)")
	flag.Parse()
	if *nice != 0 {
		// Children (server, gpuorch, vegeta) inherit it: same priority for all.
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, *nice); err != nil {
			log.Fatalf("setpriority %d: %v", *nice, err)
		}
	}
	if *serve != "" {
		if *serverKind == "raw" {
			runRawServer(*serve)
		}
		runServer(*serve)
		return
	}
	if *gpuorch == "" {
		log.Fatal("give -gpuorch BIN (go build -o /tmp/gpuorch ./cmd/gpuorch)")
	}
	addr, stop := startServer(*serverKind)
	defer stop()
	target := "http://" + addr + "/"
	fmt.Printf("# loadgen benchmark %s, %d CPUs, nice %d, load before: %s\n", time.Now().UTC().Format(time.RFC3339), benchkit.NumCPU(), *nice, benchkit.LoadAvg())
	what := "minimal Go net/http"
	if *serverKind == "raw" {
		what = "raw TCP, canned HTTP/1.1 answers"
	}
	fmt.Printf("server: %s on %s (own process, CPUs %s); tools on CPUs %s\n\n", what, addr, orAll(serverCPUs), orAll(toolCPUs))
	// A fresh server spends its first second growing its heap and threads;
	// both tools meet it warm, whichever runs first.
	runGpuorch(*gpuorch, target, 10000, 3*time.Second)
	for _, m := range strings.Split(*modes, ",") {
		switch strings.TrimSpace(m) {
		case "sweep":
			fmt.Println("## highest sustained open-loop rate (Poisson for gpuorch, constant for vegeta)")
			fmt.Println("sustained = completed ≥ 99% of scheduled, no failures, and p99 send lateness ≤ 1 ms.")
			fmt.Println("vegeta's lateness: each hit's timestamp minus its slot start+seq/rate, start fitted so that no hit is early (a lower bound).")
			fmt.Println("| tool | offered/s | scheduled | completed/s | completed ÷ scheduled | p99 send lateness | p99 latency (corrected for gpuorch) | failed | CPU s | server CPU s | load avg |")
			fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
			best, bestRate := map[string]int{}, map[string]int{}
			note := func(res result) {
				res.print()
				if res.sustained(true) {
					best[res.tool] = max(best[res.tool], res.rate)
				}
				if res.sustained(false) {
					bestRate[res.tool] = max(bestRate[res.tool], res.rate)
				}
			}
			for _, r := range benchkit.Ints(*gRates) {
				note(runGpuorch(*gpuorch, target, r, *step))
			}
			if *vegeta != "" {
				for _, r := range benchkit.Ints(*vRates) {
					note(runVegeta(*vegeta, target, r, *step))
				}
			}
			fmt.Printf("\nhighest sustained (completion and lateness): gpuorch %d/s, vegeta %d/s\n", best["gpuorch"], best["vegeta"])
			fmt.Printf("highest with completion alone (≥ 99%%, lateness not judged): gpuorch %d/s, vegeta %d/s\n\n", bestRate["gpuorch"], bestRate["vegeta"])
		case "cpu":
			fmt.Printf("## CPU per request at %d/s for %v\n", *cpuRate, *cpuDur)
			g := runGpuorch(*gpuorch, target, *cpuRate, *cpuDur)
			fmt.Printf("gpuorch: %.1f µs CPU/request (%d requests, %.2f s CPU, max RSS %d MB)\n", g.cpuPerReq(), g.done, g.cpu.Seconds(), g.rssKB/1024)
			if *vegeta != "" {
				v := runVegeta(*vegeta, target, *cpuRate, *cpuDur)
				fmt.Printf("vegeta:  %.1f µs CPU/request (%d requests, %.2f s CPU, max RSS %d MB)\n", v.cpuPerReq(), v.done, v.cpu.Seconds(), v.rssKB/1024)
			}
			fmt.Println()
		case "accuracy":
			fmt.Printf("## mean rate over %v at %d/s offered (Poisson)\n", *accDur, *accRate)
			g := runGpuorch(*gpuorch, target, *accRate, *accDur)
			fmt.Printf("gpuorch: scheduled %d (%.3f%% of rate × duration), sent %d (%.3f%%), completed %d (%.3f%%), p99 lateness %v, load %s\n\n",
				g.offered, 100*float64(g.offered)/(accDur.Seconds()*float64(*accRate)),
				g.sent, 100*float64(g.sent)/(accDur.Seconds()*float64(*accRate)),
				g.done, 100*float64(g.done)/(accDur.Seconds()*float64(*accRate)), g.lateP99, g.load)
		case "rss":
			d := time.Duration(float64(*rssReqs) / float64(*rssRate) * float64(time.Second))
			fmt.Printf("## peak RSS over %d requests (%d/s for %v)\n", *rssReqs, *rssRate, d)
			g := runGpuorch(*gpuorch, target, *rssRate, d)
			fmt.Printf("gpuorch: %d requests sent, %d completed, max RSS %d MB, p99 lateness %v, load %s\n\n", g.sent, g.done, g.rssKB/1024, g.lateP99, g.load)
		case "shards":
			fmt.Printf("## one schedule (Poisson %d/s, seed 1, %v) as K shards: CPU per request\n", *shardRate, *shardDur)
			fmt.Println("CPU = user + system of every shard process, the merge excluded; pacer = the busiest thread of each process (its pacer), added up; both per request sent.")
			fmt.Println("| shards | scheduled (merged) | sent | completed | CPU s | CPU µs/request sent | pacer µs/request sent | p99 lateness (merged) | max RSS MB | load avg |")
			fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
			for _, k := range benchkit.Ints(*shardCounts) {
				runShards(*gpuorch, target, *shardRate, *shardDur, k, "").print()
				if k > 1 {
					// The same processes without sharding: K unrelated
					// schedules of rate/K, Poisson, and gamma of shape K —
					// the arrival process a shard sees (every Kth arrival
					// of a Poisson stream is Erlang-K). The difference is
					// what sharding itself costs; the rest is what K
					// processes, and more regular arrivals, cost.
					runShards(*gpuorch, target, *shardRate, *shardDur, k, "poisson").print()
					runShards(*gpuorch, target, *shardRate, *shardDur, k, "gamma").print()
				}
			}
			fmt.Println()
		default:
			log.Fatalf("unknown mode %q", m)
		}
	}
	fmt.Printf("load after: %s\n", benchkit.LoadAvg())
}

type result struct {
	tool                string
	rate                int
	offered, sent, done int64
	errors              int64
	achieved            float64
	lateP99, latP99     time.Duration
	cpu                 time.Duration
	serverCPU           time.Duration // the server's CPU time over the run
	rssKB               int64
	load                string
	ratio               float64 // completed ÷ scheduled
	lateKnown           bool
}

// sustained: completion ≥ 99% without failures and, when judged, p99 send
// lateness ≤ 1 ms (the definition).
func (r result) sustained(judgeLateness bool) bool {
	ok := r.ratio >= 0.99 && r.errors == 0
	if judgeLateness {
		ok = ok && r.lateKnown && r.lateP99 <= time.Millisecond
	}
	return ok
}

func (r result) cpuPerReq() float64 {
	if r.done == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / float64(r.done)
}

func (r result) print() {
	late := "n/a"
	if r.lateKnown {
		late = r.lateP99.String()
	}
	fmt.Printf("| %s | %d | %d | %.0f | %.1f%% | %s | %v | %d | %.1f | %.1f | %s |\n", r.tool, r.rate, r.offered, r.achieved,
		100*r.ratio, late, r.latP99, r.errors, r.cpu.Seconds(), r.serverCPU.Seconds(), r.load)
}

func runGpuorch(bin, target string, rate int, d time.Duration) result {
	freeMemory()
	cmd := on(toolCPUs, bin, "loadgen", "run", "--json", "--no-progress", "--target", target,
		"--arrival", "poisson", "--rate", strconv.Itoa(rate), "--duration", d.String(),
		"--timeout", "5s", "--drain", "2s", "--seed", "1")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	srv0 := procCPU(serverPid)
	err := cmd.Run()
	res := result{tool: "gpuorch", rate: rate, load: benchkit.LoadAvg(), lateKnown: true, serverCPU: procCPU(serverPid) - srv0}
	usage(cmd, &res)
	if err != nil {
		log.Printf("gpuorch at %d/s: %v", rate, err)
		return res
	}
	var sum struct {
		Total struct {
			Offered, Sent, Completed, Errors, Timeouts, Dropped, Cancelled int64
			Lateness, Latency                                              struct{ P99 time.Duration }
		}
	}
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		log.Printf("gpuorch summary: %v", err)
		return res
	}
	t := sum.Total
	res.offered, res.sent, res.done = t.Offered, t.Sent, t.Completed
	res.errors = t.Errors + t.Timeouts + t.Dropped + t.Cancelled
	// Achieved = requests completed per second of the offered duration.
	res.achieved = float64(t.Completed) / d.Seconds()
	if t.Offered > 0 {
		// A Poisson schedule's count varies (±1/sqrt(n)); judge against
		// what was actually scheduled.
		res.ratio = float64(t.Completed) / float64(t.Offered)
	}
	res.lateP99, res.latP99 = t.Lateness.P99, t.Latency.P99
	return res
}

// freeMemory returns this process's free heap to the OS before a child is
// started, so that the child's max RSS is its own (see usage).
func freeMemory() { debug.FreeOSMemory() }

func runVegeta(bin, target string, rate int, d time.Duration) result {
	freeMemory()
	dir, _ := os.MkdirTemp("", "vegeta")
	defer os.RemoveAll(dir)
	outFile := filepath.Join(dir, "results.bin")
	cmd := on(toolCPUs, bin, "attack", "-rate", strconv.Itoa(rate), "-duration", d.String(), "-timeout", "5s", "-output", outFile)
	cmd.Stdin = strings.NewReader("GET " + target + "\n")
	cmd.Stderr = os.Stderr
	srv0 := procCPU(serverPid)
	err := cmd.Run()
	res := result{tool: "vegeta", rate: rate, load: benchkit.LoadAvg(), lateKnown: true, serverCPU: procCPU(serverPid) - srv0}
	usage(cmd, &res)
	if err != nil {
		log.Printf("vegeta at %d/s: %v", rate, err)
		return res
	}
	rep, err := exec.Command(bin, "report", "-type", "json", outFile).Output()
	if err != nil {
		log.Printf("vegeta report: %v", err)
		return res
	}
	var r struct {
		Requests  int64   `json:"requests"`
		Rate      float64 `json:"rate"`
		Success   float64 `json:"success"`
		Latencies struct {
			P99 time.Duration `json:"99th"`
		} `json:"latencies"`
	}
	if err := json.Unmarshal(rep, &r); err != nil {
		log.Printf("vegeta report: %v", err)
		return res
	}
	ok := int64(float64(r.Requests)*r.Success + 0.5)
	res.offered, res.sent, res.done, res.errors = r.Requests, r.Requests, ok, r.Requests-ok
	res.achieved = float64(ok) / d.Seconds()
	// vegeta's schedule is constant: rate × duration hits were due.
	res.offered = int64(float64(rate) * d.Seconds())
	res.ratio = float64(ok) / float64(res.offered)
	res.latP99 = r.Latencies.P99
	late, err := vegetaLateness(bin, outFile, rate)
	if err != nil {
		log.Printf("vegeta lateness: %v", err)
		res.lateKnown = false
		return res
	}
	res.lateP99 = late
	return res
}

// vegetaLateness returns the p99 send lateness of a vegeta run. vegeta's
// pacer is constant: hit seq is due at start + seq/rate. Its start is not
// recorded, so it is fitted as the latest start that makes no hit early,
// which can only understate the lateness. A hit's timestamp is taken when a
// worker begins it, before vegeta's client gets a connection and writes,
// so this too favours vegeta.
func vegetaLateness(bin, results string, rate int) (time.Duration, error) {
	cmd := exec.Command(bin, "encode", "--to", "json", results)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	// Streamed, keeping one number per hit: this process's memory is what
	// the next child's max RSS starts from (see usage).
	period := float64(time.Second) / float64(rate)
	var slots []int64 // timestamp − seq × period
	dec := json.NewDecoder(stdout)
	for {
		var h struct {
			Seq       int64     `json:"seq"`
			Timestamp time.Time `json:"timestamp"`
		}
		if err := dec.Decode(&h); err == io.EOF {
			break
		} else if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return 0, fmt.Errorf("vegeta encode: %w", err)
		}
		slots = append(slots, h.Timestamp.UnixNano()-int64(float64(h.Seq)*period))
	}
	if err := cmd.Wait(); err != nil {
		return 0, err
	}
	if len(slots) == 0 {
		return 0, fmt.Errorf("no hits in %s", results)
	}
	start := slices.Min(slots)
	for i := range slots {
		slots[i] -= start
	}
	slices.Sort(slots)
	return time.Duration(slots[len(slots)*99/100]), nil
}

// usage reads a finished child's CPU time and max RSS. Go starts children
// with vfork, so a child's ru_maxrss also covers this process's RSS at the
// time: children are started only after freeMemory.
func usage(cmd *exec.Cmd, res *result) {
	if cmd.ProcessState == nil {
		return
	}
	res.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.rssKB = ru.Maxrss
	}
}

// runServer is the minimal server both tools hit: 200 with a 2-byte body.
func runServer(addr string) {
	ok := []byte("ok")
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(ok)
	})}
	log.Fatal(srv.ListenAndServe())
}

// CPU lists for taskset (-tool-cpus, -server-cpus); "" leaves a process
// free to run anywhere.
var toolCPUs, serverCPUs string

// on is exec.Command(name, args...), confined to cpus when given. taskset
// execs name in its own process, so the child's pid, rusage and /proc
// entries are name's.
func on(cpus, name string, args ...string) *exec.Cmd {
	if cpus == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("taskset", append([]string{"-c", cpus, name}, args...)...)
}

func orAll(cpus string) string {
	if cpus == "" {
		return "all"
	}
	return cpus
}

// runRawServer answers every HTTP/1.1 request on a kept-alive connection
// with a canned 200 "ok", reading just enough to find where each request
// ends (its headers, and a Content-Length body). It is the server under
// test when the generator's limit, not the server's, is being measured: a
// few µs of CPU per request where net/http spends about 40.
func runRawServer(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 0, 16<<10)
			var out []byte
			for {
				if len(buf) == cap(buf) {
					return // a request larger than the buffer: not this benchmark's
				}
				n, err := c.Read(buf[len(buf):cap(buf)])
				if err != nil {
					return
				}
				buf = buf[:len(buf)+n]
				out = out[:0]
				for {
					end := bytes.Index(buf, []byte("\r\n\r\n"))
					if end < 0 {
						break
					}
					need := end + 4 + contentLength(buf[:end])
					if len(buf) < need {
						break
					}
					out = append(out, answer...)
					buf = buf[:copy(buf, buf[need:])]
				}
				if len(out) > 0 {
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}
		}()
	}
}

// contentLength is the Content-Length of a request's header block (0 when
// it has none).
func contentLength(head []byte) int {
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			n, _ := strconv.Atoi(string(bytes.TrimSpace(v)))
			return n
		}
	}
	return 0
}

func startServer(kind string) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	self, _ := os.Executable()
	cmd := on(serverCPUs, self, "-server", kind, "-serve", addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	serverPid = cmd.Process.Pid
	return addr, func() { cmd.Process.Kill(); cmd.Wait() }
}

// shardsResult is one run of the shards comparison.
type shardsResult struct {
	k                        int
	independent              string // "": shards; else K unsharded processes of this arrival kind
	offered, sent, completed int64
	cpu, pacer               time.Duration // all processes; their busiest threads
	lateP99                  time.Duration
	rssKB                    int64
	load                     string
}

func (r shardsResult) print() {
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(max(r.sent, 1)) }
	what := strconv.Itoa(r.k)
	switch r.independent {
	case "poisson":
		what = fmt.Sprintf("%d unsharded, Poisson at 1/%d", r.k, r.k)
	case "gamma":
		what = fmt.Sprintf("%d unsharded, gamma shape %d at 1/%d", r.k, r.k, r.k)
	}
	fmt.Printf("| %s | %d | %d | %d | %.2f | %.1f | %.1f | %v | %d | %s |\n", what, r.offered, r.sent, r.completed, r.cpu.Seconds(),
		per(r.cpu), per(r.pacer), r.lateP99, r.rssKB/1024, r.load)
}

// runShards sends one Poisson schedule from k processes, each its shard
// (k = 1: one unsharded process), then merges their summaries
// (--shard merge/k); independent ("poisson", "gamma") runs k unsharded
// processes of rate/k instead (gamma: of shape k). Each process's CPU comes
// from its rusage; its busiest thread's (the pacer's) from /proc, sampled
// while it runs.
func runShards(bin, target string, rate int, d time.Duration, k int, independent string) shardsResult {
	freeMemory()
	dir, _ := os.MkdirTemp("", "shards")
	defer os.RemoveAll(dir)
	attempt := fmt.Sprintf("bench-%d-%d", k, time.Now().UnixNano())
	args := func(extra ...string) []string {
		return append([]string{"loadgen", "run", "--json", "--no-progress", "--target", target, "--arrival", "poisson",
			"--rate", strconv.Itoa(rate), "--duration", d.String(), "--timeout", "5s", "--drain", "2s", "--seed", "1", "--out", dir}, extra...)
	}
	res := shardsResult{k: k, independent: independent}
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := range k {
		a := args()
		switch {
		case independent == "gamma":
			a = args("--arrival", "gamma", "--burstiness", strconv.Itoa(k), "--rate", strconv.Itoa(rate/k), "--seed", strconv.Itoa(i+2), "--out", filepath.Join(dir, strconv.Itoa(i)))
		case independent != "":
			a = args("--rate", strconv.Itoa(rate/k), "--seed", strconv.Itoa(i+2), "--out", filepath.Join(dir, strconv.Itoa(i)))
		case k > 1:
			a = args("--shard", fmt.Sprintf("%d/%d", i, k))
		}
		cmd := on(toolCPUs, bin, a...)
		cmd.Env = append(os.Environ(), "GPUORCH_SHARD_ATTEMPT="+attempt)
		out := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, os.Stderr
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	busiest := make([]time.Duration, k)
	done := make(chan struct{})
	go func() {
		for {
			for i, c := range cmds {
				busiest[i] = max(busiest[i], busiestThread(c.Process.Pid))
			}
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			log.Printf("shard: %v", err)
		}
	}
	close(done)
	res.load = benchkit.LoadAvg()
	var pr result
	for i, c := range cmds {
		usage(c, &pr)
		res.cpu += pr.cpu
		res.rssKB = max(res.rssKB, pr.rssKB)
		res.pacer += busiest[i]
	}
	type total struct {
		Total struct {
			Offered, Sent, Completed int64
			Lateness                 struct{ P99 time.Duration }
		}
	}
	if independent != "" {
		for _, o := range outs {
			var sum total
			if err := json.Unmarshal(o.Bytes(), &sum); err != nil {
				log.Printf("summary: %v", err)
			}
			res.offered += sum.Total.Offered
			res.sent += sum.Total.Sent
			res.completed += sum.Total.Completed
			res.lateP99 = max(res.lateP99, sum.Total.Lateness.P99) // the worst process's
		}
		return res
	}
	out := outs[0]
	if k > 1 {
		m := exec.Command(bin, args("--shard", fmt.Sprintf("merge/%d", k))...)
		m.Env = append(os.Environ(), "GPUORCH_SHARD_ATTEMPT="+attempt)
		b, err := m.Output()
		if err != nil {
			log.Printf("merge: %v", err)
		}
		out = bytes.NewBuffer(b)
	}
	var sum total
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		log.Printf("summary: %v", err)
	}
	res.offered, res.sent, res.completed, res.lateP99 = sum.Total.Offered, sum.Total.Sent, sum.Total.Completed, sum.Total.Lateness.P99
	return res
}

// serverPid is the server's process, for its CPU time (procCPU).
var serverPid int

// procCPU is the CPU time (user + system) of process pid so far.
func procCPU(pid int) time.Duration { return statCPU(fmt.Sprintf("/proc/%d/stat", pid)) }

// statCPU reads utime + stime from a /proc stat file (a process's or a
// thread's); 0 when it cannot.
func statCPU(path string) time.Duration {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	// pid (comm) state … utime(14) stime(15): fields after the last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / 100 // clock ticks: USER_HZ = 100
}

// busiestThread is the CPU time (user + system) of process pid's busiest
// thread so far, from /proc/pid/task/*/stat.
func busiestThread(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	var best time.Duration
	for _, t := range tasks {
		best = max(best, statCPU(t))
	}
	return best
}
