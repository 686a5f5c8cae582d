# Test dependencies. Binaries land in ./bin (git-ignored) at pinned versions
# and are rebuilt only when missing or when the pinned version changes: each
# binary depends on a stamp file named after its version, so bumping a
# version below makes the binary out of date.
#
# What `make test` needs on the machine: Go (the version in go.mod, or any Go
# 1.21+ that may download it), make, git, a C compiler (the race detector
# needs cgo), redis-server, and network access to the Go module proxy. The
# C compiler and redis-server are installed with apt-get (as root, else
# through sudo) where missing; elsewhere the target names what to install.
# First run on a clean clone, 2 cores: about 15-20 minutes, of which building
# kube-apiserver takes 5-7, etcd about 1 and helm 1-2 (more on a busy
# machine), and compiling every package with -race most of the rest.

KUBE_VERSION ?= v1.37.2
ETCD_VERSION ?= v3.7.3
HELM_VERSION ?= v3.22.0

STAMPS := $(BIN)/.stamps

.PHONY: test-deps prereqs cc redis-server kube-apiserver etcd helm

test-deps: prereqs redis-server kube-apiserver etcd helm

# apt_install installs Debian package $(1), needed for $(2), as root or
# through sudo; without apt-get it stops and says what to install.
define apt_install
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "make: $(1) is missing; install it ($(2)) and run make again" >&2; exit 1; \
	fi; \
	sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	echo "installing $(1) with apt-get ($(2))"; \
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null
endef

## prereqs: git and a C compiler, besides Go and make.
prereqs: cc
	@command -v git >/dev/null 2>&1 || { echo "make: git is missing (fmt-check lists the files with git ls-files)" >&2; exit 1; }

## cc: the C compiler Go uses ($(GO) env CC, usually gcc); -race needs cgo.
cc:
	@command -v "$$($(GO) env CC)" >/dev/null 2>&1 || { $(call apt_install,gcc,the race detector needs a C compiler: gcc or clang); }

## redis-server: Debian's package; the tests start their own instances.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { $(call apt_install,redis-server,the Redis tests start their own servers); }

## kube-apiserver: built from source, 5-7 minutes the first time.
kube-apiserver: $(BIN)/kube-apiserver
$(BIN)/kube-apiserver: $(STAMPS)/kube-apiserver-$(KUBE_VERSION)
	@echo "building kube-apiserver $(KUBE_VERSION) from source for the tests (5-7 minutes, once)"
	GO=$(GO) hack/build-server.sh kube-apiserver $(KUBE_VERSION) $(BIN)

## etcd: built from source (about a minute); envtest and the benchmarks run it.
etcd: $(BIN)/etcd
$(BIN)/etcd: $(STAMPS)/etcd-$(ETCD_VERSION)
	@echo "building etcd $(ETCD_VERSION) from source for the tests (about a minute, once)"
	GO=$(GO) hack/build-server.sh etcd $(ETCD_VERSION) $(BIN)

## helm: a plain `go install` works for helm (1-2 minutes, once).
helm: $(BIN)/helm
$(BIN)/helm: $(STAMPS)/helm-$(HELM_VERSION)
	@echo "building helm $(HELM_VERSION) for the chart tests (1-2 minutes, once)"
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@touch $@

# A stamp records the wanted version of one tool. Creating it removes the
# stamps of other versions of the same tool, and being newer than the binary
# it makes the binary rebuild.
$(STAMPS)/%:
	@mkdir -p $(@D)
	@rm -f $(@D)/$(firstword $(subst -v, ,$*))-v*
	@touch $@
