package llmbench

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/gpuorch/gpuorch/gpuslice"
	"github.com/gpuorch/gpuorch/perfmodel"
)

// A node payload (workflow step 4) is Bud's node-metrics response for one
// node: {hostname, status, devices: [{name, type, device_info,
// device_config: {peak_fp16_TFLOPS, …}, available_count}], …metrics}. It is
// honoured: status must be Ready, the device the run uses must be there
// with enough available_count for tp, and its figures feed simulate.

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// registerHint tells how to register a cluster id that is not registered.
func registerHint(cl *Entry, name string) string {
	if cl.ID == "" && uuidRE.MatchString(name) {
		return fmt.Sprintf(" (an id no cluster has: register it, e.g. gpuorch bench clusters add --id %s local)", name)
	}
	return ""
}

// nodeHint tells how a node the payloads name can be mapped to an
// inventory node.
func nodeHint(cl *Entry, want string) string {
	if cl.ID != "" {
		return fmt.Sprintf("; cluster %s maps no node %q (register it again with --node %s=NODE)", cl.ID, want, want)
	}
	return fmt.Sprintf("; register the cluster with --node %s=NODE to map it (gpuorch bench clusters add)", want)
}

// deviceType is a node device's type as gpuorch says it: Bud's "cuda" is
// "gpu".
func deviceType(d gpuslice.NodeDevice) string {
	if strings.EqualFold(d.Type, "cuda") {
		return "gpu"
	}
	return strings.ToLower(d.Type)
}

