package chaos

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/pkg/history"
)

const sec = int64(time.Second)

// run builds a run whose history leads in each [start, end) span, in seconds.
func run(id string, spans ...[3]int64) Run {
	r := Run{Identity: id}
	r.History = append(r.History, history.Entry{Mono: 0, Identity: id})
	for _, s := range spans {
		start, end, token := s[0]*sec/10, s[1]*sec/10, s[2]
		r.History = append(r.History,
			history.Entry{Mono: start, Identity: id, IsLeader: true, Leader: id, Token: token},
			history.Entry{Mono: end, Identity: id, Leader: "", Token: 0})
	}
	r.Intervals = history.Intervals(r.History)
	return r
}

func record(runs ...Run) *Record {
	return &Record{
		Backend: BackendEtcd, TTL: 2 * time.Second, Validity: 1680 * time.Millisecond, WakeGrace: time.Second,
		Runs: runs, End: 1000 * sec, Rounds: []RoundRecord{{Settled: time.Second, SettleBound: 3 * time.Second}},
	}
}

// ds is tenths of a second, the unit of the spans above.
func ds(n int64) int64 { return n * sec / 10 }

func wantViolation(t *testing.T, res Result, substr string) {
	t.Helper()
	for _, v := range res.Violations {
		if strings.Contains(v, substr) {
			return
		}
	}
	t.Errorf("no violation containing %q in %q", substr, res.Violations)
}

func TestCleanHandoverPasses(t *testing.T) {
	rec := record(run("a", [3]int64{10, 30, 5}), run("b", [3]int64{35, 90, 7}))
	rec.Writes = []Write{
		{Writer: "a", Token: 5, PollStart: ds(20), PollEnd: ds(20) + 1, At: ds(20) + 2, Accepted: true},
		{Writer: "b", Token: 7, PollStart: ds(40), PollEnd: ds(40) + 1, At: ds(40) + 2, Accepted: true},
		{Writer: "a", Token: 5, PollStart: ds(29), PollEnd: ds(29) + 1, At: ds(41), Accepted: false},
	}
	res := Check(rec)
	if !res.Passed() || res.Accepted != 2 || res.Rejected != 1 {
		t.Fatalf("%+v", res)
	}
}

func TestOverlapIsAViolation(t *testing.T) {
	res := Check(record(run("a", [3]int64{10, 40, 5}), run("b", [3]int64{35, 90, 7})))
	if res.Overlaps != 1 {
		t.Errorf("overlaps %d, want 1", res.Overlaps)
	}
	wantViolation(t, res, "overlap: a#0")
}

func TestOpenClaimsOverlap(t *testing.T) {
	a := run("a", [3]int64{10, 20, 5})
	a.Intervals[0].End = 0 // still leading at the end
	res := Check(record(a, run("b", [3]int64{35, 90, 7})))
	wantViolation(t, res, "overlap")
}

func TestPausePastDeadlineIsAStaleWake(t *testing.T) {
	// a is stopped at 2 s, b wins at 4.2 s, a is continued at 6 s and
	// records its step-down at 6.1 s.
	rec := record(run("a", [3]int64{10, 61, 5}), run("b", [3]int64{42, 90, 7}))
	rec.Pauses = []Pause{{Run: "a#0", Stop: ds(20), Cont: ds(60)}}
	rec.Writes = []Write{{Writer: "a", Token: 5, PollStart: ds(19), PollEnd: ds(19) + 1, At: ds(60) + 1, Held: true}}
	res := Check(rec)
	if !res.Passed() || res.StaleWakes != 1 || res.Rejected != 1 {
		t.Fatalf("%+v", res)
	}
}

func TestPausedProcessThatKeepsClaimingAfterWake(t *testing.T) {
	rec := record(run("a", [3]int64{10, 75, 5}), run("b", [3]int64{42, 90, 7}))
	rec.Pauses = []Pause{{Run: "a#0", Stop: ds(20), Cont: ds(60)}}
	res := Check(rec)
	wantViolation(t, res, "overlap")
	wantViolation(t, res, "stale wake")
}

func TestPausedProcessThatAnswersAsLeaderAfterWake(t *testing.T) {
	rec := record(run("a", [3]int64{10, 61, 5}), run("b", [3]int64{42, 90, 7}))
	rec.Pauses = []Pause{{Run: "a#0", Stop: ds(20), Cont: ds(60)}}
	rec.Writes = []Write{{Writer: "a", Token: 5, PollStart: ds(60) + 5, PollEnd: ds(60) + 9, At: ds(60) + 10}}
	wantViolation(t, Check(rec), "answered GET /leader")
}

