package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpuorch/gpuorch/internal/errkind"
)

// Balancing policies of a Replicas target.
const (
	// BalanceRoundRobin sends each request to the next replica in turn.
	BalanceRoundRobin = "round-robin"
	// BalanceLeastOutstanding sends each request to the replica with the
	// fewest requests in flight (ties in turn), so a slow replica gets less.
	BalanceLeastOutstanding = "least-outstanding"
)

// Balances lists the policies NewReplicas accepts.
var Balances = []string{BalanceLeastOutstanding, BalanceRoundRobin}

// ErrNoReplica is the error of a request that found no replica to go to:
// every replica was draining, ejected or gone. It is a failed request, never
// silently dropped.
var ErrNoReplica = errors.New("no ready replica")

// Replicas is a Target over a changing set of replicas of one model server:
// each request goes to one ready replica, chosen by the balancing policy.
// Replicas are added once ready (Add), taken out of rotation to drain (Drain)
// or after a transport error (ejected; Admit puts them back), and removed
// (Remove). Every request is reported to OnDone with the replica that served
// it ("" when there was none), so the caller can keep per-replica metrics.
// It is safe for concurrent use.
type Replicas struct {
	tc     TargetConfig
	policy string
	// OnDone, when set (before the run), receives every request this
	// target sent or failed to send, after the replica's Do returned.
	OnDone func(replica string, res *Result)

	mu       sync.Mutex // guards all, models, maxConns, aborted and rotation writes
	all      map[string]*replica
	models   []string
	maxConns int
	aborted  bool
	rotation atomic.Pointer[[]*replica] // the replicas receiving requests
	next     atomic.Uint64
	sent     atomic.Int64
	selfTime bool
}

type replica struct {
	name, url string
	t         Target
	inflight  atomic.Int64
	state     atomic.Int32 // replicaActive, …
}

const (
	replicaActive int32 = iota
	replicaDraining
	replicaEjected
)

// NewReplicas builds an empty Replicas target for requests described by tc
// (its URL is replaced by each replica's) with the given balancing policy
// ("" = least-outstanding).
func NewReplicas(tc TargetConfig, policy string) (*Replicas, error) {
	if policy == "" {
		policy = BalanceLeastOutstanding
	}
	if policy != BalanceRoundRobin && policy != BalanceLeastOutstanding {
		return nil, fmt.Errorf("unknown balancing policy %q (want %s)", policy, strings.Join(Balances, " or "))
	}
	proto := tc
	proto.URL = "http://127.0.0.1:1"
	t, err := NewTarget(proto)
	if err != nil {
		return nil, err
	}
	m := &Replicas{tc: tc, policy: policy, all: map[string]*replica{}}
	if st, ok := t.(selfTimer); ok {
		m.selfTime = st.SelfTimed()
	}
	m.rotation.Store(&[]*replica{})
	return m, nil
}

// Add puts a replica at url (http://host:port) into rotation under name.
// Adding a name again replaces its address (a restarted replica).
func (m *Replicas) Add(name, url string) error {
	tc := m.tc
	tc.URL = url
	t, err := NewTarget(tc)
	if err != nil {
		return fmt.Errorf("replica %s: %w", name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.aborted {
		return fmt.Errorf("replica %s: the run is over", name)
	}
	if p, ok := t.(preparer); ok && m.models != nil {
		p.Prepare(m.models)
	}
	if c, ok := t.(connCap); ok && m.maxConns > 0 {
		c.SetMaxConns(m.maxConns)
	}
	if old := m.all[name]; old != nil {
		if a, ok := old.t.(aborter); ok && old.url != url {
			a.Abort()
		}
	}
	m.all[name] = &replica{name: name, url: url, t: t}
	m.rebuild()
	return nil
}

// rebuild publishes the active replicas, in name order (mu held).
func (m *Replicas) rebuild() {
	var rot []*replica
	for _, r := range m.all {
		if r.state.Load() == replicaActive {
			rot = append(rot, r)
		}
	}
	sortReplicas(rot)
	m.rotation.Store(&rot)
}

func sortReplicas(rs []*replica) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].name < rs[j-1].name; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

func (m *Replicas) setState(name string, from []int32, to int32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.all[name]
	if r == nil {
		return false
	}
	for _, f := range from {
		if r.state.CompareAndSwap(f, to) {
			m.rebuild()
			return true
		}
	}
	return false
}

// Drain takes a replica out of rotation: no new request goes to it, those
// in flight finish (watch InFlight). It reports whether the replica was there.
func (m *Replicas) Drain(name string) bool {
	return m.setState(name, []int32{replicaActive, replicaEjected}, replicaDraining)
}

// Admit puts an ejected replica back into rotation (it answered again).
func (m *Replicas) Admit(name string) bool {
	return m.setState(name, []int32{replicaEjected}, replicaActive)
}

// Eject takes a replica out of rotation after a failure; Admit undoes it.
func (m *Replicas) Eject(name string) bool {
	return m.setState(name, []int32{replicaActive}, replicaEjected)
}

// Remove forgets a replica; requests still in flight to it finish.
func (m *Replicas) Remove(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.all, name)
	m.rebuild()
}

