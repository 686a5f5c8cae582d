package lease_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/lease"
)

// interopDuration is the lease duration of both kinds of candidate: long
// enough that client-go's renew deadline (4 s) sits well inside it and
// that a takeover by watch (milliseconds) is told from one by expiry.
const interopDuration = 6 * time.Second

// TestClientGoElectorInterop puts a real client-go elector and our engine on
// one Lease and moves leadership between them every way it can move:
// client-go releases, we resign, client-go stops renewing, we lose the API
// server. Leadership intervals, on CLOCK_MONOTONIC, never overlap.
func TestClientGoElectorInterop(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	iv := &intervals{}

	// Our engine reaches the API server through a proxy the test can cut.
	proxy := env.Proxy(t)
	backend, err := lease.NewBackend(
		lease.Options{Client: fastClient(t, proxy.Config(env.Config)).CoordinationV1(), Namespace: ns},
		election.Params{Election: "e", Identity: "ours", TTL: interopDuration}, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := election.New(election.Config{
		Election: "e", Identity: "ours", Backend: backend, TTL: interopDuration,
		OnStatus: func(s election.Status) { iv.set("ours", s.IsLeader, s.Mono) },
	})
	if err != nil {
		t.Fatal(err)
	}

	// 1. client-go creates the Lease and leads; our engine follows it.
	cg1 := startClientGo(t, env.Config, ns, iv, true)
	iv.waitLeading(t, "client-go")
	engCtx, stopEngine := context.WithCancel(t.Context())
	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(engCtx) }()
	defer func() {
		proxy.Up()
		stopEngine()
		if err := <-engDone; err != nil {
			t.Errorf("engine: %v", err)
		}
	}()
	waitStatus(t, eng, "our engine to follow client-go", func(s election.Status) bool {
		return s.Ready && s.Leader == "client-go" && !s.IsLeader
	})

	// 2. client-go releases on cancel: we take over by watch, not expiry.
	released := time.Now()
	cg1.stop()
	st := waitStatus(t, eng, "our engine to lead", func(s election.Status) bool { return s.IsLeader })
	if took := time.Since(released); took >= interopDuration/2 {
		t.Errorf("took over client-go's release after %v; by watch it takes milliseconds", took)
	}
	if st.FencingToken != 1 {
		t.Errorf("our token after client-go's first term = %d, want 1", st.FencingToken)
	}
	checkRecord(t, env, ns, "ours", 1)

	// 3. We resign: a waiting client-go elector takes the released Lease at
	//    its next retry.
	cg2 := startClientGo(t, env.Config, ns, iv, false)
	if err := eng.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	iv.waitLeading(t, "client-go")
	checkRecord(t, env, ns, "client-go", 2)
	waitStatus(t, eng, "our engine to follow client-go again", func(s election.Status) bool {
		return s.Leader == "client-go" && s.FencingToken == 2
	})

	// 4. client-go stops renewing without releasing (a crash): we take over
	//    once the record has not changed for its whole duration.
	cg2.stop()
	st = waitStatus(t, eng, "our engine to lead after the crash", func(s election.Status) bool { return s.IsLeader })
	if st.FencingToken != 3 {
		t.Errorf("our token after client-go's crash = %d, want 3", st.FencingToken)
	}

	// 5. We lose the API server: our engine steps down at its deadline and
	//    client-go takes over once our renewals stopped for a duration.
	cg3 := startClientGo(t, env.Config, ns, iv, true)
	proxy.Blackhole()
	iv.waitLeading(t, "client-go")
	checkRecord(t, env, ns, "client-go", 4)
	proxy.Up()
	cg3.stop()

	got := iv.all(t)
	want := []string{"client-go", "ours", "client-go", "ours", "client-go"}
	if len(got) != len(want) {
		t.Fatalf("intervals %v, want holders %v", got, want)
	}
	for i, in := range got {
		if in.who != want[i] {
			t.Errorf("interval %d held by %s, want %s", i, in.who, want[i])
		}
		if i > 0 {
			t.Logf("%s -> %s: gap %v", got[i-1].who, in.who, time.Duration(in.start-got[i-1].end))
		}
		if i > 0 && in.start < got[i-1].end {
			t.Errorf("%s started %v before %s ended: two leaders", in.who,
				time.Duration(got[i-1].end-in.start), got[i-1].who)
		}
	}
}