func TestSuccessorBeforeThePauseIsAViolation(t *testing.T) {
	rec := record(run("a", [3]int64{10, 61, 5}), run("b", [3]int64{15, 90, 7}))
	rec.Pauses = []Pause{{Run: "a#0", Stop: ds(20), Cont: ds(60)}}
	res := Check(rec)
	if res.StaleWakes != 0 || res.Overlaps != 1 {
		t.Errorf("%+v", res)
	}
}

func TestTokensMustIncrease(t *testing.T) {
	res := Check(record(run("a", [3]int64{10, 30, 7}), run("b", [3]int64{35, 90, 7})))
	if res.TokenViolations != 1 {
		t.Errorf("token violations %d, want 1", res.TokenViolations)
	}
	wantViolation(t, res, "token: b#0")
}

func TestRedisRestartedEmptyExplainsARegressionOnlyForAnUninformedWinner(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sawToken bool
		want     bool // a violation
	}{
		{"winner never saw the old token", false, false},
		{"winner had seen the old token", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := run("b", [3]int64{35, 90, 1})
			if tc.sawToken {
				b.History[0].Token = 7
			}
			rec := record(run("a", [3]int64{10, 30, 7}), b)
			rec.Backend = BackendRedis
			rec.RedisEmpty = []int64{ds(32)}
			res := Check(rec)
			if got := !res.Passed(); got != tc.want {
				t.Errorf("violation %t, want %t: %+v", got, tc.want, res)
			}
		})
	}
}

func TestRegisterChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    Write
		want string
	}{
		{"a token the writer did not hold", Write{Writer: "b", Token: 5, PollStart: ds(20), PollEnd: ds(20) + 1, At: ds(20) + 2, Accepted: true}, "held no such term"},
		{"a stale write accepted", Write{Writer: "a", Token: 5, PollStart: ds(29), PollEnd: ds(29) + 1, At: ds(36), Accepted: true}, "accepted a stale write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := record(run("a", [3]int64{10, 30, 5}), run("b", [3]int64{35, 90, 7}))
			rec.Writes = []Write{tc.w}
			wantViolation(t, Check(rec), tc.want)
		})
	}
}

func TestLivenessBound(t *testing.T) {
	rec := record(run("a", [3]int64{10, 30, 5}))
	rec.Rounds[0].Settled = 4 * time.Second
	wantViolation(t, Check(rec), "liveness")
	rec.Rounds[0].Settled = -1
	wantViolation(t, Check(rec), "no single agreed leader")
	rec = record(run("a", [3]int64{10, 30, 5}))
	rec.Rounds[0].Handovers = []HandoverRecord{{Kind: HandoverResign, From: "a#0", Took: -1}}
	wantViolation(t, Check(rec), "no new agreed term")
}

func TestDataRaceIsAViolation(t *testing.T) {
	rec := record(run("a", [3]int64{10, 30, 5}))
	rec.Races = []string{"a#0"}
	wantViolation(t, Check(rec), "data race")
}

func TestPlansAreReproducible(t *testing.T) {
	for seed := range int64(50) {
		shape := Shape{Rounds: 3, Handovers: 4}
		p, q := NewPlan(seed, 2*time.Second, shape), NewPlan(seed, 2*time.Second, shape)
		if p.String() != q.String() || fmt.Sprint(p.Rounds) != fmt.Sprint(q.Rounds) {
			t.Fatalf("seed %d: %v then %v", seed, p, q)
		}
		if len(p.Rounds) != shape.Rounds {
			t.Fatalf("seed %d: %d rounds, want %d", seed, len(p.Rounds), shape.Rounds)
		}
		for _, r := range p.Rounds {
			if n := len(r.Faults); n < 1 || n > 2 || (n == 2 && r.Faults[0].Kind == r.Faults[1].Kind) {
				t.Fatalf("seed %d: %v", seed, p)
			}
			if len(r.Handovers) != shape.Handovers {
				t.Fatalf("seed %d: %d handovers in a round, want %d", seed, len(r.Handovers), shape.Handovers)
			}
			for _, f := range r.Faults {
				if !slices.Contains(kindsFor(p.Backend), f.Kind) {
					t.Fatalf("seed %d: %s on backend %s", seed, f.Kind, p.Backend)
				}
			}
		}
	}
}

