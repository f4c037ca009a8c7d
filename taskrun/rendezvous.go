package taskrun

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
)

// The shards of a sharded task meet in a directory of the experiment (a
// shared filesystem on a cluster): each writes <shard>.ready.json once its
// target answers and it is calibrated, and waits until every shard's is
// there. The common start is the latest ready time plus startMargin —
// every shard computes the same instant from the same files, so no shard
// leads and none has to outlive the others. A shard that fails before the
// start writes <shard>.failed.json, and the others stop at once.

// startMargin is how long after the last shard is ready the run starts:
// time for every shard to see the last ready file (a shared filesystem
// shows new files within tens of milliseconds; see docs/slurm.md for NFS).
const startMargin = 2 * time.Second

// readyRecord is a shard's <shard>.ready.json.
type readyRecord struct {
	Shard int       `json:"shard"`
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
	Wall  time.Time `json:"wall"` // when it was ready, by its own clock
	// ClockOffset is its clock minus the filesystem's, ± ClockUncertainty.
	ClockOffset      time.Duration `json:"clock_offset"`
	ClockUncertainty time.Duration `json:"clock_uncertainty"`
	// Calibration is shard 0's batch-1 latencies, which every shard uses.
	Calibration map[string]time.Duration `json:"calibration,omitempty"`
}

// failedRecord is a shard's <shard>.failed.json.
type failedRecord struct {
	Shard int    `json:"shard"`
	Host  string `json:"host"`
	Error string `json:"error"`
}

type rendezvous struct {
	dir     string
	shard   int
	count   int
	timeout time.Duration
	host    string
}

func readyName(s int) string  { return strconv.Itoa(s) + ".ready.json" }
func failedName(s int) string { return strconv.Itoa(s) + ".failed.json" }

// shardName names shard s in messages, with its host when known.
func shardName(s, count int, host string) string {
	n := fmt.Sprintf("shard %d of %d", s, count)
	if host != "" {
		n += " (" + host + ")"
	}
	return n
}

