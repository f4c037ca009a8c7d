package gpuslice

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpuorch/gpuorch/internal/atomicfile"
	"github.com/gpuorch/gpuorch/internal/limitio"
	"github.com/gpuorch/gpuorch/sbatch"
)

// Admin action kinds, in the order apply runs them.
const (
	KindAddQoS      = "add-qos"       // sacctmgr add qos (without Preempt: targets may not exist yet)
	KindModifyQoS   = "modify-qos"    // sacctmgr modify qos … set (Preempt included)
	KindGrantQoS    = "grant-qos"     // sacctmgr modify user … set qos+= (slurm.users)
	KindWrite       = "write-include" // rewrite the partitions include file
	KindReconfigure = "reconfigure"   // scontrol reconfigure
	KindDeleteQoS   = "delete-qos"    // a managed level no longer in the model, after partitions stop naming it
	KindManual      = "manual"        // a change gpuorch does not make (node Gres lives in slurm.conf/gres.conf)
	KindInstallHook = "install-hook"  // write the MPS prolog/epilog hook ([mps] enabled)
)

// Action is one step of an admin plan.
type Action struct {
	Kind   string   `json:"kind"`
	Target string   `json:"target"`
	Detail string   `json:"detail"`
	Cmd    []string `json:"cmd,omitempty"` // argv, for sacctmgr/scontrol steps
}

