# gpuorch — see README.md. Every target works on a fresh Debian 12 machine with Go.
SHELL      := /bin/bash
GO         ?= go
BIN        ?= bin/gpuorch
# go-nvml needs cgo; its headers use deprecated declarations we do not call.
export CGO_ENABLED := 1
export CGO_CFLAGS  ?= -O2 -g -Wno-deprecated-declarations
GOTEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: all build test test-env test-unit test-slurm-e2e spank demo bench lint fmt clean

all: lint build test

build:
	$(GO) build -o $(BIN) ./cmd/gpuorch

# Runs every test, integration tests included: installs what they need
# (Debian packages, InfluxDB 1.8.10 built from source) and starts the real
# InfluxDB and the 4-node Slurm test cluster first, idempotently.
test: test-env
	$(GO) vet ./...
	source test/env.sh && $(GO) test $(GOTEST_FLAGS) ./...

test-env:
	bash scripts/test-env.sh

# Unit tests only: integration tests skip, each saying how to start its service.
test-unit:
	$(GO) vet ./...
	$(GO) test $(GOTEST_FLAGS) ./...

# The main job: a serving experiment on the embedded defaults (local executor,
# simulated model server, local results store), then its results table.
demo: build
	bash scripts/demo.sh $(BIN)

# The quickstart as one Slurm array job on the test cluster (make test-env first).
test-slurm-e2e: build
	GPUORCH_TEST_SLURM=1 bash test/slurm/e2e.sh $(BIN)

# The SPANK plugin (--gpu-slice, --gpu-qos for sbatch/srun); needs libslurm-dev 22.05.
spank:
	$(GO) build -tags spank -buildmode=c-shared -o bin/gpuorch_spank.so ./gpuslice/spank

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
	@echo "Peer comparisons and long runs: see docs/benchmarks.md (bench/*)."

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin gpuorch-runs