// meet publishes this shard's readiness (with its clock offset, and its
// calibration when it is shard 0) and waits for every other shard's. It
// returns the common start and shard 0's calibration. It fails when a shard
// reports a failure, when the others are not all ready within the timeout
// (then it reports its own failure, so the rest stop too), or when ctx ends.
func (r *rendezvous) meet(ctx context.Context, calib map[string]time.Duration) (start time.Time, use map[string]time.Duration, me readyRecord, err error) {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return time.Time{}, nil, me, fmt.Errorf("shard meeting place: %w", err)
	}
	off, unc, err := clockOffset(filepath.Join(r.dir, strconv.Itoa(r.shard)+".clock"))
	if err != nil {
		return time.Time{}, nil, me, err
	}
	me = readyRecord{Shard: r.shard, Host: r.host, PID: os.Getpid(), Wall: time.Now(), ClockOffset: off, ClockUncertainty: unc}
	if r.shard == 0 {
		me.Calibration = calib
	}
	if err := atomicfile.WriteJSON(filepath.Join(r.dir, readyName(r.shard)), me, 0o644); err != nil {
		return time.Time{}, nil, me, err
	}
	deadline := time.Now().Add(r.timeout)
	poll := 20*time.Millisecond + time.Duration(r.count)*100*time.Microsecond
	ready := map[int]readyRecord{}
	for {
		if err := r.scan(ready); err != nil {
			return time.Time{}, nil, me, err
		}
		if len(ready) == r.count {
			latest := ready[0].Wall
			for _, rec := range ready {
				if rec.Wall.After(latest) {
					latest = rec.Wall
				}
			}
			return latest.Add(startMargin), ready[0].Calibration, me, nil
		}
		if time.Now().After(deadline) {
			var missing []string
			for s := range r.count {
				if _, ok := ready[s]; !ok {
					missing = append(missing, strconv.Itoa(s))
				}
			}
			err := fmt.Errorf("shards %s of %d not ready after %v (they start together; see their log lines)", strings.Join(missing, ", "), r.count, r.timeout)
			r.fail(err)
			return time.Time{}, nil, me, err
		}
		select {
		case <-ctx.Done():
			return time.Time{}, nil, me, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// scan reads the ready files not read yet, and fails on a failed one.
func (r *rendezvous) scan(ready map[int]readyRecord) error {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return fmt.Errorf("shard meeting place: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if num, ok := strings.CutSuffix(name, ".failed.json"); ok {
			var f failedRecord
			if s, err := strconv.Atoi(num); err == nil && s != r.shard && readJSON(filepath.Join(r.dir, name), &f) == nil {
				return fmt.Errorf("%s failed before the start: %s", shardName(s, r.count, f.Host), f.Error)
			}
			continue
		}
		num, ok := strings.CutSuffix(name, ".ready.json")
		s, err := strconv.Atoi(num)
		if !ok || err != nil || s < 0 || s >= r.count {
			continue
		}
		if _, seen := ready[s]; seen {
			continue
		}
		var rec readyRecord
		if err := readJSON(filepath.Join(r.dir, name), &rec); err != nil {
			return fmt.Errorf("shard %d's ready file: %w", s, err)
		}
		ready[s] = rec
	}
	return nil
}

// fail tells the other shards that this one will not start.
func (r *rendezvous) fail(err error) {
	if os.MkdirAll(r.dir, 0o755) != nil {
		return
	}
	_ = atomicfile.WriteJSON(filepath.Join(r.dir, failedName(r.shard)), failedRecord{Shard: r.shard, Host: r.host, Error: err.Error()}, 0o644)
}

// readyRecords reads what the shards of an attempt published (for naming
// shards that left no summary).
func readyRecords(dir string) map[int]readyRecord {
	out := map[int]readyRecord{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if num, ok := strings.CutSuffix(e.Name(), ".ready.json"); ok {
			var rec readyRecord
			if s, err := strconv.Atoi(num); err == nil && readJSON(filepath.Join(dir, e.Name()), &rec) == nil {
				out[s] = rec
			}
		}
	}
	return out
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// clockOffset estimates this machine's wall clock minus the clock that
// stamps files in the probe's filesystem (the file server's, on a shared
// one), from the modification times of a probe file written 16 times. A
// write stamped m that ran between local times b and a bounds the offset
// to [b−m, a−m] if stamps are exact; filesystems stamp from a coarse clock
// (Linux: the last timer tick, up to 4 ms behind on this kernel) that is
// never ahead, so a−m stays an upper bound. With U the least a−m and L the
// greatest b−m: when L ≤ U the offset is (L+U)/2 ± (U−L)/2; otherwise the
// stamps were coarse, the offset is about U (the least lagging stamp), and
// L−U, which the granularity must exceed, is the uncertainty.
func clockOffset(probe string) (offset, uncertainty time.Duration, err error) {
	defer os.Remove(probe)
	lo, hi := time.Duration(math.MinInt64), time.Duration(math.MaxInt64)
	for i := range 16 {
		before := time.Now()
		if err := os.WriteFile(probe, []byte(strconv.Itoa(i)), 0o644); err != nil {
			return 0, 0, fmt.Errorf("clock probe: %w", err)
		}
		after := time.Now()
		fi, err := os.Stat(probe)
		if err != nil {
			return 0, 0, fmt.Errorf("clock probe: %w", err)
		}
		lo, hi = max(lo, before.Sub(fi.ModTime())), min(hi, after.Sub(fi.ModTime()))
		time.Sleep(time.Duration(i%4) * 300 * time.Microsecond) // other phases of a coarse clock
	}
	if lo <= hi {
		return (lo + hi) / 2, (hi - lo) / 2, nil
	}
	return hi, lo - hi, nil
}

// errNoAttempt is returned when a sharded run cannot tell its attempt.
var errNoAttempt = errors.New("a sharded run needs the id of its attempt, the same for all its shards and new for every run: " +
	"Slurm sets SLURM_JOB_ID; elsewhere set GPUORCH_SHARD_ATTEMPT")

// attemptID names the attempt the shards of one run share: GPUORCH_SHARD_ATTEMPT
// when set, else the Slurm job id and its restart count (a requeued job is
// a new attempt). Only letters, digits, '.', '_' and '-' are allowed.
func attemptID(getenv func(string) string) (string, error) {
	id := getenv("GPUORCH_SHARD_ATTEMPT")
	if id == "" {
		if job := getenv("SLURM_JOB_ID"); job != "" {
			id = job + "." + cmp.Or(getenv("SLURM_RESTART_COUNT"), "0")
		}
	}
	if id == "" {
		return "", errNoAttempt
	}
	if len(id) > 64 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" || strings.Trim(id, ".") == "" {
		return "", fmt.Errorf("shard attempt id %q: want at most 64 letters, digits, '.', '_' or '-'", id)
	}
	return id, nil
}