func (a Action) String() string {
	s := fmt.Sprintf("%-13s %-16s %s", a.Kind, a.Target, a.Detail)
	if len(a.Cmd) > 0 {
		words := make([]string, len(a.Cmd))
		for i, w := range a.Cmd {
			words[i] = w
			if strings.ContainsAny(w, " \t'\"\\$`;&|<>()*?[]#~") {
				words[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
			}
		}
		s += "\n" + strings.Repeat(" ", 31) + "$ " + strings.Join(words, " ")
	}
	return s
}

// AdminPlan is the difference between a model and the running cluster.
type AdminPlan struct {
	Actions     []Action `json:"actions"`
	IncludeFile string   `json:"include_file"`
	Include     string   `json:"include"`            // the include file's wanted content
	Hook        string   `json:"mps_hook,omitempty"` // the MPS hook's wanted content ([mps] enabled)
	Warnings    []string `json:"warnings,omitempty"`
}

// Changes counts the actions apply would perform (manual ones excluded).
func (p *AdminPlan) Changes() int {
	n := 0
	for _, a := range p.Actions {
		if a.Kind != KindManual {
			n++
		}
	}
	return n
}

// SlurmQoSState is a QOS as sacctmgr shows it.
type SlurmQoSState struct {
	Name        string
	Priority    int
	Preempt     []string
	PreemptMode string
	GraceTime   time.Duration
	Description string
}

// PartitionState is a live partition as scontrol shows it.
type PartitionState struct {
	Name     string
	Nodes    string
	AllowQoS []string
	State    string
}

// ClusterState is what the admin compares the model with.
type ClusterState struct {
	QoS         map[string]SlurmQoSState
	Partitions  map[string]PartitionState
	Include     string            // current include file content ("" if absent)
	IncludeSeen bool              // the include file exists
	NodeGres    map[string]string // node → Gres as scontrol shows it
	NodeNames   map[string][]string
	// UserQoS holds, per user of slurm.users, the QOS lists of each of
	// their associations.
	UserQoS map[string][][]string
	// With [mps] enabled: the installed hook ("" if absent) and what
	// slurm.conf runs as Prolog and Epilog (scontrol show config).
	Hook           string
	Prolog, Epilog string
}

// Admin reads and changes a cluster through Slurm's CLIs.
type Admin struct {
	Run Runner
	// SlurmConf is checked for the Include line (default /etc/slurm/slurm.conf).
	SlurmConf string
	// Gpuorch is the gpuorch path the MPS hook runs when [mps] gpuorch is
	// unset; default: this executable.
	Gpuorch string
}

// slurmConfig bounds what is read of slurm.conf and the pools include file.
var slurmConfig = limitio.Config.As("Slurm config file")

func (a *Admin) run(ctx context.Context, argv ...string) ([]byte, error) {
	return runner(a.Run).Run(ctx, argv[0], argv[1:]...)
}

// ReadState gathers the cluster's QOS, partitions, include file and node Gres.
func (a *Admin) ReadState(ctx context.Context, m *Model) (*ClusterState, error) {
	st := &ClusterState{QoS: map[string]SlurmQoSState{}, Partitions: map[string]PartitionState{}, NodeGres: map[string]string{}, NodeNames: map[string][]string{}}
	out, err := a.run(ctx, "sacctmgr", "-n", "-P", "show", "qos", "format=Name,Priority,Preempt,PreemptMode,GraceTime,Description")
	if err != nil {
		return nil, fmt.Errorf("read QOS: %w", err)
	}
	if st.QoS, err = ParseQoSList(string(out)); err != nil {
		return nil, err
	}
	out, err = a.run(ctx, "scontrol", "show", "partition", "-o")
	if err != nil {
		return nil, fmt.Errorf("read partitions: %w", err)
	}
	for _, kv := range sbatch.ParseOneliners(string(out)) {
		p := PartitionState{Name: kv["PartitionName"], Nodes: kv["Nodes"], State: kv["State"]}
		if q := kv["AllowQos"]; q != "" && q != "ALL" {
			p.AllowQoS = strings.Split(q, ",")
		}
		st.Partitions[p.Name] = p
	}
	b, err := limitio.ReadFile(m.Slurm.IncludeFile, slurmConfig)
	switch {
	case err == nil:
		st.Include, st.IncludeSeen = string(b), true
	case os.IsNotExist(err):
	default:
		return nil, fmt.Errorf("read include file: %w", err)
	}
	out, err = a.run(ctx, "scontrol", "show", "node", "-o")
	if err != nil {
		return nil, fmt.Errorf("read nodes: %w", err)
	}
	for _, kv := range sbatch.ParseOneliners(string(out)) {
		st.NodeGres[kv["NodeName"]] = kv["Gres"]
	}
	st.UserQoS = map[string][][]string{}
	for _, u := range m.Slurm.Users {
		out, err := a.run(ctx, "sacctmgr", "-n", "-P", "show", "assoc", "user="+u, "format=qos")
		if err != nil {
			return nil, fmt.Errorf("read associations of %s: %w", u, err)
		}
		lists := [][]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l = strings.TrimSpace(l); l != "" || len(lists) == 0 {
				lists = append(lists, strings.Split(l, ","))
			}
		}
		st.UserQoS[u] = lists
	}
	if m.MPS.Enabled {
		if b, err := os.ReadFile(m.MPS.Hook); err == nil {
			st.Hook = string(b)
		} else if !os.IsNotExist(err) {
			return nil, fmt.Errorf("read MPS hook: %w", err)
		}
		out, err := a.run(ctx, "scontrol", "show", "config")
		if err != nil {
			return nil, fmt.Errorf("read Prolog and Epilog: %w", err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			k, v, _ := strings.Cut(l, "=")
			switch strings.TrimSpace(k) {
			case "Prolog":
				st.Prolog = strings.TrimSpace(v)
			case "Epilog":
				st.Epilog = strings.TrimSpace(v)
			}
		}
	}
	for _, name := range m.PoolNames() {
		out, err := a.run(ctx, "scontrol", "show", "hostnames", m.Pools[name].Nodes)
		if err != nil {
			return nil, fmt.Errorf("expand pools.%s.nodes: %w", name, err)
		}
		st.NodeNames[name] = strings.Fields(string(out))
	}
	return st, nil
}

// ParseQoSList reads `sacctmgr -n -P show qos format=Name,Priority,Preempt,PreemptMode,GraceTime,Description`.
func ParseQoSList(s string) (map[string]SlurmQoSState, error) {
	out := map[string]SlurmQoSState{}
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) < 6 {
			return nil, fmt.Errorf("sacctmgr qos line %q: want 6 fields", line)
		}
		q := SlurmQoSState{Name: f[0], PreemptMode: strings.ToLower(f[3]), Description: f[5]}
		if f[1] != "" {
			p, err := strconv.Atoi(f[1])
			if err != nil {
				return nil, fmt.Errorf("sacctmgr qos %s priority %q: %w", f[0], f[1], err)
			}
			q.Priority = p
		}
		if f[2] != "" {
			q.Preempt = strings.Split(f[2], ",")
			sort.Strings(q.Preempt)
		}
		g, err := ParseSlurmDuration(f[4])
		if err != nil {
			return nil, fmt.Errorf("sacctmgr qos %s gracetime: %w", f[0], err)
		}
		q.GraceTime = g
		out[q.Name] = q
	}
	return out, nil
}

