// Command standin stands in for metaseq-train in gpuorch's tests: it
// records the rank environment it was started with and, on rank 0, prints
// Metaseq-format stats lines (--log-format json), as metaseq does.
//
// Usage: standin [metaseq-style args] — it reads --max-update,
// --log-interval, --log-format and --validate-interval-updates and ignores
// the rest. The rank record goes to $STANDIN_RECORD_DIR/rank-<RANK>.json.
// Like metaseq it logs its config as a Python dict first, validates every
// --validate-interval-updates updates and at the end (tag "valid", keys
// prefixed "valid_"), and closes the epoch with a "train" line. With
// $STANDIN_DIVERGE_AT=N the loss is inf at update N and NaN after it, and
// the run fails as metaseq's does (FloatingPointError, exit 1).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	args := os.Args[1:]
	maxUpdate, interval, format, validEvery := 20, 5, "", 0
	for i := 0; i < len(args); i++ {
		next := func() string {
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch args[i] {
		case "--max-update":
			maxUpdate, _ = strconv.Atoi(next())
		case "--log-interval":
			interval, _ = strconv.Atoi(next())
		case "--log-format":
			format = next()
		case "--validate-interval-updates":
			validEvery, _ = strconv.Atoi(next())
		}
	}
	if format != "json" {
		fmt.Fprintf(os.Stderr, "Unknown log format: %q\n", format)
		os.Exit(1)
	}
	host, _ := os.Hostname()
	rec := map[string]any{"args": args, "hostname": host}
	for _, k := range []string{"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
		"SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURMD_NODENAME", "SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES",
		"NCCL_DEBUG", "NCCL_SOCKET_IFNAME", "OMP_NUM_THREADS", "METASEQ_SAVE_DIR"} {
		if v, ok := os.LookupEnv(k); ok {
			rec[k] = v
		}
	}
	if dir := os.Getenv("STANDIN_RECORD_DIR"); dir != "" {
		b, _ := json.MarshalIndent(rec, "", "  ")
		name := fmt.Sprintf("%s/rank-%s.json", dir, os.Getenv("RANK"))
		if err := os.WriteFile(name, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "standin:", err)
			os.Exit(1)
		}
	}
	if os.Getenv("RANK") != "0" {
		return // metaseq: only rank 0 logs at INFO
	}
	world, _ := strconv.Atoi(os.Getenv("WORLD_SIZE"))
	log := func(tag, msg string) {
		fmt.Printf("%s | INFO | %s | %s\n", time.Now().UTC().Format(time.DateTime), tag, msg)
	}
	divergeAt, _ := strconv.Atoi(os.Getenv("STANDIN_DIVERGE_AT"))
	// metaseq.cli.train logs the whole config (an omegaconf DictConfig) as
	// a Python dict, then its progress.
	log("metaseq.cli.train", fmt.Sprintf("{'_name': None, 'common': {'_name': None, 'log_interval': %d, 'log_format': '%s', 'fp16': True}, 'optimization': {'_name': None, 'max_update': %d}, 'dataset': {'_name': None, 'validate_interval_updates': %d}}",
		interval, format, maxUpdate, validEvery))
	log("metaseq.cli.train", fmt.Sprintf("training on %d devices (GPUs/TPUs)", world))
	start := time.Now()
	loss := 15.9
	validLoss := 16.0
	validate := func(u int) {
		log("metaseq.cli.train", `begin validation on "valid" subset on rank 0`)
		validLoss -= 0.08
		b, _ := json.Marshal(map[string]any{"epoch": 1, "valid_loss": fmt.Sprintf("%g", validLoss), "valid_ppl": fmt.Sprintf("%g", pow2(validLoss)),
			"valid_wps": "1.2e+06", "valid_wpb": "1.04858e+06", "valid_bsz": "512", "valid_num_updates": strconv.Itoa(u)})
		log("valid", string(b))
	}
	for u := interval; u <= maxUpdate; u += interval {
		time.Sleep(50 * time.Millisecond)
		wps, ups := "0", "0"
		if u > interval {
			wps, ups = fmt.Sprintf("%g", 700000.0+float64(u)), "0.7"
		}
		loss -= 0.1
		lossText, pplText := fmt.Sprintf("%g", loss), fmt.Sprintf("%g", pow2(loss))
		switch {
		case divergeAt > 0 && u == divergeAt:
			lossText, pplText = "inf", "inf"
		case divergeAt > 0 && u > divergeAt:
			lossText, pplText = "nan", "nan"
		}
		stats := map[string]any{"epoch": 1, "loss": lossText, "ppl": pplText,
			"wps": wps, "ups": ups, "wpb": "1.04858e+06", "bsz": "512", "num_updates": strconv.Itoa(u),
			"lr": "2.80112e-07", "gnorm": nil, "clip": "100", "train_wall": "1",
			"wall": fmt.Sprintf("%g", 10+float64(u)), "cuda_gb_allocated": "19.7"}
		b, _ := json.Marshal(stats)
		log("train_inner", string(b))
		if divergeAt > 0 && u > divergeAt {
			fmt.Fprintln(os.Stderr, "FloatingPointError: Minimum loss scale reached (0.0001). Your loss is probably exploding.")
			os.Exit(1)
		}
		if validEvery > 0 && u%validEvery == 0 && u < maxUpdate {
			validate(u)
		}
	}
	log("metaseq.cli.train", fmt.Sprintf("Stopping training due to num_updates: %d >= max_update: %d", maxUpdate, maxUpdate))
	validate(maxUpdate)
	b, _ := json.Marshal(map[string]any{"epoch": 1, "train_loss": fmt.Sprintf("%g", loss+0.5), "train_num_updates": strconv.Itoa(maxUpdate),
		"train_wps": "700000", "train_wall": fmt.Sprintf("%g", 10+float64(maxUpdate))})
	log("train", string(b))
	log("metaseq.cli.train", fmt.Sprintf("done training in %.1f seconds", time.Since(start).Seconds()))
}

func pow2(x float64) float64 {
	r := 1.0
	for ; x >= 1; x-- {
		r *= 2
	}
	return r
}
