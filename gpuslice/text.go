package gpuslice

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// This file holds the text renderings of gpuslice's reports (what `gpuorch
// nodes`, `admin`, `slice plan` and `slice enforce` print); --json prints
// the same values as JSON.

// WriteNodes writes nodes as a table, one row per device kind (and one for
// a node's note): host, status (with Slurm's state), type, device, how many
// are available, peak FP16 TFLOPS and the device's details.
func WriteNodes(w io.Writer, nodes []Node) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATUS\tTYPE\tDEVICE\tAVAILABLE\tPEAK FP16 TFLOPS\tDETAIL")
	for _, n := range nodes {
		status := n.Status
		if n.SlurmState != "" {
			status += " (" + strings.ToLower(n.SlurmState) + ")"
		}
		for _, d := range n.Devices {
			peak := "-"
			if d.DeviceConfig.PeakFP16TFLOPS != nil {
				peak = fmt.Sprintf("%g", *d.DeviceConfig.PeakFP16TFLOPS)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", n.Hostname, status, d.Type, d.Name, d.AvailableCount, peak, deviceDetail(n, d))
		}
		if n.Note != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\tnote: %s\n", n.Hostname, status, n.Note)
		}
	}
	return tw.Flush()
}

// deviceDetail is the DETAIL column: memory, MIG modes, shards in use,
// CPU cores, driver.
func deviceDetail(n Node, d NodeDevice) string {
	var parts []string
	if v, ok := infoInt(d.DeviceInfo["memory_total_bytes"]); ok {
		parts = append(parts, "mem "+Bytes(v).String())
	}
	switch v := d.DeviceInfo["mig_mode"].(type) {
	case []string:
		parts = append(parts, "MIG "+strings.Join(v, ","))
	case []any: // after a JSON round trip (--probe)
		parts = append(parts, fmt.Sprintf("MIG %v", v))
	}
	if v, ok := infoInt(d.DeviceInfo["shards"]); ok && d.Type == "gpu" {
		parts = append(parts, fmt.Sprintf("shards %v/%d used", d.DeviceInfo["shards_allocated"], v))
	}
	if v, ok := infoInt(d.DeviceInfo["num_virtual_cores"]); ok {
		parts = append(parts, fmt.Sprintf("%d cores", v))
	}
	if d.Type == "gpu" && n.Driver != "" {
		parts = append(parts, "driver "+n.Driver)
	}
	return strings.Join(parts, ", ")
}

// infoInt reads a number from device_info, which holds Go ints locally and
// float64s after a JSON round trip.
func infoInt(v any) (uint64, bool) {
	switch x := v.(type) {
	case int:
		return uint64(x), true
	case uint64:
		return x, true
	case float64:
		return uint64(x), true
	}
	return 0, false
}

