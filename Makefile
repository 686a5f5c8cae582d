# Everything a fresh clone needs: `make test` installs or builds what the
# tests use (redis-server, kube-apiserver, etcd, helm) and runs every test.
GO        ?= go
BIN       := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

include hack/tools.mk
# Packaging (image binary, manifests) and the long fault-injection runs.
include hack/packaging.mk hack/chaos.mk hack/bench.mk

.PHONY: all build test demo fmt fmt-check vet

all: build

## build: the release binary into ./bin, with the image's flags (hack/packaging.mk).
build:
	CGO_ENABLED=0 $(GO) build $(IMAGE_GOFLAGS) -ldflags "$(IMAGE_LDFLAGS)" -o $(BIN)/sidecar ./cmd/sidecar

## test: install test dependencies, then run every test with the race detector.
test: test-deps fmt-check image-test
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

demo:
	$(GO) run ./cmd/sidecar demo

fmt:
	gofmt -w $$(git ls-files '*.go')

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
