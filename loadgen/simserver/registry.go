package simserver

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

type kind uint8

const (
	kindDNN kind = iota + 1
	kindLLM
)

func (k kind) String() string {
	if k == kindLLM {
		return "llm"
	}
	return "dnn"
}

// spec is one configured model entry, which may stand for many copies.
type spec struct {
	kind   kind
	name   string
	copies int
	dnn    *DNNModel
	llm    *LLMModel
}

// registry resolves request model names to per-copy state. Copies are not
// materialised: "resnet50_v2-123" is parsed and checked against the spec,
// and its state is created on its first request, so 4,000 idle copies cost
// nothing but a map entry each once used.
type registry struct {
	exact  map[string]*spec // copies == 0: served under exactly this name
	bases  map[string]*spec // copies ≥ 1: NAME-i, and NAME as an alias of NAME-0
	order  []*spec
	total  int
	states sync.Map // copy name → *model
	newFn  func(name string, sp *spec) *model
}

func newRegistry(c *Config, newFn func(string, *spec) *model) (*registry, error) {
	r := &registry{exact: map[string]*spec{}, bases: map[string]*spec{}, newFn: newFn}
	add := func(sp *spec) error {
		if _, dup := r.exact[sp.name]; dup {
			return fmt.Errorf("model name %q is configured twice", sp.name)
		}
		if _, dup := r.bases[sp.name]; dup {
			return fmt.Errorf("model name %q is configured twice", sp.name)
		}
		if sp.copies == 0 {
			r.exact[sp.name] = sp
			r.total++
		} else {
			r.bases[sp.name] = sp
			r.total += sp.copies
		}
		r.order = append(r.order, sp)
		return nil
	}
	for i := range c.DNN {
		m := &c.DNN[i]
		if err := add(&spec{kind: kindDNN, name: m.Name, copies: m.Copies, dnn: m}); err != nil {
			return nil, err
		}
	}
	for i := range c.LLM {
		m := &c.LLM[i]
		if err := add(&spec{kind: kindLLM, name: m.Name, copies: m.Copies, llm: m}); err != nil {
			return nil, err
		}
	}
	// A single model must not shadow a copy of another entry ("a-1" vs a×3).
	for name := range r.exact {
		if sp, _, ok := r.copyOf(name); ok {
			return nil, fmt.Errorf("model name %q collides with copy %q of %q (copies = %d)", name, name, sp.name, sp.copies)
		}
	}
	return r, nil
}

// copyOf parses NAME-i against the copy-bearing specs.
func (r *registry) copyOf(name string) (*spec, int, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return nil, 0, false
	}
	sp, ok := r.bases[name[:i]]
	if !ok {
		return nil, 0, false
	}
	idx := name[i+1:]
	if len(idx) > 1 && idx[0] == '0' { // one spelling per copy
		return nil, 0, false
	}
	n, err := strconv.Atoi(idx)
	if err != nil || n < 0 || n >= sp.copies {
		return nil, 0, false
	}
	return sp, n, true
}

// lookup returns the state of the named model (created on first use), or
// nil when no such model is served.
func (r *registry) lookup(name string) *model {
	if v, ok := r.states.Load(name); ok {
		return v.(*model)
	}
	canonical := name
	sp, ok := r.exact[name]
	if !ok {
		if sp, ok = r.bases[name]; ok {
			canonical = name + "-0"
			if v, ok := r.states.Load(canonical); ok {
				return v.(*model)
			}
		} else if sp, _, ok = r.copyOf(name); !ok {
			return nil
		}
	}
	m := r.newFn(canonical, sp)
	v, _ := r.states.LoadOrStore(canonical, m)
	return v.(*model)
}

// names calls fn for every served name, in configuration order.
func (r *registry) names(fn func(name string, sp *spec)) {
	for _, sp := range r.order {
		if sp.copies == 0 {
			fn(sp.name, sp)
			continue
		}
		for i := 0; i < sp.copies; i++ {
			fn(sp.name+"-"+strconv.Itoa(i), sp)
		}
	}
}

// model is the runtime state of one served model copy.
type model struct {
	name string
	sp   *spec

	// DNN: the queue lives under pool.mu.
	pool    *pool
	queue   []*dnnReq
	qhead   int
	heapIdx int // index in pool.ready, −1 when not there

	// LLM: concurrency slots.
	mu      sync.Mutex
	active  atomic.Int32
	waiters []*llmWaiter
	whead   int

	st counters
}

type counters struct {
	requests, completed, dropped, failed, hung, cancelled atomic.Int64
	batches, batched                                      atomic.Int64
	promptTokens, completionTokens                        atomic.Int64
	queued                                                atomic.Int64 // now waiting
}