// ParseSlurmDuration reads Slurm's [D-][HH:]MM:SS (and plain seconds).
func ParseSlurmDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	days := 0
	if i := strings.IndexByte(s, '-'); i >= 0 {
		d, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, fmt.Errorf("bad Slurm duration %q", s)
		}
		days, s = d, s[i+1:]
	}
	parts := strings.Split(s, ":")
	if len(parts) > 3 {
		return 0, fmt.Errorf("bad Slurm duration %q", s)
	}
	secs := 0
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad Slurm duration %q", s)
		}
		secs = secs*60 + n
	}
	return time.Duration(days*86400+secs) * time.Second, nil
}

// wantQoS is the Slurm QOS a level should be.
func (m *Model) wantQoS(q *QoS) SlurmQoSState {
	w := SlurmQoSState{Name: m.SlurmQoS(q.Name), Priority: *q.Priority, PreemptMode: q.PreemptMode, GraceTime: q.GraceTime.D(), Description: q.Description}
	for _, lower := range m.Levels() {
		if qosRank(lower.Name) < qosRank(q.Name) {
			w.Preempt = append(w.Preempt, m.SlurmQoS(lower.Name))
		}
	}
	sort.Strings(w.Preempt)
	return w
}

// PartitionLines are the include file's partition lines for the model, one
// per pool, sorted. Every partition allows all the model's QOS; the QoS a
// job runs at is chosen per job (sbatch --qos, from Plan).
func (m *Model) PartitionLines() []string {
	var allow []string
	for _, q := range m.Levels() {
		allow = append(allow, m.SlurmQoS(q.Name))
	}
	var out []string
	for _, name := range m.PoolNames() {
		p := m.Pools[name]
		l := "PartitionName=" + m.Partition(name) + " Nodes=" + p.Nodes + " AllowQos=" + strings.Join(allow, ",")
		if p.MaxTime != "" {
			l += " MaxTime=" + p.MaxTime
		}
		if p.PriorityTier > 0 {
			l += " PriorityTier=" + strconv.Itoa(p.PriorityTier)
		}
		out = append(out, l+" State=UP")
	}
	return out
}

const includeHeader = "# GPU pools: managed by gpuorch admin apply. Lines for partitions named\n# with a model's prefix are rewritten by it; other lines are kept.\n"

// wantInclude merges the model's partition lines into the current include
// file: lines for partitions with the model's prefix are replaced, all other
// lines (other models, comments) are kept in place.
func (m *Model) wantInclude(current string) string {
	return m.mergeInclude(current, m.PartitionLines())
}

// mergeInclude keeps current's lines for partitions this model does not
// manage and appends lines.
func (m *Model) mergeInclude(current string, lines []string) string {
	var kept []string
	for _, l := range strings.Split(current, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if name, ok := partitionName(t); ok && m.managed(name) {
			continue
		}
		kept = append(kept, l)
	}
	// Canonical order (other lines first, then partitions by name), so two
	// models applied in turn both see the file as up to date.
	var other, parts []string
	for _, l := range append(kept, lines...) {
		if _, ok := partitionName(l); ok {
			parts = append(parts, l)
		} else {
			other = append(other, l)
		}
	}
	sort.SliceStable(parts, func(i, j int) bool {
		a, _ := partitionName(parts[i])
		b, _ := partitionName(parts[j])
		return a < b
	})
	all := append(other, parts...)
	if len(all) == 0 {
		return includeHeader
	}
	return includeHeader + strings.Join(all, "\n") + "\n"
}

func partitionName(line string) (string, bool) {
	for _, w := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(w, "PartitionName="); ok {
			return v, true
		}
	}
	return "", false
}

// managed says whether a partition or QOS name belongs to this model: it
// carries the prefix (with no prefix, names the model defines).
func (m *Model) managed(name string) bool {
	if m.Slurm.Prefix != "" {
		return strings.HasPrefix(name, m.Slurm.Prefix)
	}
	for _, p := range m.PoolNames() {
		if p == name {
			return true
		}
	}
	return false
}

