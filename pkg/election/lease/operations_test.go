package lease_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/lease"
)

// candidate is one process's candidacy on the backend, renewed as the
// engine renews it, campaigning once started.
type candidate struct {
	id   string
	b    *lease.Backend
	c    election.Candidacy
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
	done chan struct{}
	term election.Term
	err  error
}

// join starts a candidacy of id on Lease name: it is in line when this
// returns. It renews every third of the duration until the test ends or
// crash; at the end it resigns (unless crashed) and closes the backend.
func join(t *testing.T, cfg *rest.Config, ns, name, id string) *candidate {
	t.Helper()
	return joinFor(t, cfg, ns, name, id, testDuration)
}

// joinFor is join with lease duration d.
func joinFor(t *testing.T, cfg *rest.Config, ns, name, id string, d time.Duration) *candidate {
	t.Helper()
	b, err := lease.NewBackend(lease.Options{Client: fastClient(t, cfg).CoordinationV1(), Namespace: ns, Name: name},
		election.Params{Election: name, Identity: id, TTL: d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := b.Candidate(t.Context())
	if err != nil {
		t.Fatalf("%s: Candidate: %v", id, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	cd := &candidate{id: id, b: b, c: c, ctx: ctx, stop: stop, done: make(chan struct{})}
	cd.wg.Go(func() {
		tick := time.NewTicker(d / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_, _ = c.Renew(ctx)
			}
		}
	})
	t.Cleanup(func() {
		crashed := ctx.Err() != nil
		cd.crash()
		if !crashed {
			_ = c.Resign(context.Background())
		}
		_ = b.Close()
	})
	return cd
}

// campaign starts Campaign in the background.
func (cd *candidate) campaign() *candidate {
	go func() {
		defer close(cd.done)
		cd.term, cd.err = cd.c.Campaign(cd.ctx)
	}()
	return cd
}

// crash stops everything without resigning, as a killed process would.
func (cd *candidate) crash() {
	cd.stop()
	cd.wg.Wait()
}

func (cd *candidate) won() bool {
	select {
	case <-cd.done:
		return cd.err == nil
	default:
		return false
	}
}

// wait waits for Campaign to win within timeout.
func (cd *candidate) wait(t *testing.T, timeout time.Duration) election.Term {
	t.Helper()
	select {
	case <-cd.done:
		if cd.err != nil {
			t.Fatalf("%s: Campaign: %v", cd.id, cd.err)
		}
		return cd.term
	case <-time.After(timeout):
		t.Fatalf("%s did not win within %v", cd.id, timeout)
		return election.Term{}
	}
}

// waitInLine waits until leader sees to in line.
func waitInLine(t *testing.T, leader *candidate, to string) {
	t.Helper()
	kubetest.Eventually(t, 10*testDuration, to+" in line", func(ctx context.Context) bool {
		return leader.b.CheckSuccessor(ctx, leader.c, to) == nil
	})
}

// A switchover makes the named candidate, and no other, the next leader,
// with a greater token; it is refused with ErrNotInLine for a name not in
// line, which changes nothing.
func TestHandOverMakesOnlyTheSuccessorLead(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	leader := join(t, env.Config, ns, "e", "leader").campaign()
	first := leader.wait(t, 10*testDuration)
	a := join(t, env.Config, ns, "e", "a").campaign()
	b := join(t, env.Config, ns, "e", "b").campaign()
	waitInLine(t, leader, "a")
	waitInLine(t, leader, "b")

	for _, to := range []string{"nobody", "leader"} {
		if err := leader.b.HandOver(t.Context(), leader.c, to); !errors.Is(err, election.ErrNotInLine) {
			t.Errorf("HandOver(%q) = %v, want ErrNotInLine", to, err)
		}
	}
	if v, err := leader.c.Renew(t.Context()); err != nil || v.IsZero() {
		t.Fatalf("after refused handovers the leader cannot renew: %v", err)
	}

	start := time.Now()
	if err := leader.b.HandOver(t.Context(), leader.c, "b"); err != nil {
		t.Fatalf("HandOver(b): %v", err)
	}
	term := b.wait(t, 10*testDuration)
	t.Logf("HandOver → b won in %v", time.Since(start))
	if term.Token <= first.Token || term.Kind != election.Handover {
		t.Errorf("b's term %+v after the leader's token %d, want a greater token, kind handover", term, first.Token)
	}
	if a.won() {
		t.Fatal("a won during a switchover to b")
	}
	got := getLease(t, env, ns, "e")
	if *got.Spec.HolderIdentity != "b" || got.Annotations[lease.SuccessorAnnotation] != "" || got.Annotations[lease.IncarnationAnnotation] == "" {
		t.Errorf("after b's take the Lease reads holder %q, annotations %v; want b, no successor, b's incarnation",
			*got.Spec.HolderIdentity, got.Annotations)
	}
	// The old leader's term is over: renewing it is ErrLost.
	if _, err := leader.c.Renew(t.Context()); !errors.Is(err, election.ErrLost) {
		t.Errorf("the old leader's Renew after the handover = %v, want ErrLost", err)
	}
	// An ordinary release is not reserved: a takes it.
	if err := b.c.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if next := a.wait(t, 10*testDuration); next.Token <= term.Token {
		t.Errorf("a's token %d after b's %d", next.Token, term.Token)
	}
}

// A Lease handed over to a successor that never comes is taken by another
// candidate only once it has seen it released for the reservation; the
// successor itself takes it at once.
func TestReservationForAnAbsentSuccessorExpires(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	// Terms that outlast the test's steps: nothing is taken by expiry.
	const d = 30 * time.Second
	holder := newLockFor(t, env.Config, ns, "r", "holder", d)
	term := mustAcquire(t, holder)
	waiter := newLockFor(t, env.Config, ns, "r", "waiter", d)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	acq := startAcquire(ctx, waiter)

	const reserve = 3 * time.Second
	before := time.Now()
	if err := holder.HandOver(t.Context(), term, "ghost", reserve); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
	next, err := acq.wait(t, 10*reserve)
	if err != nil {
		t.Fatal(err)
	}
	took := acq.end.Sub(before)
	t.Logf("the waiter took the Lease reserved for an absent successor after %v (reservation %v)", took, reserve)
	if took < reserve {
		t.Errorf("the waiter took a Lease reserved for another after %v, before the reservation of %v ended", took, reserve)
	}
	if next.Token <= term.Token {
		t.Errorf("token %d after %d", next.Token, term.Token)
	}

	// The named successor takes at once, though another waits too.
	other := startAcquire(ctx, newLockFor(t, env.Config, ns, "r", "other", d))
	ghost := startAcquire(ctx, newLockFor(t, env.Config, ns, "r", "ghost", d))
	if err := waiter.HandOver(t.Context(), next, "ghost", time.Minute); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
	if _, err := ghost.wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if other.returned() {
		t.Fatal("another candidate took a Lease reserved for ghost")
	}
}

// A client-go elector ignores the reservation, keeps the annotations when it
// writes the Lease, and releases it later: that release is not a
// reservation, and our candidates take it at once.
func TestReservationDoesNotOutliveItsRelease(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	holder := newLock(t, env.Config, ns, "c", "holder")
	term := mustAcquire(t, holder)
	if err := holder.HandOver(t.Context(), term, "ghost", time.Hour); err != nil {
		t.Fatal(err)
	}
	// What client-go's LeaseLock writes: its own record on the object it read.
	leases := env.Client.CoordinationV1().Leases(ns)
	cur := getLease(t, env, ns, "c")
	cg, secs, tr := "client-go", int32(2), *cur.Spec.LeaseTransitions+1
	now := metav1.NewMicroTime(time.Now())
	cur.Spec.HolderIdentity, cur.Spec.LeaseDurationSeconds, cur.Spec.LeaseTransitions = &cg, &secs, &tr
	cur.Spec.AcquireTime, cur.Spec.RenewTime = &now, &now
	cur, err := leases.Update(t.Context(), cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cur.Annotations[lease.SuccessorAnnotation] != "ghost" {
		t.Fatalf("annotations after the update: %v, want the reservation kept (as client-go keeps it)", cur.Annotations)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	acq := startAcquire(ctx, newLock(t, env.Config, ns, "c", "waiter"))
	empty, one := "", int32(1)
	later := metav1.NewMicroTime(time.Now())
	cur.Spec.HolderIdentity, cur.Spec.LeaseDurationSeconds = &empty, &one
	cur.Spec.AcquireTime, cur.Spec.RenewTime = &later, &later
	if _, err := leases.Update(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	if _, err := acq.wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := acq.end.Sub(released); took > 10*time.Second {
		t.Errorf("took client-go's release after %v: a stale reservation held it back", took)
	}
}

// Reclaim releases the term and removes the line entry of the crashed
// process its handle names, and nothing of a live twin started with the
// same identity: each process has its own nonce.
func TestReclaimReleasesOnlyTheCrashedProcess(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	// A long duration: a takeover well under it comes from the reclaim.
	const d = 10 * time.Second
	twin := joinFor(t, env.Config, ns, "e", "a", d).campaign()
	twinTerm := twin.wait(t, 10*testDuration)
	crashed := joinFor(t, env.Config, ns, "e", "a", d).campaign() // a second process with --id a, waiting
	b := joinFor(t, env.Config, ns, "e", "b", d).campaign()
	waitInLine(t, twin, "b")
	kubetest.Eventually(t, 10*testDuration, "two entries in line", func(context.Context) bool {
		return len(lineEntries(t, env, ns, "e")) == 2
	})
	hTwin, hCrashed := twin.b.Handle(twin.c), crashed.b.Handle(crashed.c)
	if hTwin == hCrashed || !strings.HasSuffix(hTwin, ":a") {
		t.Fatalf("handles %q and %q: want distinct, naming identity a", hTwin, hCrashed)
	}
	crashed.crash()

	// The restarted process of the crashed one.
	restarted, err := lease.NewBackend(lease.Options{Client: fastClient(t, env.Config).CoordinationV1(), Namespace: ns, Name: "e"},
		election.Params{Election: "e", Identity: "a", TTL: d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	if err := restarted.Reclaim(t.Context(), hCrashed); err != nil {
		t.Fatalf("Reclaim(%s): %v", hCrashed, err)
	}
	if _, err := twin.c.Renew(t.Context()); err != nil {
		t.Fatalf("the twin's term after reclaiming the crashed process: %v", err)
	}
	if got := getLease(t, env, ns, "e"); *got.Spec.HolderIdentity != "a" || int64(*got.Spec.LeaseTransitions) != twinTerm.Token {
		t.Fatalf("reclaiming the crashed process touched the twin's term: %+v", got.Spec)
	}
	for nonce, e := range lineEntries(t, env, ns, "e") {
		if e.ID == "a" {
			t.Errorf("the crashed process's entry %s is still in line", nonce)
		}
	}
	if b.won() {
		t.Fatal("b won while the twin leads")
	}
	for _, bad := range []string{"", "zz:a", "0123:b", strings.Split(hTwin, ":")[0]} {
		if err := restarted.Reclaim(t.Context(), bad); err == nil {
			t.Errorf("Reclaim(%q) = nil, want an error", bad)
		}
	}

	// Now the twin, which leads, crashes: its restart releases its term and
	// b leads at once.
	twin.crash()
	start := time.Now()
	if err := restarted.Reclaim(t.Context(), hTwin); err != nil {
		t.Fatalf("Reclaim(%s): %v", hTwin, err)
	}
	term := b.wait(t, 10*testDuration)
	t.Logf("reclaim → b leads: %v", time.Since(start))
	if took := time.Since(start); took > d/2 {
		t.Errorf("b led %v after the reclaim, want well under the duration %v", took, d)
	}
	if term.Token <= twinTerm.Token {
		t.Errorf("b's token %d after %d", term.Token, twinTerm.Token)
	}
	// Reclaiming again, or a handle whose process left nothing, is a no-op.
	if err := restarted.Reclaim(t.Context(), hTwin); err != nil {
		t.Errorf("Reclaim again: %v", err)
	}
	if _, err := b.c.Renew(t.Context()); err != nil {
		t.Errorf("b's term after a repeated reclaim: %v", err)
	}
}

// publish runs WaitNewer for cd with gen until the test ends, and waits
// until it is queued.
func publish(t *testing.T, cd *candidate, gen int64) {
	t.Helper()
	queued := make(chan struct{})
	var once sync.Once
	cd.wg.Go(func() {
		err := cd.b.WaitNewer(cd.ctx, cd.c, gen, func() { once.Do(func() { close(queued) }) })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: WaitNewer = %v, want it to block until the candidacy ends", cd.id, err)
		}
	})
	select {
	case <-queued:
	case <-time.After(10 * testDuration):
		t.Fatalf("%s was not queued with generation %d", cd.id, gen)
	}
}

// Older generations do not take the Lease while a live newer one is in
// line; NewerSuccessor names the first to join of the newest generation.
func TestOlderGenerationWaitsForTheNewest(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	leader := join(t, env.Config, ns, "g", "leader").campaign()
	first := leader.wait(t, 10*testDuration)
	publish(t, leader, 1)
	var waiting []*candidate
	for _, c := range []struct {
		id  string
		gen int64
	}{{"old", 1}, {"new-2", 2}, {"newest-a", 3}, {"newest-b", 3}} {
		cd := join(t, env.Config, ns, "g", c.id)
		publish(t, cd, c.gen)
		waiting = append(waiting, cd.campaign())
	}
	for gen, want := range map[int64]string{1: "newest-a", 2: "newest-a", 3: ""} {
		got, err := leader.b.NewerSuccessor(t.Context(), leader.c, gen)
		if err != nil || got != want {
			t.Errorf("NewerSuccessor(%d) = %q, %v; want %q", gen, got, err, want)
		}
	}
	if err := leader.c.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	var winner *candidate
	kubetest.Eventually(t, 10*testDuration, "a candidate to win", func(context.Context) bool {
		for _, cd := range waiting {
			if cd.won() {
				winner = cd
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(winner.id, "newest-") || winner.term.Token <= first.Token {
		t.Fatalf("%s won with token %d after %d; want one of the newest generation, a greater token", winner.id, winner.term.Token, first.Token)
	}
	// The other newest one goes too (crashes); the next oldest, new-2,
	// waits for its entry to look dead, then leads; old never does meanwhile.
	for _, cd := range waiting {
		if cd != winner && strings.HasPrefix(cd.id, "newest-") {
			cd.crash()
		}
	}
	if err := winner.c.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	waiting[1].wait(t, 10*testDuration)
	if waiting[0].won() {
		t.Fatal("the old generation won while a newer one was in line")
	}
}

// The backend runs with exactly testdata/rbac.yaml: every operation works,
// and the line's permissions name one object.
func TestOperationsWithTheDocumentedRBAC(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	sa := env.ServiceAccount(t, ns, "leader-elector", filepath.Join("testdata", "rbac.yaml"))
	const name = "example"
	leader := join(t, sa, ns, name, "a").campaign()
	first := leader.wait(t, 10*testDuration)
	publish(t, leader, 1)
	b := join(t, sa, ns, name, "b")
	publish(t, b, 2)
	b.campaign()
	waitInLine(t, leader, "b")
	if got, err := leader.b.NewerSuccessor(t.Context(), leader.c, 1); err != nil || got != "b" {
		t.Fatalf("NewerSuccessor = %q, %v; want b", got, err)
	}
	if err := leader.b.HandOver(t.Context(), leader.c, "b"); err != nil {
		t.Fatalf("HandOver as the service account: %v", err)
	}
	term := b.wait(t, 10*testDuration)
	if term.Token <= first.Token {
		t.Errorf("token %d after %d", term.Token, first.Token)
	}
	h := b.b.Handle(b.c)
	b.crash()
	restarted, err := lease.NewBackend(lease.Options{Client: fastClient(t, sa).CoordinationV1(), Namespace: ns, Name: name},
		election.Params{Election: name, Identity: "b", TTL: testDuration}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	if err := restarted.Reclaim(t.Context(), h); err != nil {
		t.Fatalf("Reclaim as the service account: %v", err)
	}
	if got := getLease(t, env, ns, name); *got.Spec.HolderIdentity != "" {
		t.Errorf("after the reclaim the Lease is held by %q", *got.Spec.HolderIdentity)
	}

	// What the line's rule does not allow.
	leases := fastClient(t, sa).CoordinationV1().Leases(ns)
	line, err := leases.Get(t.Context(), name+lease.LineSuffix, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CoordinationV1().Leases(ns).Create(t.Context(), &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for what, call := range map[string]func() error{
		"delete the line": func() error { return leases.Delete(t.Context(), line.Name, metav1.DeleteOptions{}) },
		"update the line": func() error { _, err := leases.Update(t.Context(), line, metav1.UpdateOptions{}); return err },
		"patch the election's Lease": func() error {
			_, err := leases.Patch(t.Context(), name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"x":"y"}}}`), metav1.PatchOptions{})
			return err
		},
		"patch another Lease": func() error {
			_, err := leases.Patch(t.Context(), "other", types.MergePatchType, []byte(`{"metadata":{"annotations":{"x":"y"}}}`), metav1.PatchOptions{})
			return err
		},
		"list every Lease": func() error { _, err := leases.List(t.Context(), metav1.ListOptions{}); return err },
	} {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s as the service account: %v, want forbidden", what, err)
		}
	}
}

// With the RBAC of before the line (testdata/rbac-before-line.yaml: an
// upgrade that kept its Role), candidates still elect; a switchover is
// refused with a reason naming the line.
func TestWithoutTheLinePermissionsElectionStillWorks(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	sa := env.ServiceAccount(t, ns, "leader-elector", filepath.Join("testdata", "rbac-before-line.yaml"))
	var err error
	const name = "example"
	leader := join(t, sa, ns, name, "a").campaign()
	first := leader.wait(t, 10*testDuration)
	b := join(t, sa, ns, name, "b").campaign()
	if _, err := b.c.Renew(t.Context()); err != nil {
		t.Fatalf("a follower without the line cannot renew: %v", err)
	}
	err = leader.b.HandOver(t.Context(), leader.c, "b")
	if !errors.Is(err, election.ErrNotInLine) || !strings.Contains(err.Error(), name+lease.LineSuffix) {
		t.Fatalf("HandOver without the line = %v, want ErrNotInLine naming %s", err, name+lease.LineSuffix)
	}
	if err := leader.c.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if term := b.wait(t, 10*testDuration); term.Token <= first.Token {
		t.Errorf("token %d after %d", term.Token, first.Token)
	}
}

// runEngine runs an engine of id with generation gen on Lease name until
// the returned stop is called (or the test ends). The backend is not
// closed: the candidacy's own end must stop what it started (goleak).
func runEngine(t *testing.T, cfg *rest.Config, ns, name, id string, gen int64, onStatus func(election.Status)) (stop func()) {
	t.Helper()
	b, err := lease.NewBackend(lease.Options{Client: fastClient(t, cfg).CoordinationV1(), Namespace: ns, Name: name},
		election.Params{Election: name, Identity: id, TTL: testDuration}, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := election.New(election.Config{Election: name, Identity: id, Backend: b, TTL: testDuration,
		Generation: gen, OnStatus: onStatus})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = eng.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// The engine's shutdown path: a leader that stops hands over to the first
// candidate of the newest generation in line, never to an older one that
// waits too.
func TestEngineHandsOverToTheNewestGenerationAtShutdown(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	var mu sync.Mutex
	ready := map[string]bool{}
	var leaders []string
	record := func(s election.Status) {
		mu.Lock()
		defer mu.Unlock()
		ready[s.Identity] = s.Ready
		if s.IsLeader && (len(leaders) == 0 || leaders[len(leaders)-1] != s.Identity) {
			leaders = append(leaders, s.Identity)
		}
	}
	state := func() (map[string]bool, []string) {
		mu.Lock()
		defer mu.Unlock()
		r := map[string]bool{}
		for k, v := range ready {
			r[k] = v
		}
		return r, append([]string(nil), leaders...)
	}
	stopOld := runEngine(t, env.Config, ns, "s", "old-leader", 1, record)
	kubetest.Eventually(t, 10*testDuration, "old-leader to lead", func(context.Context) bool {
		_, l := state()
		return len(l) == 1
	})
	runEngine(t, env.Config, ns, "s", "old-waiter", 1, record)
	runEngine(t, env.Config, ns, "s", "new", 2, record)
	kubetest.Eventually(t, 10*testDuration, "both waiters ready (in line with their generation)", func(context.Context) bool {
		r, _ := state()
		return r["old-waiter"] && r["new"]
	})
	stopOld()
	kubetest.Eventually(t, 10*testDuration, "a new leader", func(context.Context) bool {
		_, l := state()
		return len(l) == 2
	})
	if _, l := state(); l[1] != "new" {
		t.Fatalf("leaders %v: the old leader's successor must be the newer generation", l)
	}
}

// Candidates joining at the same time get distinct join numbers: a join is
// conditional on the line's resourceVersion.
func TestConcurrentJoinsGetDistinctPlaces(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		b, err := lease.NewBackend(lease.Options{Client: fastClient(t, env.Config).CoordinationV1(), Namespace: ns, Name: "j"},
			election.Params{Election: "j", Identity: fmt.Sprintf("c%d", i), TTL: testDuration}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		wg.Go(func() {
			c, _, err := b.Candidate(t.Context())
			if err == nil {
				t.Cleanup(func() { _ = c.Resign(context.Background()) })
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Candidate: %v", err)
		}
	}
	line, err := env.Client.CoordinationV1().Leases(ns).Get(t.Context(), "j"+lease.LineSuffix, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[int64]string{}
	for k, v := range line.Annotations {
		if !strings.HasPrefix(k, lease.CandidateKeyPrefix) {
			continue
		}
		var e struct {
			ID  string `json:"id"`
			Seq int64  `json:"seq"`
		}
		if err := json.Unmarshal([]byte(v), &e); err != nil {
			t.Fatal(err)
		}
		if other, dup := seqs[e.Seq]; dup {
			t.Errorf("%s and %s both joined with seq %d", other, e.ID, e.Seq)
		}
		seqs[e.Seq] = e.ID
	}
	if len(seqs) != n {
		t.Errorf("%d distinct places in line, want %d: %v", len(seqs), n, seqs)
	}
}

// A waiting candidacy whose entry was removed behind its back (by an
// operator, or by a peer that judged it dead) learns it at its next Renew:
// ErrLost, so the engine starts a fresh candidacy that joins again.
func TestRenewOfARemovedEntryIsLost(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	cd := join(t, env.Config, ns, "v", "w")
	cd.crash() // stop the background renewals; the test renews by hand
	if _, err := cd.c.Renew(t.Context()); err != nil {
		t.Fatalf("Renew in line: %v", err)
	}
	removeEntries(t, env, ns, "v", "w")
	if _, err := cd.c.Renew(t.Context()); !errors.Is(err, election.ErrLost) {
		t.Fatalf("Renew after the entry was removed = %v, want ErrLost", err)
	}
	if err := cd.c.Resign(t.Context()); err != nil {
		t.Errorf("Resign of the lost candidacy: %v", err)
	}
}