// decodeNode reads one node of a step-4 payload: a hostname, or a node
// object (unknown keys, such as the node-metrics response's metrics, are
// kept out; wrong types are errors).
func decodeNode(v any) (gpuslice.Node, error) {
	if h, ok := v.(string); ok {
		return gpuslice.Node{Hostname: h}, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return gpuslice.Node{}, err
	}
	var n gpuslice.Node
	if err := json.Unmarshal(b, &n); err != nil {
		return gpuslice.Node{}, fmt.Errorf("not a node object: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	return n, checkNodePayload(n)
}

// checkNodePayload applies the node payload's own rules: status Ready when
// given, device types, counts and peaks that make sense.
func checkNodePayload(n gpuslice.Node) error {
	if n.Hostname == "" {
		return fmt.Errorf("no hostname")
	}
	if n.Status != "" && n.Status != "Ready" {
		return fmt.Errorf("node %q is %s, not Ready", n.Hostname, n.Status)
	}
	for i, d := range n.Devices {
		switch deviceType(d) {
		case "gpu", "cpu":
		default:
			return fmt.Errorf("devices[%d] (%s): type %q: want \"cuda\" (or \"gpu\") or \"cpu\"", i, d.Name, d.Type)
		}
		if d.AvailableCount < 0 {
			return fmt.Errorf("devices[%d] (%s): available_count %d is negative", i, d.Name, d.AvailableCount)
		}
		for k, p := range map[string]*float64{"peak_fp16_TFLOPS": d.DeviceConfig.PeakFP16TFLOPS,
			"hbm_bandwidth_in_GB_per_sec": d.DeviceConfig.MemoryBandwidthGBps, "mem_per_GPU_in_GB": d.DeviceConfig.MemPerDeviceGB} {
			if p != nil && (*p <= 0 || math.IsInf(*p, 0)) {
				return fmt.Errorf("devices[%d] (%s): device_config.%s %v: want a positive number", i, d.Name, k, *p)
			}
		}
	}
	return nil
}

// withInventoryMemory fills the memory of a payload device that does not
// say it from the inventory's device of the same type on that node (the
// machine gpuorch asked), so that simulate knows the memory of a CPU node.
func withInventoryMemory(p, inv gpuslice.Node) gpuslice.Node {
	out := p
	out.Devices = append([]gpuslice.NodeDevice(nil), p.Devices...)
	for i, d := range out.Devices {
		if d.DeviceConfig.MemPerDeviceGB != nil || d.DeviceInfo["memory_total_bytes"] != nil {
			continue
		}
		for _, id := range inv.Devices {
			if deviceType(id) == deviceType(d) && id.DeviceInfo["memory_total_bytes"] != nil {
				info := map[string]any{}
				for k, v := range d.DeviceInfo {
					info[k] = v
				}
				info["memory_total_bytes"] = id.DeviceInfo["memory_total_bytes"]
				info["memory_from"] = "inventory"
				out.Devices[i].DeviceInfo = info
				break
			}
		}
	}
	return out
}

// pickDevice is the device of node n the run uses: the first of type want
// ("gpu", "cpu") when given, else the first GPU, else the first device.
func pickDevice(n gpuslice.Node, want string) (gpuslice.NodeDevice, bool) {
	for _, d := range n.Devices {
		if deviceType(d) == want || want == "" && deviceType(d) == "gpu" {
			return d, true
		}
	}
	if want == "" && len(n.Devices) > 0 {
		return n.Devices[0], true
	}
	return gpuslice.NodeDevice{}, false
}

// size decides the device type the run uses and checks the node payloads
// against it: the device is there and available_count covers tp.
func (r *Resolved) size() error {
	s := r.Spec
	tp := max(s.Hardware.TP, 1)
	for i, n := range r.Nodes {
		d, ok := pickDevice(n, s.Hardware.DeviceType)
		if !r.fromPayload[i] {
			if ok && r.Device == "" {
				r.Device = deviceType(d)
			}
			continue
		}
		key := fmt.Sprintf("nodes[%d]", i)
		if !ok {
			var have []string
			for _, d := range n.Devices {
				have = append(have, deviceType(d)+" "+d.Name)
			}
			return s.errf("hardware.device_type", "%s (%s) has no %s device (devices: %s)", key, s.Nodes[i], s.Hardware.DeviceType, strings.Join(have, ", "))
		}
		if r.Device == "" {
			r.Device = deviceType(d)
		}
		switch {
		case d.AvailableCount == 0:
			return s.errf("nodes", "%s (%s): no %s available (available_count 0)", key, s.Nodes[i], d.Name)
		case tp > d.AvailableCount:
			return s.errf("hardware.tp", "%d devices per task, but %s (%s) has available_count %d of %s", tp, key, s.Nodes[i], d.AvailableCount, d.Name)
		}
	}
	return nil
}

// cpusPerTask is the CPUs a task gets on a CPU device: tp of its
// available_count units (Bud's CPU units are NUMA nodes) of
// num_virtual_cores; 0 when the payload does not say.
func cpusPerTask(d gpuslice.NodeDevice, tp int) int {
	cores := infoInt(d.DeviceInfo, "num_virtual_cores")
	if cores <= 0 || d.AvailableCount <= 0 {
		return 0
	}
	return max(1, cores*max(tp, 1)/d.AvailableCount)
}

// infoInt reads a number from device_info (decoded JSON, or gpuorch's own).
func infoInt(m map[string]any, k string) int {
	switch x := m[k].(type) {
	case int:
		return x
	case int64:
		return int(x)
	case uint64:
		return int(x)
	case float64:
		return int(x)
	case json.Number:
		n, _ := x.Int64()
		return int(n)
	}
	return 0
}

// simDevice is the simulated device a node device stands for: the GPU or
// CPU table's figures for its name, overridden by what the node says
// (Bud's device_config), its memory from the node when the table has none.
// For a CPU the figures are all its sockets' (sockets from device_info, or
// num_virtual_cores over the model's threads per socket).
func simDevice(d gpuslice.NodeDevice) (perfmodel.Device, error) {
	var dev perfmodel.Device
	var lookupErr error
	cfg := d.DeviceConfig
	if deviceType(d) == "cpu" {
		sockets := infoInt(d.DeviceInfo, "sockets")
		if sockets == 0 {
			if c, err := gpuslice.MatchCPU(d.Name); err == nil {
				sockets = c.Sockets(infoInt(d.DeviceInfo, "num_virtual_cores"))
			}
		}
		dev, lookupErr = perfmodel.LookupCPU(d.Name, sockets)
		if cfg.MemPerDeviceGB != nil && d.AvailableCount > 0 {
			dev.MemoryGB = *cfg.MemPerDeviceGB * float64(d.AvailableCount)
		}
	} else {
		dev, lookupErr = perfmodel.LookupDevice(d.Name)
		dev.Kind = "gpu"
		if cfg.MemPerDeviceGB != nil {
			dev.MemoryGB = *cfg.MemPerDeviceGB
		}
	}
	if dev.MemoryGB == 0 {
		if b := infoInt(d.DeviceInfo, "memory_total_bytes"); b > 0 {
			dev.MemoryGB = float64(b) / 1e9
		}
	}
	if cfg.PeakFP16TFLOPS != nil {
		dev.PeakTFLOPS = *cfg.PeakFP16TFLOPS
	}
	if cfg.MemoryBandwidthGBps != nil {
		dev.BandwidthGBps = *cfg.MemoryBandwidthGBps
	}
	dev.Name = d.Name
	return dev, lookupErr
}
