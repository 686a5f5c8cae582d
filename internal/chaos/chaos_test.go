package chaos

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

func TestMain(m *testing.M) {
	// controller-runtime's delegating logger (envtest) complains after 30 s
	// when no logger was set.
	ctrllog.SetLogger(logr.Discard())
	etcdtest.VerifyTestMain(m)
}

// The short CI form, run by `go test` without CHAOS_TRIALS, CHAOS_TERMS
// or CHAOS_DURATION: enough to hit every fault and backend now and then,
// inside a few minutes with -race on two cores. TestChaosReplays runs five
// more trials (one per operations and gate nemesis) next to these.
const (
	ciTrials    = 25
	ciRounds    = 1
	ciHandovers = 3
)

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

// TestChaos runs trials with seeds CHAOS_SEED, CHAOS_SEED+1, ... (default:
// the clock), each of CHAOS_ROUNDS fault rounds (default ciRounds) with
// CHAOS_HANDOVERS handovers after each (default ciHandovers), until
// CHAOS_TRIALS trials have run, CHAOS_TERMS terms have been checked, or
// CHAOS_DURATION (a Go duration) has passed, whichever comes first; with
// none of the three set, ciTrials trials. A failing trial prints its replay
// command; CHAOS_SUMMARY names a file to write the summary table to.
func TestChaos(t *testing.T) {
	trials := envInt64(t, "CHAOS_TRIALS", 0)
	terms := envInt64(t, "CHAOS_TERMS", 0)
	var duration time.Duration
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CHAOS_DURATION=%q: %v", v, err)
		}
		duration = d
	}
	if trials == 0 && terms == 0 && duration == 0 {
		trials = ciTrials
	}
	shape := Shape{
		Rounds:    int(envInt64(t, "CHAOS_ROUNDS", ciRounds)),
		Handovers: int(envInt64(t, "CHAOS_HANDOVERS", ciHandovers)),
	}
	if shape.Rounds < 1 || shape.Handovers < 0 {
		t.Fatalf("CHAOS_ROUNDS=%d CHAOS_HANDOVERS=%d: want at least one round and no negative handovers", shape.Rounds, shape.Handovers)
	}
	seed := envInt64(t, "CHAOS_SEED", time.Now().UnixNano()%1_000_000_000)
	bin, err := sidecartest.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seeds from %d, %d rounds of %d handovers a trial; until %d trials, %d terms or %v (0: no limit)",
		seed, shape.Rounds, shape.Handovers, trials, terms, duration)
	sum := NewSummary()
	start := time.Now()
	var i int64
	for ; (trials == 0 || i < trials) && (terms == 0 || int64(sum.Terms) < terms) && (duration == 0 || time.Since(start) < duration); i++ {
		plan := NewPlan(seed+i, ttl, shape)
		t.Run(fmt.Sprintf("seed=%d", plan.Seed), func(t *testing.T) {
			began := time.Now()
			out := RunTrial(t, bin, plan, ttl, os.Getenv("CHAOS_FAILURE_DIR"))
			sum.Add(out)
			r := out.Result
			t.Logf("%v: %d terms, settled %v, handovers p50 %v, %d writes accepted, %d stale rejected, %d stale wakes; %v; total %d terms in %v",
				plan, r.Terms, roundDurations(r.Settled), percentile(r.Handovers, 0.5).Round(time.Millisecond),
				r.Accepted, r.Rejected, r.StaleWakes, time.Since(began).Round(100*time.Millisecond),
				sum.Terms, time.Since(start).Round(time.Second))
		})
	}
	var b strings.Builder
	if err := sum.Write(&b); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	rate := float64(sum.Terms) / elapsed.Minutes()
	t.Logf("summary of %d trials in %v (%.0f terms/min):\n%s", sum.Trials, elapsed.Round(time.Second), rate, b.String())
	if path := os.Getenv("CHAOS_SUMMARY"); path != "" {
		header := fmt.Sprintf("%s, %d trials, seeds %d..%d, %d rounds of %d handovers a trial, TTL %v, %v (%.0f terms/min)\n",
			time.Now().UTC().Format(time.DateOnly), sum.Trials, seed, seed+i-1, shape.Rounds, shape.Handovers, ttl,
			elapsed.Round(time.Second), rate)
		if err := os.WriteFile(path, []byte(header+b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func roundDurations(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
