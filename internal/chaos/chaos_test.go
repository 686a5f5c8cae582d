package chaos

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

func TestMain(m *testing.M) {
	etcdtest.VerifyTestMain(m)
}

// ciTrials is how many trials `go test` runs without CHAOS_TRIALS: enough to
// hit every fault and backend now and then, inside a few minutes with -race
// on two cores.
const ciTrials = 30

const ttl = 2 * time.Second

// envInt64 reads an integer from the environment, or returns def.
func envInt64(t *testing.T, name string, def int64) int64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// TestChaos runs CHAOS_TRIALS trials (default ciTrials) with seeds
// CHAOS_SEED, CHAOS_SEED+1, ... (default: the clock). A failing trial
// prints its seed; CHAOS_SEED=<seed> CHAOS_TRIALS=1 replays it.
func TestChaos(t *testing.T) {
	trials := envInt64(t, "CHAOS_TRIALS", ciTrials)
	seed := envInt64(t, "CHAOS_SEED", time.Now().UnixNano()%1_000_000_000)
	bin, err := sidecartest.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seeds %d..%d", seed, seed+trials-1)
	sum := NewSummary()
	start := time.Now()
	for i := range trials {
		plan := NewPlan(seed+i, ttl)
		t.Run(fmt.Sprintf("seed=%d", plan.Seed), func(t *testing.T) {
			began := time.Now()
			out := RunTrial(t, bin, plan, ttl, os.Getenv("CHAOS_FAILURE_DIR"))
			sum.Add(out)
			r := out.Result
			t.Logf("%v: settled in %v (bound %v), %d writes accepted, %d stale rejected, %d stale wakes; %v",
				plan, r.Settled.Round(time.Millisecond), out.Record.SettleBound, r.Accepted, r.Rejected, r.StaleWakes,
				time.Since(began).Round(100*time.Millisecond))
		})
	}
	var b strings.Builder
	if err := sum.Write(&b); err != nil {
		t.Fatal(err)
	}
	t.Logf("summary of %d trials in %v:\n%s", trials, time.Since(start).Round(time.Second), b.String())
	if path := os.Getenv("CHAOS_SUMMARY"); path != "" {
		header := fmt.Sprintf("%s, %d trials, seeds %d..%d, TTL %v, %v\n", time.Now().UTC().Format(time.DateOnly), trials, seed, seed+trials-1, ttl, time.Since(start).Round(time.Second))
		if err := os.WriteFile(path, []byte(header+b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}
