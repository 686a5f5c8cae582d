package chaos

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
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
	ciParallel  = 2
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
// command; CHAOS_SUMMARY names a file to write the summary table to;
// CHAOS_KEEP=1 keeps every trial's histories and timeline, not only a failed
// one's (in CHAOS_FAILURE_DIR, default $TMPDIR); CHAOS_PARALLEL=N runs N
// trials at a time (default ciParallel; a trial's wall time is mostly the sidecars'
// hold-off after a resignation, one TTL, so a few at once use the machine
// better without changing any plan).
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
	parallel := int(envInt64(t, "CHAOS_PARALLEL", ciParallel))
	if parallel < 1 {
		t.Fatalf("CHAOS_PARALLEL=%d: want at least 1", parallel)
	}
	sum := NewSummary()
	start := time.Now()
	// Workers take the next seed while no limit is reached; each trial is
	// a subtest (t.Run may be called from several goroutines at once).
	var mu sync.Mutex
	var i int64
	next := func() (int64, bool) {
		mu.Lock()
		defer mu.Unlock()
		if (trials > 0 && i >= trials) || (terms > 0 && int64(sum.Terms) >= terms) || (duration > 0 && time.Since(start) >= duration) {
			return 0, false
		}
		i++
		return seed + i - 1, true
	}
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for {
				s, ok := next()
				if !ok {
					return
				}
				plan := NewPlan(s, ttl, shape)
				t.Run(fmt.Sprintf("seed=%d", plan.Seed), func(t *testing.T) {
					began := time.Now()
					out := RunTrial(t, bin, plan, ttl, os.Getenv("CHAOS_FAILURE_DIR"), os.Getenv("CHAOS_KEEP") != "")
					mu.Lock()
					sum.Add(out)
					total := sum.Terms
					mu.Unlock()
					r := out.Result
					t.Logf("%v: %d terms, settled %v, handovers p50 %s, %d writes accepted, %d stale rejected, %d stale wakes; %v; total %d terms in %v",
						plan, r.Terms, roundDurations(r.Settled), handoverMedians(out.Record),
						r.Accepted, r.Rejected, r.StaleWakes, time.Since(began).Round(100*time.Millisecond),
						total, time.Since(start).Round(time.Second))
				})
			}
		})
	}
	wg.Wait()
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

// handoverMedians describes the median time of each kind of handover.
func handoverMedians(rec *Record) string {
	by := map[Handover][]time.Duration{}
	for _, r := range rec.Rounds {
		for _, h := range r.Handovers {
			by[h.Kind] = append(by[h.Kind], h.Took)
		}
	}
	var parts []string
	for _, k := range Handovers() {
		if len(by[k]) > 0 {
			parts = append(parts, fmt.Sprintf("%s %v (%d)", k, percentile(by[k], 0.5).Round(time.Millisecond), len(by[k])))
		}
	}
	return strings.Join(parts, ", ")
}
