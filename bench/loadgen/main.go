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
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	serve := flag.String("serve", "", "internal: run the minimal HTTP server on this address")
	gpuorch := flag.String("gpuorch", "", "gpuorch binary")
	vegeta := flag.String("vegeta", "", "vegeta binary (empty: skip vegeta)")
	modes := flag.String("modes", "sweep,cpu,accuracy", "what to run: sweep, cpu, accuracy, rss")
	gRates := flag.String("gpuorch-rates", "5000,10000,15000,20000,25000,30000,40000", "open-loop rates for gpuorch (req/s)")
	vRates := flag.String("vegeta-rates", "2500,5000,7500,10000,15000,20000", "rates for vegeta (req/s)")
	step := flag.Duration("step", 10*time.Second, "length of each sweep step")
	cpuRate := flag.Int("cpu-rate", 5000, "rate for the CPU-per-request comparison")
	cpuDur := flag.Duration("cpu-duration", 20*time.Second, "length of the CPU comparison runs")
	accRate := flag.Int("accuracy-rate", 10000, "rate of the 60 s accuracy run")
	accDur := flag.Duration("accuracy-duration", 60*time.Second, "length of the accuracy run")
	rssRate := flag.Int("rss-rate", 20000, "rate of the long RSS run")
	rssReqs := flag.Int("rss-requests", 10_000_000, "requests in the long RSS run")
	nice := flag.Int("nice", 0, "run the server and both tools at this nice value (e.g. -10 to shield them from other work on a shared machine; negative needs root)")
	flag.Parse()
	if *nice != 0 {
		// Children (server, gpuorch, vegeta) inherit it: same priority for all.
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, *nice); err != nil {
			log.Fatalf("setpriority %d: %v", *nice, err)
		}
	}
	if *serve != "" {
		runServer(*serve)
		return
	}
	if *gpuorch == "" {
		log.Fatal("give -gpuorch BIN (go build -o /tmp/gpuorch ./cmd/gpuorch)")
	}
	addr, stop := startServer()
	defer stop()
	target := "http://" + addr + "/"
	fmt.Printf("# loadgen benchmark %s, %d CPUs, nice %d, load before: %s\n", time.Now().UTC().Format(time.RFC3339), numCPU(), *nice, loadavg())
	fmt.Printf("server: minimal Go net/http on %s (own process)\n\n", addr)
	for _, m := range strings.Split(*modes, ",") {
		switch strings.TrimSpace(m) {
		case "sweep":
			fmt.Println("## highest sustained open-loop rate (Poisson for gpuorch, constant for vegeta)")
			fmt.Println("| tool | offered/s | scheduled | completed/s | completed ÷ scheduled | p99 send lateness | p99 latency (corrected for gpuorch) | failed | CPU s | load avg |")
			fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
			best := map[string]int{}
			for _, r := range ints(*gRates) {
				res := runGpuorch(*gpuorch, target, r, *step)
				res.print()
				if res.sustained(true) {
					best["gpuorch"] = r
				}
			}
			if *vegeta != "" {
				for _, r := range ints(*vRates) {
					res := runVegeta(*vegeta, target, r, *step)
					res.print()
					if res.sustained(false) {
						best["vegeta"] = r
					}
				}
			}
			fmt.Printf("\nhighest sustained: gpuorch %d/s, vegeta %d/s\n\n", best["gpuorch"], best["vegeta"])
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
		default:
			log.Fatalf("unknown mode %q", m)
		}
	}
	fmt.Printf("load after: %s\n", loadavg())
}

type result struct {
	tool                string
	rate                int
	offered, sent, done int64
	errors              int64
	achieved            float64
	lateP99, latP99     time.Duration
	cpu                 time.Duration
	rssKB               int64
	load                string
	ratio               float64 // completed ÷ scheduled
	lateKnown           bool
}

func (r result) sustained(checkLateness bool) bool {
	ok := r.ratio >= 0.99 && r.errors == 0
	if checkLateness {
		ok = ok && r.lateP99 <= time.Millisecond
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
	fmt.Printf("| %s | %d | %d | %.0f | %.1f%% | %s | %v | %d | %.1f | %s |\n", r.tool, r.rate, r.offered, r.achieved,
		100*r.ratio, late, r.latP99, r.errors, r.cpu.Seconds(), r.load)
}

func runGpuorch(bin, target string, rate int, d time.Duration) result {
	cmd := exec.Command(bin, "loadgen", "run", "--json", "--no-progress", "--target", target,
		"--arrival", "poisson", "--rate", strconv.Itoa(rate), "--duration", d.String(),
		"--timeout", "5s", "--drain", "2s", "--seed", "1")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	res := result{tool: "gpuorch", rate: rate, load: loadavg(), lateKnown: true}
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

func runVegeta(bin, target string, rate int, d time.Duration) result {
	dir, _ := os.MkdirTemp("", "vegeta")
	defer os.RemoveAll(dir)
	outFile := filepath.Join(dir, "results.bin")
	cmd := exec.Command(bin, "attack", "-rate", strconv.Itoa(rate), "-duration", d.String(), "-timeout", "5s", "-output", outFile)
	cmd.Stdin = strings.NewReader("GET " + target + "\n")
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	res := result{tool: "vegeta", rate: rate, load: loadavg()}
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
	return res
}

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

func startServer() (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	self, _ := os.Executable()
	cmd := exec.Command(self, "-serve", addr)
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
	return addr, func() { cmd.Process.Kill(); cmd.Wait() }
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