// ReplicaState is one replica as Replicas sees it.
type ReplicaState struct {
	Name     string
	URL      string
	InFlight int64
	Active   bool // in rotation
	Draining bool
	Ejected  bool // out of rotation after a transport error
}

// States lists the replicas, sorted by name.
func (m *Replicas) States() []ReplicaState {
	m.mu.Lock()
	rs := make([]*replica, 0, len(m.all))
	for _, r := range m.all {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	sortReplicas(rs)
	out := make([]ReplicaState, len(rs))
	for i, r := range rs {
		st := r.state.Load()
		out[i] = ReplicaState{Name: r.name, URL: r.url, InFlight: r.inflight.Load(),
			Active: st == replicaActive, Draining: st == replicaDraining, Ejected: st == replicaEjected}
	}
	return out
}

// InFlight is the number of requests in flight to a replica (0 if unknown).
func (m *Replicas) InFlight(name string) int64 {
	m.mu.Lock()
	r := m.all[name]
	m.mu.Unlock()
	if r == nil {
		return 0
	}
	return r.inflight.Load()
}

// pick chooses the replica for the next request, nil when none is in
// rotation.
func (m *Replicas) pick() *replica {
	rot := *m.rotation.Load()
	n := len(rot)
	if n == 0 {
		return nil
	}
	start := int(m.next.Add(1) % uint64(n))
	if m.policy == BalanceRoundRobin || n == 1 {
		return rot[start]
	}
	best := rot[start]
	bestN := best.inflight.Load()
	for k := 1; k < n && bestN > 0; k++ {
		r := rot[(start+k)%n]
		if v := r.inflight.Load(); v < bestN {
			best, bestN = r, v
		}
	}
	return best
}

// Do sends the request to one replica. A transport error (not a timeout,
// not the end of the run) ejects that replica until Admit.
func (m *Replicas) Do(ctx context.Context, res *Result, clock func() time.Duration) error {
	m.sent.Add(1)
	r := m.pick()
	if r == nil {
		res.Outcome, res.Err, res.Done = OutcomeError, ErrNoReplica, clock()
		if m.OnDone != nil {
			m.OnDone("", res)
		}
		return ErrNoReplica
	}
	r.inflight.Add(1)
	err := r.t.Do(ctx, res, clock)
	r.inflight.Add(-1)
	if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, errAborted) {
		m.Eject(r.name)
	}
	if m.OnDone != nil {
		m.OnDone(r.name, res)
	}
	return err
}

// Requests is the number of requests handed to Do so far.
func (m *Replicas) Requests() int64 { return m.sent.Load() }

// Ready checks that some replica in rotation answers.
func (m *Replicas) Ready(ctx context.Context) error {
	rot := *m.rotation.Load()
	if len(rot) == 0 {
		return errkind.Unavailablef("%w: no replica is in rotation", ErrNoReplica)
	}
	var errs []error
	for _, r := range rot {
		err := r.t.Ready(ctx)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("replica %s: %w", r.name, err))
	}
	return errors.Join(errs...)
}

// Prepare precomputes per-model requests on every replica, now and later.
func (m *Replicas) Prepare(models []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.models = append([]string(nil), models...)
	for _, r := range m.all {
		if p, ok := r.t.(preparer); ok {
			p.Prepare(models)
		}
	}
}

// SetMaxConns caps the connections to each replica.
func (m *Replicas) SetMaxConns(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.maxConns = n
	for _, r := range m.all {
		if c, ok := r.t.(connCap); ok {
			c.SetMaxConns(n)
		}
	}
}

// Abort fails everything in flight on every replica (end of run).
func (m *Replicas) Abort() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.aborted = true
	for _, r := range m.all {
		if a, ok := r.t.(aborter); ok {
			a.Abort()
		}
	}
}

// SelfTimed reports whether the replicas' requests enforce their timeout
// themselves (they share one protocol, so one answer holds for all).
func (m *Replicas) SelfTimed() bool { return m.selfTime }
