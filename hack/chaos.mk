# Fault-injection safety suite (internal/chaos). `make test` runs it in its
# short CI form; `make chaos TRIALS=N` runs N trials and prints the summary
# table. `make chaos TRIALS=1 CHAOS_SEED=<seed>` replays one trial.

TRIALS ?= 100
CHAOS_SEED ?=
CHAOS_SUMMARY ?= $(BIN)/chaos-summary.txt

.PHONY: chaos

## chaos: run TRIALS fault-injection trials (race detector on) and print the summary.
chaos: redis-server etcd
	@mkdir -p $(dir $(CHAOS_SUMMARY)) && rm -f $(CHAOS_SUMMARY)
	CHAOS_TRIALS=$(TRIALS) CHAOS_SEED=$(CHAOS_SEED) CHAOS_SUMMARY=$(CHAOS_SUMMARY) \
		$(GO) test -race -count=1 -v -run '^TestChaos$$' -timeout $$(( $(TRIALS) * 40 + 600 ))s ./internal/chaos; \
	status=$$?; echo; cat $(CHAOS_SUMMARY) 2>/dev/null; exit $$status
