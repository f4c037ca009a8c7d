package gpuslice

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Bytes
		bad  bool
	}{
		{"4Gi", 4 * GiB, false}, {"4GiB", 4 * GiB, false}, {"512Mi", 512 * MiB, false},
		{"16GB", 16e9, false}, {"1.5Gi", 3 * GiB / 2, false}, {"1024", 1024, false}, {" 2 Gi ", 2 * GiB, false},
		{"", 0, true}, {"Gi", 0, true}, {"-1Gi", 0, true}, {"1e9", 0, true}, {"NaN", 0, true}, {"4 parsecs", 0, true}, {"0x10", 0, true},
	} {
		got, err := ParseBytes(c.in)
		if (err != nil) != c.bad || (!c.bad && got != c.want) {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, bad=%v", c.in, got, err, c.want, c.bad)
		}
	}
	if s := (3 * GiB).String(); s != "3Gi" {
		t.Errorf("String = %q", s)
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"4Gi", "1.5GB", "12", "7Ti", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBytes(s)
		if err != nil {
			return
		}
		// What String prints must read back as the same amount.
		b2, err := ParseBytes(b.String())
		if err != nil || b2 != b {
			t.Fatalf("%q → %d → %q → %d, %v", s, b, b.String(), b2, err)
		}
	})
}

func TestLookupGPU(t *testing.T) {
	for _, c := range []struct {
		name string
		peak float64
		mem  Bytes
	}{
		{"NVIDIA A100-SXM4-80GB", 312, 80 * GiB},
		{"Mock NVIDIA A100-SXM4-40GB", 312, 40 * GiB},
		{"NVIDIA H100 80GB HBM3", 989, 80 * GiB},
		{"NVIDIA H100 PCIe", 835, 80 * GiB},
		{"NVIDIA H100 NVL", 989, 94 * GiB},
		{"NVIDIA H200 141GB HBM3e", 989, 141 * GiB},
		{"NVIDIA H20", 148, 96 * GiB},
		{"NVIDIA L40S", 365, 48 * GiB},
		{"NVIDIA L40", 181, 48 * GiB},
		{"NVIDIA L4", 121, 24 * GiB},
		{"NVIDIA A10G", 125, 24 * GiB},
		{"NVIDIA A10", 125, 24 * GiB},
		{"Tesla T4", 65, 16 * GiB},
		{"Tesla V100-SXM2-16GB", 125, 16 * GiB},
		{"NVIDIA GeForce RTX 4090", 165.16, 24 * GiB},
	} {
		g, err := LookupGPU(c.name, nil)
		if err != nil || g.PeakFP16 != c.peak || g.Memory != c.mem {
			t.Errorf("LookupGPU(%q) = %g TFLOPS %s (%s), %v; want %g %s", c.name, g.PeakFP16, g.Memory, g.MatchedBy, err, c.peak, c.mem)
		}
	}
	if _, err := LookupGPU("Matrox G200", nil); err == nil || !strings.Contains(err.Error(), "peak_fp16_tflops") {
		t.Errorf("unknown GPU: err = %v", err)
	}
	g, err := LookupGPU("NVIDIA A100-SXM4-80GB", map[string]GPUSpec{"NVIDIA A100-SXM4-80GB": {PeakFP16: 300}})
	if err != nil || g.PeakFP16 != 300 || g.Memory != 80*GiB || g.MatchedBy != "override" {
		t.Errorf("override: %+v %v", g, err)
	}
}

const testModel = `
[slurm]
prefix = "t_"
[pools.a100]
nodes = "node[1-2]"
gpu_model = "NVIDIA A100-SXM4-40GB"
gpus_per_node = 4
shards_per_gpu = 8
default_qos = "low"
[pools.h100]
nodes = "node[3-4]"
gpu_model = "NVIDIA H100 80GB HBM3"
gpus_per_node = 4
shards_per_gpu = 100
oversubscription = 2
[qos.low]
[qos.medium]
[qos.high]
grace_time = "5s"
[qos.critical]
[profiles.p]
pool = "a100"
qos = "medium"
is_local_gpu = true
replicas = 2
requests = { tflops = 5, vram = "3Gi" }
limits = { tflops = 15, vram = "3Gi" }
autoscaling = { enabled = true, min_replicas = 1, max_replicas = 5 }
[profiles.g]
pool = "h100"
requests = { tflops = 100, vram = "8Gi" }
`