// Diff computes the actions that bring st to the model.
func (a *Admin) Diff(m *Model, st *ClusterState) *AdminPlan {
	p := &AdminPlan{IncludeFile: m.Slurm.IncludeFile}
	// Preempt lists change in two passes: every addition first, every
	// removal after. slurmdbd 22.05 reports a false "QOS Preemption loop
	// detected" when a QOS is added to the Preempt list of another after
	// its own list was shrunk, so growing before shrinking keeps apply
	// working for any change between two rank-ordered models.
	var grow, shrink []Action
	for _, q := range m.Levels() {
		w := m.wantQoS(q)
		cur, ok := st.QoS[w.Name]
		if !ok {
			cmd := []string{"sacctmgr", "-i", "add", "qos", w.Name, "Priority=" + strconv.Itoa(w.Priority),
				"PreemptMode=" + w.PreemptMode, "GraceTime=" + strconv.Itoa(int(w.GraceTime/time.Second))}
			if w.Description != "" {
				cmd = append(cmd, "Description="+w.Description)
			}
			p.Actions = append(p.Actions, Action{Kind: KindAddQoS, Target: w.Name, Detail: fmt.Sprintf("priority %d, preempt mode %s, grace %s", w.Priority, w.PreemptMode, w.GraceTime), Cmd: cmd})
			cur = SlurmQoSState{Name: w.Name, Priority: w.Priority, PreemptMode: w.PreemptMode, GraceTime: w.GraceTime, Description: w.Description}
		}
		var set, diff []string
		if cur.Priority != w.Priority {
			set = append(set, "Priority="+strconv.Itoa(w.Priority))
			diff = append(diff, fmt.Sprintf("priority %d → %d", cur.Priority, w.Priority))
		}
		add, del := setDiff(cur.Preempt, w.Preempt)
		if len(add) > 0 {
			set = append(set, "Preempt+="+strings.Join(add, ","))
			diff = append(diff, "preempt +"+strings.Join(add, ",+"))
		}
		if cur.PreemptMode != w.PreemptMode {
			set = append(set, "PreemptMode="+w.PreemptMode)
			diff = append(diff, fmt.Sprintf("preempt mode %s → %s", cur.PreemptMode, w.PreemptMode))
		}
		if cur.GraceTime != w.GraceTime {
			set = append(set, "GraceTime="+strconv.Itoa(int(w.GraceTime/time.Second)))
			diff = append(diff, fmt.Sprintf("grace %s → %s", cur.GraceTime, w.GraceTime))
		}
		if cur.Description != w.Description && w.Description != "" {
			set = append(set, "Description="+w.Description)
			diff = append(diff, fmt.Sprintf("description %q → %q", cur.Description, w.Description))
		}
		if len(set) > 0 {
			grow = append(grow, Action{Kind: KindModifyQoS, Target: w.Name, Detail: strings.Join(diff, ", "),
				Cmd: append([]string{"sacctmgr", "-i", "modify", "qos", "where", "name=" + w.Name, "set"}, set...)})
		}
		if len(del) > 0 {
			shrink = append(shrink, Action{Kind: KindModifyQoS, Target: w.Name, Detail: "preempt -" + strings.Join(del, ",-"),
				Cmd: []string{"sacctmgr", "-i", "modify", "qos", "where", "name=" + w.Name, "set", "Preempt-=" + strings.Join(del, ",")}})
		}
	}
	p.Actions = append(p.Actions, grow...)
	p.Actions = append(p.Actions, shrink...)
	for _, u := range m.Slurm.Users {
		var missing []string
		for _, q := range m.Levels() {
			name := m.SlurmQoS(q.Name)
			for _, have := range st.UserQoS[u] {
				if !slices.Contains(have, name) {
					missing = append(missing, name)
					break
				}
			}
		}
		if len(st.UserQoS[u]) == 0 || (len(st.UserQoS[u]) == 1 && len(st.UserQoS[u][0]) == 1 && st.UserQoS[u][0][0] == "") {
			p.Warnings = append(p.Warnings, fmt.Sprintf("slurm.users: %s has no association (sacctmgr add user %s account=…); cannot grant QOS", u, u))
			continue
		}
		if len(missing) > 0 {
			p.Actions = append(p.Actions, Action{Kind: KindGrantQoS, Target: u, Detail: "may use " + strings.Join(missing, ","),
				Cmd: []string{"sacctmgr", "-i", "modify", "user", "where", "name=" + u, "set", "qos+=" + strings.Join(missing, ",")}})
		}
	}

	p.Include = m.wantInclude(st.Include)
	if !st.IncludeSeen || st.Include != p.Include {
		p.Actions = append(p.Actions, Action{Kind: KindWrite, Target: filepath.Base(m.Slurm.IncludeFile), Detail: lineDiff(st.Include, p.Include)})
	}
	reconf := false
	for _, l := range m.PartitionLines() {
		name, _ := partitionName(l)
		w := m.wantPartition(name)
		cur, ok := st.Partitions[name]
		if !ok || cur.Nodes != w.Nodes || strings.Join(cur.AllowQoS, ",") != strings.Join(w.AllowQoS, ",") || cur.State != "UP" {
			reconf = true
		}
	}
	for name := range st.Partitions {
		if m.managed(name) && m.Pools[strings.TrimPrefix(name, m.Slurm.Prefix)] == nil {
			reconf = true // a managed partition left the model
		}
	}
	if reconf || (len(p.Actions) > 0 && p.Actions[len(p.Actions)-1].Kind == KindWrite) {
		p.Actions = append(p.Actions, Action{Kind: KindReconfigure, Target: "slurmctld", Detail: "reread slurm.conf and the include file", Cmd: []string{"scontrol", "reconfigure"}})
	}
	for name := range st.QoS {
		if m.Slurm.Prefix == "" || !strings.HasPrefix(name, m.Slurm.Prefix) {
			continue
		}
		level := strings.TrimPrefix(name, m.Slurm.Prefix)
		if qosRank(level) >= 0 && m.QoS[level] == nil {
			p.Actions = append(p.Actions, Action{Kind: KindDeleteQoS, Target: name, Detail: "level no longer in the model", Cmd: []string{"sacctmgr", "-i", "delete", "qos", name}})
		}
	}
	if m.MPS.Enabled {
		if p.Hook = m.MPSHook(a.gpuorch()); st.Hook != p.Hook {
			p.Actions = append(p.Actions, Action{Kind: KindInstallHook, Target: filepath.Base(m.MPS.Hook),
				Detail: fmt.Sprintf("MPS prolog/epilog at %s (mode 0755): runs %s, daemons under %s", m.MPS.Hook, hookValue(p.Hook, "GPUORCH"), m.MPS.Dir)})
		}
		if !runsHook(st.Prolog, m.MPS.Hook) || !runsHook(st.Epilog, m.MPS.Hook) {
			p.Actions = append(p.Actions, Action{Kind: KindManual, Target: "slurm.conf",
				Detail: fmt.Sprintf("Prolog is %q and Epilog is %q: the MPS hook must be both — in slurm.conf: Prolog=%s and Epilog=%s (or run it from the scripts there), then scontrol reconfigure",
					st.Prolog, st.Epilog, m.MPS.Hook, m.MPS.Hook)})
		}
	}
	sort.SliceStable(p.Actions, func(i, j int) bool { return kindOrder(p.Actions[i].Kind) < kindOrder(p.Actions[j].Kind) })

	// Node GRES: shards per GPU must match the model, or shard counts in
	// Plan mean something else than on the nodes.
	for _, name := range m.PoolNames() {
		pool := m.Pools[name]
		for _, node := range st.NodeNames[name] {
			gres, ok := st.NodeGres[node]
			if !ok {
				p.Warnings = append(p.Warnings, fmt.Sprintf("pools.%s: node %s is not in the cluster", name, node))
				continue
			}
			gpus, shards := GresCount(gres, "gpu"), GresCount(gres, "shard")
			wantShards := pool.GPUsPerNode * pool.ShardsPerGPU
			if gpus != pool.GPUsPerNode || shards != wantShards {
				p.Actions = append(p.Actions, Action{Kind: KindManual, Target: node,
					Detail: fmt.Sprintf("Gres is %q, pool %s wants gpu:%d,shard:%d — in slurm.conf: NodeName=%s … Gres=gpu:%d,shard:%d; in gres.conf: NodeName=%s Name=shard Count=%d (then restart slurmd)",
						gres, name, pool.GPUsPerNode, wantShards, node, pool.GPUsPerNode, wantShards, node, wantShards)})
			}
		}
	}
	conf := a.SlurmConf
	if conf == "" {
		conf = "/etc/slurm/slurm.conf"
	}
	if b, err := limitio.ReadFile(conf, slurmConfig); err == nil && !strings.Contains(string(b), m.Slurm.IncludeFile) {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s does not Include %s: add the line `Include %s` once, or the pools' partitions never appear", conf, m.Slurm.IncludeFile, m.Slurm.IncludeFile))
	}
	return p
}

