# Fault-injection safety suite (internal/chaos). `make test` runs it in its
# short CI form (30 trials of one round and three handovers, two at a
# time). `make chaos`
# runs trials of CHAOS_ROUNDS rounds of CHAOS_HANDOVERS handovers each
# until CHAOS_TERMS terms have been checked (or TRIALS trials have run, or
# CHAOS_DURATION has passed, whichever comes first; 0 or empty: no limit)
# and prints the summary table. A failing trial prints its replay command:
# `make chaos TRIALS=1 CHAOS_TERMS=0 CHAOS_SEED=<seed> CHAOS_ROUNDS=.. CHAOS_HANDOVERS=..`.

TRIALS ?= 0
CHAOS_TERMS ?= 10000
CHAOS_DURATION ?=
CHAOS_ROUNDS ?= 4
CHAOS_HANDOVERS ?= 22
# Trials at a time: a trial mostly waits (a resigned sidecar holds off for
# one TTL), so three at once make about 3x the terms a minute.
CHAOS_PARALLEL ?= 3
CHAOS_SEED ?=
CHAOS_SUMMARY ?= $(BIN)/chaos-summary.txt
# The go test timeout: generous, since a run is bounded by the limits above.
CHAOS_TIMEOUT ?= 3h

.PHONY: chaos

## chaos: run fault-injection trials up to CHAOS_TERMS terms (race detector on) and print the summary.
chaos: redis-server etcd kube-apiserver
	@mkdir -p $(dir $(CHAOS_SUMMARY)) && rm -f $(CHAOS_SUMMARY)
	CHAOS_TRIALS=$(TRIALS) CHAOS_TERMS=$(CHAOS_TERMS) CHAOS_DURATION=$(CHAOS_DURATION) \
	CHAOS_ROUNDS=$(CHAOS_ROUNDS) CHAOS_HANDOVERS=$(CHAOS_HANDOVERS) CHAOS_PARALLEL=$(CHAOS_PARALLEL) CHAOS_SEED=$(CHAOS_SEED) CHAOS_SUMMARY=$(CHAOS_SUMMARY) \
		$(GO) test -race -count=1 -v -run '^TestChaos$$' -timeout $(CHAOS_TIMEOUT) ./internal/chaos; \
	status=$$?; echo; cat $(CHAOS_SUMMARY) 2>/dev/null; exit $$status
