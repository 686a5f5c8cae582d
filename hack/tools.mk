# Test dependencies. Binaries land in ./bin (git-ignored) at pinned versions
# and are rebuilt only when missing.

.PHONY: test-deps redis-server

test-deps: redis-server

## redis-server: Debian's package; the tests start their own instances.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	}