func (a *Admin) gpuorch() string {
	if a.Gpuorch != "" {
		return a.Gpuorch
	}
	exe, _ := os.Executable()
	return exe
}

// hookValue reads one path assignment of a rendered hook.
func hookValue(hook, name string) string {
	for _, l := range strings.Split(hook, "\n") {
		if v, ok := strings.CutPrefix(l, name+"="); ok {
			return v
		}
	}
	return ""
}

// runsHook says whether a Prolog or Epilog setting (a path, a glob, or a
// comma-separated list of them) runs the hook.
func runsHook(setting, hook string) bool {
	for _, p := range strings.Split(setting, ",") {
		if ok, _ := filepath.Match(strings.TrimSpace(p), hook); ok {
			return true
		}
	}
	return false
}

func kindOrder(k string) int {
	switch k {
	case KindAddQoS:
		return 0
	case KindModifyQoS:
		return 1
	case KindWrite, KindInstallHook:
		return 2
	case KindReconfigure:
		return 3
	case KindDeleteQoS:
		return 4
	case KindGrantQoS:
		// Last: slurmdbd 22.05, deleting one QOS, also strips other QOS
		// from associations (seen: delete x_a took x_b from root too).
		return 5
	}
	return 6
}

func (m *Model) wantPartition(name string) PartitionState {
	w := PartitionState{Name: name, Nodes: m.Pools[strings.TrimPrefix(name, m.Slurm.Prefix)].Nodes, State: "UP"}
	for _, q := range m.Levels() {
		w.AllowQoS = append(w.AllowQoS, m.SlurmQoS(q.Name))
	}
	return w
}

