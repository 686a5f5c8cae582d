# Side-by-side benchmarks (internal/bench, a module of its own so that the
# libraries it compares against stay out of the main module's requirements):
# leader-elector on etcd and Redis
# against client-go's leaderelection, redsync and bsm/redislock, on real
# local servers. Writes docs/benchmarks.md and docs/benchmarks-handover.svg.
# Run it on a quiet machine; the full run takes about ten minutes.
#   make bench                      the full run
#   make bench BENCH_FLAGS='-trials 20 -scale-elections 50'   a quick check
#   make bench BENCH_FLAGS='-only-ops -ops-trials 10'   the planned operations alone, printed
# The run fails only on a broken measurement (no samples, no new leader);
# targets are reported in the tables, not enforced.

BENCH_FLAGS ?=

.PHONY: bench

## bench: measure and write docs/benchmarks.md and its chart (needs test-deps).
bench: test-deps
	$(GO) -C internal/bench run ./cmd/bench $(BENCH_FLAGS)
