// Package simserver is a simulated model server: a real HTTP server that
// speaks KServe v2 and the OpenAI-compatible API (with SSE streaming) for
// thousands of named models, answering on the timeline of a latency model
// instead of running one.
//
// DNN models (Clockwork-style) execute batches of b requests in
// B1 × (1 + α(b−1)), FIFO per model, on a per-model executor or a shared
// pool of simulated GPUs, and drop requests that cannot meet the deadline
// the client sends in X-Request-Deadline-Ms. LLM models admit up to
// Concurrency requests, answer the first token after the prefill
// (PrefillPerToken × prompt tokens) and one token per TPOT after that.
//
// Idle models cost nothing: state is created on a model's first request,
// and work is driven by arrivals and timers, never by polling goroutines.
//
// Use it in tests of other packages:
//
//	srv, err := simserver.New(simserver.DefaultModels())
//	ts := httptest.NewServer(srv.Handler())
//	defer ts.Close()
//	defer srv.Close() // runs first: releases queued and hanging requests
//
// or serve a real listener with srv.Serve(ctx, ln). docs/sim-server.md
// documents the flags, the config file and the latency formulas.
package simserver