// setDiff returns what is in want and not in have, and the reverse.
func setDiff(have, want []string) (add, del []string) {
	h := map[string]bool{}
	for _, x := range have {
		h[x] = true
	}
	w := map[string]bool{}
	for _, x := range want {
		w[x] = true
		if !h[x] {
			add = append(add, x)
		}
	}
	for _, x := range have {
		if !w[x] {
			del = append(del, x)
		}
	}
	return add, del
}

// GresCount reads the count of one GRES name from scontrol's Gres field,
// e.g. "gpu:a100:4(S:0),shard:32" → gpu 4, shard 32.
func GresCount(gres, name string) int {
	n := 0
	for _, item := range strings.Split(gres, ",") {
		item, _, _ = strings.Cut(item, "(")
		f := strings.Split(item, ":")
		if len(f) < 2 || f[0] != name {
			continue
		}
		c, err := strconv.Atoi(f[len(f)-1])
		if err == nil {
			n += c
		}
	}
	return n
}

func lineDiff(old, new string) string {
	have := map[string]bool{}
	for _, l := range strings.Split(old, "\n") {
		have[l] = true
	}
	want := map[string]bool{}
	for _, l := range strings.Split(new, "\n") {
		want[l] = true
	}
	var b strings.Builder
	for _, l := range strings.Split(old, "\n") {
		if l != "" && !want[l] && !strings.HasPrefix(l, "#") {
			b.WriteString("\n  - " + l)
		}
	}
	for _, l := range strings.Split(new, "\n") {
		if l != "" && !have[l] && !strings.HasPrefix(l, "#") {
			b.WriteString("\n  + " + l)
		}
	}
	if b.Len() == 0 {
		return "comments only"
	}
	return "partitions:" + b.String()
}

// Plan reads the cluster and diffs it with the model.
func (a *Admin) Plan(ctx context.Context, m *Model) (*AdminPlan, error) {
	st, err := a.ReadState(ctx, m)
	if err != nil {
		return nil, err
	}
	return a.Diff(m, st), nil
}

