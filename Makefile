# Everything a fresh clone needs: `make test` installs or builds what the
# tests use (redis-server, kube-apiserver, etcd, helm) and runs every test.
GO        ?= go
BIN       := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

include hack/tools.mk

.PHONY: all build test test-short bench demo fmt vet

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/sidecar ./cmd/sidecar

## test: install test dependencies, then run every test with the race detector.
test: test-deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

demo:
	$(GO) run ./cmd/sidecar demo

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...