func TestRegisterRejectsLowerTokens(t *testing.T) {
	var r Register
	for _, tc := range []struct {
		token int64
		want  bool
	}{{3, true}, {3, true}, {2, false}, {5, true}, {4, false}} {
		if got := r.Write(Write{Token: tc.token}); got != tc.want {
			t.Errorf("write %d: accepted %t, want %t", tc.token, got, tc.want)
		}
	}
	if n := len(r.Log()); n != 5 {
		t.Errorf("log has %d writes", n)
	}
}

// An overlap after Redis restarted empty is a violation like any other: the
// backend keeps a restarted node from granting until old locks expired.
func TestRedisRestartedEmptyExcusesNoOverlap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend string
		end     int64 // when a steps down, tenths of a second
	}{
		{"redis, old leader steps down at once", BackendRedis, 42},
		{"redis, old leader claims past its validity", BackendRedis, 80},
		{"etcd", BackendEtcd, 42},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := record(run("a", [3]int64{10, tc.end, 5}), run("b", [3]int64{41, 90, 7}))
			rec.Backend = tc.backend
			rec.RedisEmpty = []int64{ds(40)}
			if res := Check(rec); res.Passed() || res.Overlaps != 1 {
				t.Errorf("want one overlap violation: %+v", res)
			}
		})
	}
}

func TestTermsAreDistinctIdentityAndToken(t *testing.T) {
	rec := record(run("a", [3]int64{10, 30, 5}, [3]int64{50, 60, 9}), run("b", [3]int64{35, 45, 7}))
	if res := Check(rec); !res.Passed() || res.Terms != 3 {
		t.Fatalf("want 3 terms and a pass: %+v", res)
	}
}

// gapRun is a run of a that leads from 1 s with token 5, whose history
// failed from 2 s (the last entry before) to 6 s (the first entry after),
// and whose entry at 6 s says it follows b.
func gapRun() Run {
	r := Run{Identity: "a", History: []history.Entry{
		{Mono: 0, Identity: "a"},
		{Mono: ds(10), Identity: "a", IsLeader: true, Leader: "a", Token: 5},
		{Mono: ds(20), Identity: "a", IsLeader: true, Leader: "a", Token: 5, Ready: true},
		{Mono: ds(60), Identity: "a", Leader: "b", Token: 7, Ready: true},
	}}
	r.Intervals = history.Intervals(r.History)
	r.Gaps = []Gap{{From: ds(20), To: ds(60)}}
	return r
}

func poll(writer string, token, at int64) Write {
	return Write{Writer: writer, Token: token, PollStart: at, PollEnd: at + 1e6, At: at + 2e6, Accepted: true}
}

// In a gap of a's history, a's claim ends with its client's last poll
// answered as leader, not at the next entry: b winning after that poll is
// a clean handover, although a's history shows it leading until 6 s.
func TestHistoryGapUsesPolls(t *testing.T) {
	rec := record(gapRun(), run("b", [3]int64{40, 90, 7}))
	rec.Writes = []Write{poll("a", 5, ds(15)), poll("a", 5, ds(30)), poll("a", 5, ds(38)), poll("b", 7, ds(41))}
	res := Check(rec)
	if !res.Passed() || res.Terms != 2 {
		t.Fatalf("want a pass with 2 terms: %+v", res)
	}
}

// A poll answered as leader inside the gap after b had won is an overlap.
func TestHistoryGapPollAfterSuccessorIsAnOverlap(t *testing.T) {
	rec := record(gapRun(), run("b", [3]int64{40, 90, 7}))
	rec.Writes = []Write{poll("a", 5, ds(15)), poll("a", 5, ds(30)), poll("a", 5, ds(45)), poll("b", 7, ds(41))}
	res := Check(rec)
	if res.Overlaps != 1 {
		t.Fatalf("want one overlap: %+v", res)
	}
	wantViolation(t, res, "observed by polls")
}