// WriteText writes the plan for people: one action a line (with its
// command), then how many changes `gpuorch admin apply` would make and how
// many are manual; or that the cluster matches model (the pools file).
// Warnings are not written: the caller decides where they go.
func (p *AdminPlan) WriteText(w io.Writer, model string) error {
	var b bytes.Buffer
	if len(p.Actions) == 0 {
		fmt.Fprintln(&b, "up to date: the cluster matches", model)
	} else {
		for _, a := range p.Actions {
			fmt.Fprintln(&b, a.String())
		}
		fmt.Fprintf(&b, "\n%d change(s) for `gpuorch admin apply`", p.Changes())
		if n := len(p.Actions) - p.Changes(); n > 0 {
			fmt.Fprintf(&b, ", %d manual", n)
		}
		fmt.Fprintln(&b)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WriteApplied writes what Admin.Apply did, a "done:" line per action, and,
// when it finished (complete), a last line: nothing to do (the cluster
// matches model), or how many changes were applied and verified.
func WriteApplied(w io.Writer, done []Action, model string, complete bool) error {
	b := doneLines(done)
	if complete {
		if len(done) == 0 {
			fmt.Fprintln(b, "nothing to do: the cluster matches", model)
		} else {
			fmt.Fprintf(b, "applied %d change(s); verified\n", len(done))
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WriteRemoved writes what Admin.Remove did, a "done:" line per action, and,
// when it finished (complete) having done nothing, "nothing to remove".
func WriteRemoved(w io.Writer, done []Action, complete bool) error {
	b := doneLines(done)
	if complete && len(done) == 0 {
		fmt.Fprintln(b, "nothing to remove")
	}
	_, err := w.Write(b.Bytes())
	return err
}

func doneLines(done []Action) *bytes.Buffer {
	var b bytes.Buffer
	for _, a := range done {
		fmt.Fprintln(&b, "done:", a.String())
	}
	return &b
}

// WriteText writes the slice for people: the resolved workload (and where
// its QoS came from), requests and limits, the GPU, the shards, the sbatch
// options, the environment, what happens on a VRAM overrun (and a compute
// overrun, when the QoS says more than the default report) and the MPS
// request.
func (s Slice) WriteText(w io.Writer) error {
	var b bytes.Buffer
	wl := s.Workload
	fmt.Fprintf(&b, "workload   pool %s, qos %s (%s)", wl.Pool, wl.QoS, wl.QoSFrom)
	if wl.Profile != "" {
		fmt.Fprintf(&b, ", profile %s", wl.Profile)
	}
	fmt.Fprintf(&b, ", replicas %d, local GPU %v\n", wl.Replicas, wl.IsLocalGPU)
	fmt.Fprintf(&b, "request    %g TFLOPS, %s VRAM\n", wl.Requests.TFLOPS, wl.Requests.VRAM)
	fmt.Fprintf(&b, "limit      %g TFLOPS, %s VRAM\n", wl.Limits.TFLOPS, wl.Limits.VRAM)
	fmt.Fprintf(&b, "gpu        %s: %g TFLOPS peak FP16, %s (%s)\n", s.GPU.Name, s.GPU.PeakFP16, s.GPU.Memory, s.GPU.MatchedBy)
	fmt.Fprintf(&b, "shards     %d of %d per GPU (compute %d, vram %d)\n", s.Shards, s.ShardsPerGPU, s.ComputeShards, s.VRAMShards)
	b.WriteString("sbatch    ")
	for _, kv := range s.SbatchOptions() {
		if kv[1] == "" {
			fmt.Fprintf(&b, " --%s", kv[0])
		} else {
			fmt.Fprintf(&b, " --%s=%s", kv[0], kv[1])
		}
	}
	b.WriteByte('\n')
	for _, k := range s.EnvNames() {
		fmt.Fprintf(&b, "env        %s=%s\n", k, s.Env[k])
	}
	fmt.Fprintf(&b, "overrun    %s (grace %s)\n", s.OnOverrun, s.Grace)
	if s.OnComputeOverrun != "" && s.OnComputeOverrun != ActionReport || s.ComputeWindow > 0 {
		window := "the enforcer's --compute-sustain"
		if s.ComputeWindow > 0 {
			window = s.ComputeWindow.String()
		}
		fmt.Fprintf(&b, "compute    %s after %s over the limit\n", s.OnComputeOverrun, window)
	}
	if s.MPS != nil {
		fmt.Fprintf(&b, "mps        comment %s: the MPS prolog runs a daemon for the job in %s/<jobid>\n", s.MPS.Token(), s.MPS.Dir)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WriteText writes the event as one line: when, the job and its QoS, what
// went over which limit by how much, what was done to which processes, and
// the error if the action failed.
func (ev Event) WriteText(w io.Writer) error {
	line := fmt.Sprintf("%s job %s qos %s %s over limit (%d > %d): %s pids %v", ev.Time.Format(time.RFC3339Nano), ev.Job, ev.QoS, ev.Kind, ev.Used, ev.Limit, ev.Action, ev.PIDs)
	if ev.Err != "" {
		line += " (" + ev.Err + ")"
	}
	_, err := io.WriteString(w, line+"\n")
	return err
}
