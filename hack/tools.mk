# Test dependencies. Binaries land in ./bin (git-ignored) at pinned versions
# and are rebuilt only when missing or when the pinned version changes: each
# binary depends on a stamp file named after its version, so bumping a
# version below makes the binary out of date.

KUBE_VERSION ?= v1.37.2
ETCD_VERSION ?= v3.7.3
HELM_VERSION ?= v3.22.0

STAMPS := $(BIN)/.stamps

.PHONY: test-deps redis-server kube-apiserver etcd helm

test-deps: redis-server kube-apiserver etcd helm

## redis-server: Debian's package; the tests start their own instances.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	}

## kube-apiserver: built from source (about 4.5 minutes the first time).
kube-apiserver: $(BIN)/kube-apiserver
$(BIN)/kube-apiserver: $(STAMPS)/kube-apiserver-$(KUBE_VERSION)
	GO=$(GO) hack/build-server.sh kube-apiserver $(KUBE_VERSION) $(BIN)

## etcd: built from source (under two minutes); envtest runs it.
etcd: $(BIN)/etcd
$(BIN)/etcd: $(STAMPS)/etcd-$(ETCD_VERSION)
	GO=$(GO) hack/build-server.sh etcd $(ETCD_VERSION) $(BIN)

## helm: a plain `go install` works for helm.
helm: $(BIN)/helm
$(BIN)/helm: $(STAMPS)/helm-$(HELM_VERSION)
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@touch $@

# A stamp records the wanted version of one tool. Creating it removes the
# stamps of other versions of the same tool, and being newer than the binary
# it makes the binary rebuild.
$(STAMPS)/%:
	@mkdir -p $(@D)
	@rm -f $(@D)/$(firstword $(subst -v, ,$*))-v*
	@touch $@