// clientGo is a running client-go elector.
type clientGo struct {
	cancel context.CancelFunc
	done   chan struct{}
	iv     *intervals
}

// startClientGo runs a client-go elector with identity "client-go" on the
// Lease. With release it releases the Lease when stopped; without, it
// stops renewing as a crashed process would.
func startClientGo(t *testing.T, cfg *rest.Config, ns string, iv *intervals, release bool) *clientGo {
	t.Helper()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: "e", Namespace: ns},
		Client:     fastClient(t, cfg).CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: "client-go"},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   interopDuration,
		RenewDeadline:   4 * time.Second,
		RetryPeriod:     250 * time.Millisecond,
		ReleaseOnCancel: release,
		Name:            "interop",
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { iv.set("client-go", true, monoNow()) },
			OnStoppedLeading: func() { iv.set("client-go", false, monoNow()) },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	c := &clientGo{cancel: cancel, done: make(chan struct{}), iv: iv}
	go func() {
		defer close(c.done)
		le.Run(ctx)
	}()
	t.Cleanup(c.stop)
	return c
}

// stop ends client-go's leadership as its contract has it: the guarded
// work stops before the context is cancelled (and the Lease released).
func (c *clientGo) stop() {
	c.iv.set("client-go", false, monoNow())
	c.cancel()
	<-c.done
}

// interval is one leadership term on CLOCK_MONOTONIC.
type interval struct {
	who        string
	start, end int64
}

func (i interval) String() string { return fmt.Sprintf("%s[%d,%d]", i.who, i.start, i.end) }

// intervals records who leads when.
type intervals struct {
	mu     sync.Mutex
	closed []interval
	open   map[string]int64
	wake   chan struct{}
}

// set records that who starts or stops leading at mono; repeats are ignored.
func (r *intervals) set(who string, leading bool, mono int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open == nil {
		r.open = map[string]int64{}
	}
	start, isOpen := r.open[who]
	switch {
	case leading && !isOpen:
		r.open[who] = mono
	case !leading && isOpen:
		delete(r.open, who)
		r.closed = append(r.closed, interval{who, start, mono})
	default:
		return
	}
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
}

// waitLeading waits until who has an open interval.
func (r *intervals) waitLeading(t *testing.T, who string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		r.mu.Lock()
		_, ok := r.open[who]
		if r.wake == nil {
			r.wake = make(chan struct{})
		}
		wake := r.wake
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("%s did not start leading", who)
		}
	}
}

// all returns every interval, open ones ending now, sorted by start.
func (r *intervals) all(t *testing.T) []interval {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]interval(nil), r.closed...)
	now := monoNow()
	for who, start := range r.open {
		out = append(out, interval{who, start, now})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out
}

func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// waitStatus waits until the engine's status satisfies ok.
func waitStatus(t *testing.T, eng *election.Engine, what string, ok func(election.Status) bool) election.Status {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		s, changed := eng.Status()
		if ok(s) {
			return s
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; status %+v", what, s)
		}
	}
}

// checkRecord checks the Lease's holder and transitions.
func checkRecord(t *testing.T, env *kubetest.Env, ns, holder string, transitions int32) {
	t.Helper()
	l := getLease(t, env, ns, "e")
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != holder ||
		l.Spec.LeaseTransitions == nil || *l.Spec.LeaseTransitions != transitions {
		t.Errorf("Lease spec %+v, want holder %s with transitions %d", l.Spec, holder, transitions)
	}
}