// A term a began and ended inside the gap, seen only by its client's polls,
// is still checked: here it overlaps b's.
func TestHistoryGapTermSeenOnlyByPolls(t *testing.T) {
	r := gapRun()
	r.History = r.History[:3]
	r.History[1].IsLeader, r.History[2].IsLeader = false, false
	r.Intervals = history.Intervals(r.History)
	r.Gaps = []Gap{{From: ds(20)}} // never mended
	rec := record(r, run("b", [3]int64{40, 90, 7}))
	rec.Writes = []Write{poll("a", 8, ds(50)), poll("a", 8, ds(52)), poll("b", 7, ds(41))}
	res := Check(rec)
	if res.Overlaps != 1 || res.Terms != 2 {
		t.Fatalf("want one overlap and 2 terms: %+v", res)
	}
}

func TestFailingHistoryMustBeReported(t *testing.T) {
	rec := record(run("a", [3]int64{10, 30, 5}))
	rec.Rounds[0].Degraded = map[string]bool{"a#0": false}
	wantViolation(t, Check(rec), "degraded")
	rec.Rounds[0].Degraded["a#0"] = true
	if res := Check(rec); !res.Passed() {
		t.Fatalf("%+v", res)
	}
}

// A term that goes on across a gap (the same token before and after it) is
// one claim: no token violation, and one term.
func TestHistoryGapSameTermAcross(t *testing.T) {
	r := gapRun()
	r.History[3] = history.Entry{Mono: ds(60), Identity: "a", IsLeader: true, Leader: "a", Token: 5}
	r.History = append(r.History, history.Entry{Mono: ds(70), Identity: "a", Leader: ""})
	r.Intervals = history.Intervals(r.History)
	rec := record(r, run("b", [3]int64{80, 90, 7}))
	rec.Writes = []Write{poll("a", 5, ds(30)), poll("a", 5, ds(50)), poll("b", 7, ds(85))}
	res := Check(rec)
	if !res.Passed() || res.Terms != 2 {
		t.Fatalf("want a pass with 2 terms: %+v", res)
	}
	// And b claiming inside the gap while a's term went on is an overlap.
	rec = record(r, run("b", [3]int64{40, 45, 7}))
	if res := Check(rec); res.Overlaps != 1 {
		t.Fatalf("want one overlap: %+v", res)
	}
}

// Every kind has its entry in the nemesis table, every entry a kind, and
// every backend some kinds (a kind added to one list only would never run,
// or crash a trial).
func TestEveryKindHasANemesis(t *testing.T) {
	table := nemeses()
	for _, k := range Kinds() {
		n, ok := table[k]
		if !ok || n.plan == nil || n.resolve == nil {
			t.Errorf("%s: no complete nemesis entry", k)
		}
	}
	if len(table) != len(Kinds()) {
		t.Errorf("%d nemeses, %d kinds", len(table), len(Kinds()))
	}
	for _, b := range Backends() {
		if len(kindsFor(b)) == 0 {
			t.Errorf("no kinds for backend %s", b)
		}
	}
}

// A poll that began in the gap and ended after it (after the entry that
// ended the gap) still shows the term: its write is owned, not a violation.
func TestHistoryGapPollStraddlingItsEnd(t *testing.T) {
	rec := record(gapRun(), run("b", [3]int64{70, 90, 7}))
	rec.Writes = []Write{poll("a", 5, ds(30)), {Writer: "a", Token: 5, PollStart: ds(59), PollEnd: ds(61), At: ds(61) + 1, Accepted: true}}
	if res := Check(rec); !res.Passed() {
		t.Fatalf("%+v", res)
	}
}

// TestRolloutStartsAfterAFaultThatRefusesNewPods: seed 20261326 injected a
// rollout 163 ms into a redis-deny held for 1.154 s; the rollout waited for
// a new pod that the denied user kept unready, and the heal, queued behind
// it, never came.
func TestRolloutStartsAfterAFaultThatRefusesNewPods(t *testing.T) {
	table := nemeses()
	deny := Fault{Kind: RedisDeny, Hold: 1154 * time.Millisecond}
	rollout := Fault{Kind: Rollout, Offset: 163 * time.Millisecond}
	got := startTimes([]Fault{deny, rollout}, table)
	if got[0] != 0 || got[1] != deny.Hold {
		t.Errorf("start times %v, want [0 %v]", got, deny.Hold)
	}
	// Other faults keep their overlap with a rollout.
	kill := Fault{Kind: KillLeader, Hold: time.Second}
	if got := startTimes([]Fault{kill, rollout}, table); got[1] != rollout.Offset {
		t.Errorf("start times %v, want the rollout at its offset %v", got, rollout.Offset)
	}
}