// Apply performs the plan's actions in order (QOS, include file,
// reconfigure, stale QOS), then reads the cluster again and fails unless
// nothing is left to do. It returns the actions it performed.
func (a *Admin) Apply(ctx context.Context, m *Model) ([]Action, error) {
	unlock, err := lockInclude(m.Slurm.IncludeFile)
	if err != nil {
		return nil, err
	}
	defer unlock()
	p, err := a.Plan(ctx, m)
	if err != nil {
		return nil, err
	}
	done, err := a.perform(ctx, m, p)
	if err != nil || len(done) == 0 {
		return done, err
	}
	// Verify: plan again until nothing is left. slurmctld may need a moment
	// to show reconfigured partitions; and slurmdbd side effects (a QOS
	// deletion stripping other QOS from associations) can leave work that
	// one more pass does.
	deadline := time.Now().Add(10 * time.Second)
	retried := false
	for {
		again, err := a.Plan(ctx, m)
		if err != nil {
			return done, fmt.Errorf("verify: %w", err)
		}
		if again.Changes() == 0 {
			return done, nil
		}
		if !retried && onlyKinds(again, KindGrantQoS, KindModifyQoS, KindAddQoS) {
			retried = true
			more, err := a.perform(ctx, m, again)
			done = append(done, more...)
			if err != nil {
				return done, err
			}
			continue
		}
		if time.Now().After(deadline) {
			var left []string
			for _, x := range again.Actions {
				if x.Kind != KindManual {
					left = append(left, x.Kind+" "+x.Target)
				}
			}
			return done, fmt.Errorf("verify: still to do after apply: %s (see slurmctld.log: a partition naming an unknown QOS is dropped)", strings.Join(left, "; "))
		}
		select {
		case <-ctx.Done():
			return done, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func onlyKinds(p *AdminPlan, kinds ...string) bool {
	for _, a := range p.Actions {
		if a.Kind != KindManual && !slices.Contains(kinds, a.Kind) {
			return false
		}
	}
	return true
}

func (a *Admin) perform(ctx context.Context, m *Model, p *AdminPlan) ([]Action, error) {
	var done []Action
	for _, act := range p.Actions {
		switch act.Kind {
		case KindManual:
			continue
		case KindWrite:
			if err := atomicfile.WriteFile(m.Slurm.IncludeFile, []byte(p.Include), 0o644); err != nil {
				return done, fmt.Errorf("write %s: %w", m.Slurm.IncludeFile, err)
			}
		case KindInstallHook:
			if err := os.MkdirAll(filepath.Dir(m.MPS.Hook), 0o755); err != nil {
				return done, err
			}
			if err := atomicfile.WriteFile(m.MPS.Hook, []byte(p.Hook), 0o755); err != nil {
				return done, fmt.Errorf("install MPS hook: %w", err)
			}
		default:
			if _, err := a.run(ctx, act.Cmd...); err != nil {
				return done, fmt.Errorf("%s %s: %w", act.Kind, act.Target, err)
			}
		}
		done = append(done, act)
	}
	return done, nil
}

// lockInclude serialises read-modify-write of the include file between
// gpuorch processes (two models, or two test runs, applying at once), with
// flock on a sibling lock file.
func lockInclude(path string) (func(), error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// Remove takes the model out of the cluster: its partition lines leave the
// include file (other lines stay), slurmctld reconfigures, and its QOS
// (prefix + level) are deleted. It returns what it did.
func (a *Admin) Remove(ctx context.Context, m *Model) ([]Action, error) {
	unlock, err := lockInclude(m.Slurm.IncludeFile)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var done []Action
	cur, err := limitio.ReadFile(m.Slurm.IncludeFile, slurmConfig)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read include file: %w", err)
	}
	want := m.mergeInclude(string(cur), nil)
	if want != string(cur) {
		if err := atomicfile.WriteFile(m.Slurm.IncludeFile, []byte(want), 0o644); err != nil {
			return done, fmt.Errorf("write %s: %w", m.Slurm.IncludeFile, err)
		}
		done = append(done, Action{Kind: KindWrite, Target: filepath.Base(m.Slurm.IncludeFile), Detail: lineDiff(string(cur), want)})
		if _, err := a.run(ctx, "scontrol", "reconfigure"); err != nil {
			return done, err
		}
		done = append(done, Action{Kind: KindReconfigure, Target: "slurmctld"})
	}
	out, err := a.run(ctx, "sacctmgr", "-n", "-P", "show", "qos", "format=Name,Priority,Preempt,PreemptMode,GraceTime,Description")
	if err != nil {
		return done, err
	}
	have, err := ParseQoSList(string(out))
	if err != nil {
		return done, err
	}
	var names []string
	for _, q := range m.Levels() {
		if _, ok := have[m.SlurmQoS(q.Name)]; ok {
			names = append(names, m.SlurmQoS(q.Name))
		}
	}
	if len(names) > 0 {
		cmd := []string{"sacctmgr", "-i", "delete", "qos", "where", "name=" + strings.Join(names, ",")}
		if _, err := a.run(ctx, cmd...); err != nil {
			return done, err
		}
		done = append(done, Action{Kind: KindDeleteQoS, Target: strings.Join(names, ","), Cmd: cmd})
	}
	return done, nil
}