func mustModel(t testing.TB, s string) *Model {
	t.Helper()
	m, err := ParseModel([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseModelDefaults(t *testing.T) {
	m := mustModel(t, testModel)
	if m.Slurm.IncludeFile != DefaultIncludeFile {
		t.Errorf("include file %q", m.Slurm.IncludeFile)
	}
	if *m.QoS["critical"].Priority != 100 || *m.QoS["low"].Priority != 10 {
		t.Errorf("default priorities not applied")
	}
	if m.QoS["low"].OnOverrun != ActionRequeue || m.QoS["high"].OnOverrun != ActionTerminate {
		t.Errorf("default overrun actions: low %s high %s", m.QoS["low"].OnOverrun, m.QoS["high"].OnOverrun)
	}
	if m.QoS["high"].GraceTime.D() != 5*time.Second || m.QoS["low"].GraceTime.D() != 30*time.Second {
		t.Errorf("grace times")
	}
	if m.Pools["a100"].GPU.PeakFP16 != 312 || m.Pools["h100"].Oversubscription != 2 {
		t.Errorf("pool resolution: %+v", m.Pools["a100"].GPU)
	}
	if m.Partition("a100") != "t_a100" || m.SlurmQoS("high") != "t_high" {
		t.Errorf("names")
	}
}

func TestParseModelErrors(t *testing.T) {
	for _, c := range []struct {
		name, doc, want string
	}{
		{"unknown key", testModel + "\n[pools.x]\nnodes=\"n1\"\ngpu_modle = \"A100\"\n", `unknown key "pools.x.gpu_modle"`},
		{"unknown key line", "[slurm]\nprefix = \"a\"\nbogus = 1\n[qos.low]\n[pools.a]\nnodes=\"n\"\ngpu_model=\"A100\"\ngpus_per_node=1\n", `3: unknown key "slurm.bogus"`},
		{"inline table key", strings.Replace(testModel, `vram = "8Gi" }`, `vram = "8Gi", vram_limt = 1 }`, 1), `unknown key "profiles.g.requests.vram_limt"`},
		{"syntax", "[pools\n", "2: expected"},
		{"bad qos name", testModel + "[qos.ultra]\n", "qos.ultra: unknown level"},
		{"bad vram", strings.Replace(testModel, `"3Gi" }`, `"3 bananas" }`, 1), "bad memory quantity"},
		{"unknown gpu", strings.Replace(testModel, "NVIDIA H100 80GB HBM3", "Matrox G200", 1), "peak FP16 TFLOPS unknown"},
		{"valid", testModel, ""},
		{"default qos missing", strings.Replace(testModel, `default_qos = "low"`, `default_qos = "gold"`, 1), `default_qos "gold"`},
		{"profile pool", strings.Replace(testModel, `pool = "h100"`, `pool = "tpu"`, 1), `profiles.g.pool "tpu"`},
		{"nodes injection", strings.Replace(testModel, `nodes = "node[1-2]"`, `nodes = "node1 Default=YES"`, 1), "hostlist"},
		{"prefix", strings.Replace(testModel, `prefix = "t_"`, `prefix = "T-"`, 1), "slurm.prefix"},
		{"preempt mode", strings.Replace(testModel, "[qos.low]", "[qos.low]\npreempt_mode = \"suspend\"", 1), "suspend keeps VRAM"},
		{"compute overrun", strings.Replace(testModel, "[qos.low]", "[qos.low]\non_compute_overrun = \"throttle\"", 1), `qos.low.on_compute_overrun "throttle": want report, terminate or requeue`},
		{"compute window", strings.Replace(testModel, "[qos.low]", "[qos.low]\ncompute_window = \"-1s\"", 1), "qos.low.compute_window -1s: must not be negative"},
		{"priority inversion", strings.Replace(testModel, "[qos.critical]", "[qos.critical]\npriority = 1", 1), "qos.critical.priority 1 is below"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseModel([]byte(c.doc))
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestUnknownKeyLine(t *testing.T) {
	doc := "[slurm]\nprefix = \"a\"\n\n[qos.low]\n\n[pools.a]\nnodes = \"n\"\ngpu_model = \"A100\"\ngpus_per_node = 1\nshard_per_gpu = 4\n"
	_, err := ParseModel([]byte(doc))
	if err == nil || !strings.HasPrefix(err.Error(), "10: ") {
		t.Fatalf("err = %v, want line 10", err)
	}
}

func TestExampleModel(t *testing.T) {
	m, err := LoadModel("../examples/pools.toml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.PlanOverride(Override{Profile: "small-infer"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Partition != "gs_a100" || s.SlurmQoS != "gs_medium" {
		t.Errorf("example plan: %+v", s)
	}
}

func FuzzParseModel(f *testing.F) {
	f.Add(testModel)
	f.Add("[pools.a]\nnodes=\"x\"\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseModel([]byte(s))
		if err != nil {
			if !strings.Contains(err.Error(), ": ") {
				t.Fatalf("error without a line prefix: %v", err)
			}
			return
		}
		// A model that loads must produce only safe Slurm lines.
		for _, l := range m.PartitionLines() {
			if strings.ContainsAny(l, "\n#\"'") {
				t.Fatalf("unsafe partition line %q", l)
			}
		}
	})
}

// Every decoding error names the line and the key, as LoadModel adds the file.
func TestParseModelLines(t *testing.T) {
	base := "[slurm]\nprefix = \"a\"\n[qos.low]\ngrace_time = \"5s\"\n[pools.a]\nnodes = \"n\"\ngpu_model = \"A100\"\ngpus_per_node = 1\n"
	gb := strings.Replace(base, `"A100"`, `"NVIDIA A100-SXM4-80GB"`, 1) // memory known
	for _, c := range []struct{ name, doc, want string }{
		{"unknown key", strings.Replace(base, "gpus_per_node", "gpu_per_node", 1), `8: unknown key "pools.a.gpu_per_node" (did you mean "gpus_per_node"?)`},
		{"wrong type", strings.Replace(base, "gpus_per_node = 1", `gpus_per_node = "one"`, 1), `8: pools.a.gpus_per_node: incompatible types: TOML value has type string; destination has type integer`},
		{"bad duration", strings.Replace(base, `"5s"`, `"5"`, 1), `4: qos.low.grace_time: invalid duration "5" (want e.g. "500ms", "30s", "2m")`},
		{"negative duration", strings.Replace(base, `"5s"`, `"-5s"`, 1), `4: qos.low.grace_time -5s: must not be negative`},
		{"bad quantity", base + "[profiles.p]\nrequests = { vram = \"lots\" }\n", `10: profiles.p.requests.vram: bad memory quantity "lots" (want e.g. 4Gi, 512Mi, 16GB)`},
		// A tflops request or limit written as 0, NaN, negative or above
		// the pool's peak is refused at its line, naming pool and profile.
		{"tflops limit 0", gb + "[profiles.p]\nrequests = { vram = \"1Gi\" }\nlimits = { tflops = 0, vram = \"1Gi\" }\n",
			`11: profiles.p.limits.tflops 0: 0 TFLOPS would give 100 % of the SMs; leave tflops out for a VRAM-only slice (pool a, profile p)`},
		{"tflops request 0", gb + "[profiles.p]\nrequests = { tflops = 0.0 }\n",
			`10: profiles.p.requests.tflops 0: 0 TFLOPS would give 100 % of the SMs; leave tflops out for a VRAM-only slice (pool a, profile p)`},
		{"tflops NaN", gb + "[profiles.p]\nlimits = { tflops = nan }\n", `10: profiles.p.limits.tflops NaN: not a number (pool a, profile p)`},
		{"tflops negative", gb + "[profiles.p]\n\n[profiles.p.limits]\ntflops = -5\n", `12: profiles.p.limits.tflops -5: must be positive (pool a, profile p)`},
		{"tflops above peak", gb + "[profiles.p]\npool = \"a\"\nlimits = { tflops = 400 }\n",
			`11: profiles.p.limits.tflops 400: above the peak of one NVIDIA A100-SXM4-80GB (312 TFLOPS) (pool a, profile p)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseModel([]byte(c.doc))
			if err == nil || err.Error() != c.want {
				t.Errorf("got  %v\nwant %s", err, c.want)
			}
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Errorf("not invalid input: %v", err)
			}
		})
	}
	p := filepath.Join(t.TempDir(), "pools.toml")
	if err := os.WriteFile(p, []byte(strings.Replace(base, "gpus_per_node", "gpu_per_node", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadModel(p); err == nil || !strings.HasPrefix(err.Error(), p+`:8: unknown key "pools.a.gpu_per_node"`) {
		t.Errorf("LoadModel: %v", err)
	}
}

// poolsDoc is a valid pools file whose line numbers the tests below name.
const poolsDoc = `[slurm]
prefix = "a"
include_file = "/etc/slurm/gpuorch-pools.conf"
[qos.low]
[pools.a]
nodes = "node[1-2]"
gpu_model = "NVIDIA A100-SXM4-80GB"
gpus_per_node = 1
[pools.b]
nodes = "node[3-4]"
gpu_model = "NVIDIA A100-SXM4-80GB"
gpus_per_node = 1
oversubscription = 2.0
[profiles.p]
pool = "a"
requests = { tflops = 5, vram = "3Gi" }
limits = { tflops = 15, vram = "3Gi" }
[gpu_models."NVIDIA A100-SXM4-80GB"]
peak_fp16_tflops = 300.0
`

// TestParseModelRefuses: what would plan wrong shards, let apply rewrite a
// file outside Slurm's configuration, or give one node to two pools is
// refused when the file is read, at the line of the key at fault.
func TestParseModelRefuses(t *testing.T) {
	t.Setenv("SLURM_CONF", "")
	if _, err := ParseModel([]byte(poolsDoc)); err != nil {
		t.Fatalf("the base document: %v", err)
	}
	sub := func(old, new string) string {
		if !strings.Contains(poolsDoc, old) {
			t.Fatalf("%q not in the base document", old)
		}
		return strings.Replace(poolsDoc, old, new, 1)
	}
	const inDir = "must be a file directly in Slurm's configuration directory /etc/slurm (beside slurm.conf; SLURM_CONF says where that is), which apply rewrites as root"
	for _, c := range []struct{ name, doc, want string }{
		{"oversubscription nan", sub("2.0", "nan"), `13: pools.b.oversubscription NaN: want 1..100 (a ratio, 1 = no overselling)`},
		{"oversubscription inf", sub("2.0", "inf"), `13: pools.b.oversubscription +Inf: want 1..100 (a ratio, 1 = no overselling)`},
		{"oversubscription below 1", sub("2.0", "0.5"), `13: pools.b.oversubscription 0.5: want 1..100`},
		{"peak nan", sub("300.0", "nan"), `19: gpu_models."NVIDIA A100-SXM4-80GB".peak_fp16_tflops NaN: want a positive number of TFLOPS`},
		{"peak inf", sub("300.0", "inf"), `19: gpu_models."NVIDIA A100-SXM4-80GB".peak_fp16_tflops +Inf: want a positive number of TFLOPS`},
		{"include outside", sub("/etc/slurm/gpuorch-pools.conf", "/etc/passwd"), `3: slurm.include_file "/etc/passwd": ` + inDir},
		{"include relative", sub("/etc/slurm/gpuorch-pools.conf", "gpuorch-pools.conf"), `3: slurm.include_file "gpuorch-pools.conf": ` + inDir},
		{"include dotdot", sub("/etc/slurm/gpuorch-pools.conf", "/etc/slurm/../shadow"), `3: slurm.include_file "/etc/slurm/../shadow": ` + inDir},
		{"include deeper", sub("/etc/slurm/gpuorch-pools.conf", "/etc/slurm/x/pools.conf"), `3: slurm.include_file "/etc/slurm/x/pools.conf": ` + inDir},
		{"include slurm.conf", sub("/etc/slurm/gpuorch-pools.conf", "/etc/slurm/slurm.conf"), `3: slurm.include_file "/etc/slurm/slurm.conf": is Slurm's own slurm.conf: name a file of gpuorch's own, such as /etc/slurm/gpuorch-pools.conf`},
		{"include gres.conf", sub("/etc/slurm/gpuorch-pools.conf", "/etc/slurm/gres.conf"), `is Slurm's own gres.conf`},
		{"shared nodes", sub(`nodes = "node[3-4]"`, `nodes = "node[2-3]"`), `10: pools.b.nodes "node[2-3]": node2 is in pools.a too (line 6): a node belongs to one pool`},
		{"shared by another spelling", sub(`nodes = "node[3-4]"`, `nodes = "node3,node1"`), `10: pools.b.nodes "node3,node1": node1 is in pools.a too (line 6)`},
		{"bad hostlist", sub(`nodes = "node[3-4]"`, `nodes = "node[4-3]"`), `10: pools.b.nodes "node[4-3]": host list "node[4-3]": range "4-3" runs backwards`},
		{"tflops request above limit", sub("tflops = 5,", "tflops = 20,"), `16: profiles.p.requests.tflops 20 is above profiles.p.limits.tflops 15: a request cannot exceed its limit`},
		{"vram request above limit", sub(`vram = "3Gi" }
limits`, `vram = "4Gi" }
limits`), `16: profiles.p.requests.vram 4Gi is above profiles.p.limits.vram 3Gi: a request cannot exceed its limit`},
		{"negative grace, at its line", sub("[qos.low]", "[qos.low]\ngrace_time = \"-5s\""), `5: qos.low.grace_time -5s: must not be negative`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseModel([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %s", err, c.want)
			}
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Errorf("not invalid input: %v", err)
			}
		})
	}

	// Slurm's configuration directory is where SLURM_CONF puts slurm.conf;
	// the default include file goes there too.
	t.Setenv("SLURM_CONF", "/opt/slurm/etc/slurm.conf")
	if _, err := ParseModel([]byte(sub("/etc/slurm/gpuorch-pools.conf", "/opt/slurm/etc/pools.conf"))); err != nil {
		t.Errorf("include file beside $SLURM_CONF: %v", err)
	}
	if _, err := ParseModel([]byte(poolsDoc)); err == nil || !strings.Contains(err.Error(), "directory /opt/slurm/etc") {
		t.Errorf("include file away from $SLURM_CONF: %v", err)
	}
	m, err := ParseModel([]byte(sub(`include_file = "/etc/slurm/gpuorch-pools.conf"`, "")))
	if err != nil || m.Slurm.IncludeFile != "/opt/slurm/etc/gpuorch-pools.conf" {
		t.Errorf("default include file with SLURM_CONF: %v, %v", m, err)
	}

	// From a file: the file name before the line.
	p := filepath.Join(t.TempDir(), "pools.toml")
	os.WriteFile(p, []byte(sub("2.0", "nan")), 0o644)
	if _, err := LoadModel(p); err == nil || !strings.HasPrefix(err.Error(), p+":13: pools.b.oversubscription NaN") {
		t.Errorf("LoadModel: %v", err)
	}
}
