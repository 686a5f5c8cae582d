# Everything a fresh clone needs: `make test` installs or builds what the
# tests use (a C compiler for -race, redis-server, kube-apiserver, etcd,
# helm; see hack/tools.mk for what the machine must have) and runs every
# test, the benchmark module's (internal/bench) included.
GO        ?= go
BIN       := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

include hack/tools.mk
# Packaging (image binary, manifests) and the long fault-injection runs.
include hack/packaging.mk hack/chaos.mk hack/bench.mk

.PHONY: all build test demo fmt fmt-check vet tidy

all: build

## build: the release binary into ./bin, with the image's flags (hack/packaging.mk).
build:
	CGO_ENABLED=0 $(GO) build $(IMAGE_GOFLAGS) -ldflags "$(IMAGE_LDFLAGS)" -o $(BIN)/sidecar ./cmd/sidecar

# The benchmarks are a module of their own (internal/bench/go.mod), which
# ./... does not reach.
BENCH_MODULE := internal/bench

## test: install test dependencies, then run every test with the race detector.
test: test-deps fmt-check image-test
	$(GO) vet ./...
	$(GO) -C $(BENCH_MODULE) vet ./...
	@echo "running every test with -race; the first run compiles every dependency with the race detector (about 10 minutes on 2 cores)"
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...
	CGO_ENABLED=1 $(GO) -C $(BENCH_MODULE) test -race -count=1 ./...

## demo: run the local demo (cmd/demo); DEMO_FLAGS='--keep-running' etc.
DEMO_FLAGS ?=
demo:
	@echo "compiling the demo (./cmd/demo) before it starts: the first time takes 1-2 minutes on an idle 2-core machine, several on a busy one; later runs start in seconds"
	$(GO) run ./cmd/demo $(DEMO_FLAGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@out=$$(git grep -nE '^(<<<<<<<|>>>>>>>) ' -- . ':!*.svg' || true); if [ -n "$$out" ]; then echo "merge conflict markers:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) -C $(BENCH_MODULE) vet ./...

## tidy: go mod tidy in both modules.
tidy:
	$(GO) mod tidy
	$(GO) -C $(BENCH_MODULE) mod tidy
