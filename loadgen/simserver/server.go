package simserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a simulated model server. Create it with New, serve it with
// Serve (a real listener) or Handler (e.g. under httptest), stop it with
// Close or by cancelling Serve's context.
type Server struct {
	cfg     Config
	reg     *registry
	shared  *pool       // nil unless Workers > 0
	truth   *truthStore // nil unless TruthRecords > 0
	closing chan struct{}
	once    sync.Once
	started time.Time

	rngMu sync.Mutex
	rng   *rand.Rand

	ids          atomic.Uint64
	badRequests  atomic.Int64
	unknownModel atomic.Int64

	modelsOnce sync.Once
	modelsJSON []byte

	handler http.Handler
}

// New validates cfg (filling defaults) and builds a server. A config with
// no model is an error; DefaultModels() gives a small ready-made set.
func New(cfg Config) (*Server, error) {
	cfg.DNN = append([]DNNModel(nil), cfg.DNN...)
	cfg.LLM = append([]LLMModel(nil), cfg.LLM...)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sim-server config: %w", err)
	}
	if len(cfg.DNN)+len(cfg.LLM) == 0 {
		return nil, errors.New("sim-server config: no models (add [[dnn]] or [[llm]] entries, or --dnn/--llm flags)")
	}
	s := &Server{
		cfg:     cfg,
		closing: make(chan struct{}),
		started: time.Now(),
		rng:     rand.New(rand.NewPCG(cfg.Server.Seed, 0x5eed)),
	}
	if cfg.Server.TruthRecords > 0 {
		s.truth = &truthStore{limit: cfg.Server.TruthRecords}
	}
	if cfg.Server.Workers > 0 {
		s.shared = newPool(cfg.Server.Workers, cfg.Server.Seed)
	}
	reg, err := newRegistry(&s.cfg, s.newModel)
	if err != nil {
		return nil, fmt.Errorf("sim-server config: %w", err)
	}
	s.reg = reg
	s.handler = s.routes()
	return s, nil
}

func (s *Server) newModel(name string, sp *spec) *model {
	m := &model{name: name, sp: sp, heapIdx: -1}
	if sp.kind == kindDNN {
		if s.shared != nil {
			m.pool = s.shared
		} else {
			m.pool = newPool(sp.dnn.Instances, s.cfg.Server.Seed^fnv64(name))
		}
	}
	return m
}

// Config returns the validated configuration, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// NumModels is the number of served model names (copies counted).
func (s *Server) NumModels() int { return s.reg.total }

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Close releases every request that is waiting (queued, hanging or
// streaming): they end at once. It is idempotent; Serve calls it.
func (s *Server) Close() { s.once.Do(func() { close(s.closing) }) }

// Serve serves HTTP on ln until ctx is cancelled, then shuts down
// gracefully: waiting requests are released, and in-flight responses get
// up to 5 s to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	if s.truth != nil {
		// Ground truth wants when requests arrived (see rxConn).
		ln = rxListener{ln}
		hs.ConnContext = connContext
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("sim-server: %w", err)
	case <-ctx.Done():
	}
	s.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("sim-server: %w", err)
	}
	return nil
}

// fault draws this request's injected fault: 0 none, 1 fail, 2 hang.
func (s *Server) fault() int {
	f, h := s.cfg.Server.FailRate, s.cfg.Server.HangRate
	if f == 0 && h == 0 {
		return 0
	}
	s.rngMu.Lock()
	x := s.rng.Float64()
	s.rngMu.Unlock()
	switch {
	case x < f:
		return 1
	case x < f+h:
		return 2
	}
	return 0
}

// fnv64 is FNV-1a, to give each model copy its own repeatable RNG stream.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
