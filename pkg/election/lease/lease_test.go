package lease_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/pkg/election/lease"
)

func TestConfigValidate(t *testing.T) {
	good := lease.Config{
		// Never contacted: Validate and New talk to nothing.
		Client:    kubernetes.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"}).CoordinationV1(),
		Namespace: "default",
		Name:      "orders",
		Identity:  "pod-0",
		Duration:  10 * time.Second,
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*lease.Config)
		want string
	}{
		{"no client", func(c *lease.Config) { c.Client = nil }, "client"},
		{"no identity", func(c *lease.Config) { c.Identity = "" }, "identity"},
		{"empty name", func(c *lease.Config) { c.Name = "" }, "name"},
		{"name with underscore", func(c *lease.Config) { c.Name = "my_election" }, `name "my_election"`},
		{"uppercase name", func(c *lease.Config) { c.Name = "Orders" }, `name "Orders"`},
		{"empty namespace", func(c *lease.Config) { c.Namespace = "" }, "namespace"},
		{"dotted namespace", func(c *lease.Config) { c.Namespace = "a.b" }, `namespace "a.b"`},
		{"duration too short", func(c *lease.Config) { c.Duration = time.Second }, "between"},
		{"duration zero", func(c *lease.Config) { c.Duration = 0 }, "between"},
		{"duration too long", func(c *lease.Config) { c.Duration = 25 * time.Hour }, "between"},
		{"fractional duration", func(c *lease.Config) { c.Duration = 2500 * time.Millisecond }, "whole seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error mentioning %q", err, tc.want)
			}
			if _, err := lease.New(c); err == nil {
				t.Fatal("New accepted what Validate rejects")
			}
		})
	}
}

// TestLease runs the protocol's behaviours against one real API server.
func TestLease(t *testing.T) {
	env := kubetest.Start(t)

	t.Run("CreatesClientGoRecord", func(t *testing.T) {
		ns := env.Namespace(t)
		a := newLock(t, env.Config, ns, "e", "a")
		term := mustAcquire(t, a)
		if term.Token != 1 || term.Kind != "" || !term.Vacant.IsZero() {
			t.Fatalf("first term = token %d kind %q vacant %v, want token 1, no predecessor", term.Token, term.Kind, term.Vacant)
		}
		rec := resourcelock.LeaseSpecToLeaderElectionRecord(&getLease(t, env, ns, "e").Spec)
		if rec.HolderIdentity != "a" || rec.LeaseDurationSeconds != 2 || rec.LeaderTransitions != 1 ||
			rec.AcquireTime.IsZero() || rec.RenewTime.IsZero() {
			t.Fatalf("record as client-go reads it: %+v", rec)
		}
	})

	t.Run("ReleaseWritesClientGoRelease", func(t *testing.T) {
		ns := env.Namespace(t)
		a := newLock(t, env.Config, ns, "e", "a")
		term := mustAcquire(t, a)
		if err := a.Release(t.Context(), term); err != nil {
			t.Fatal(err)
		}
		rec := resourcelock.LeaseSpecToLeaderElectionRecord(&getLease(t, env, ns, "e").Spec)
		if rec.HolderIdentity != "" || rec.LeaseDurationSeconds != 1 || rec.LeaderTransitions != 1 {
			t.Fatalf("released record: %+v, want no holder, duration 1, transitions 1", rec)
		}
		if _, err := a.Renew(t.Context(), term); !isLost(err) {
			t.Fatalf("Renew after Release = %v, want ErrLost", err)
		}
		if err := a.Release(t.Context(), term); err != nil {
			t.Fatalf("second Release = %v, want nil", err)
		}
	})

	t.Run("ReleaseTakenOverByWatch", func(t *testing.T) {
		// A long duration: a follower that polled or waited for its timer
		// would take 10 s, not milliseconds.
		ns := env.Namespace(t)
		a := newLockDuration(t, env, ns, "e", "a", 10*time.Second)
		b := newLockDuration(t, env, ns, "e", "b", 10*time.Second)
		first := mustAcquire(t, a)
		if err := b.Check(t.Context()); err != nil {
			t.Fatal(err)
		}
		acq := startAcquire(t.Context(), b)
		released := time.Now()
		if err := a.Release(t.Context(), first); err != nil {
			t.Fatal(err)
		}
		term, err := acq.wait(t, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if took := acq.end.Sub(released); took >= 5*time.Second {
			t.Fatalf("takeover of a released Lease took %v; the watch should make it milliseconds", took)
		}
		if term.Token != 2 || term.Kind != lease.Handover || term.Vacant.IsZero() {
			t.Fatalf("term = token %d kind %q vacant %v, want token 2 after a handover", term.Token, term.Kind, term.Vacant)
		}
		if h := getLease(t, env, ns, "e").Spec.HolderIdentity; h == nil || *h != "b" {
			t.Fatalf("holder = %v, want b", h)
		}
	})

	t.Run("FailoverIgnoresRecordTimestamps", func(t *testing.T) {
		// Records whose times say "expired an hour ago" and "renewed an hour
		// from now": both are taken exactly one duration after first sight.
		ns := env.Namespace(t)
		for i, offset := range []time.Duration{-time.Hour, time.Hour} {
			name := fmt.Sprintf("e%d", i)
			ghost := ghostLease(name, time.Now().Add(offset), 7)
			if _, err := env.Client.CoordinationV1().Leases(ns).Create(t.Context(), ghost, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			b := newLock(t, env.Config, ns, name, "b")
			acq := startAcquire(t.Context(), b)
			term, err := acq.wait(t, 60*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if took := acq.end.Sub(acq.start); took < testDuration {
				t.Fatalf("renewTime %v from now: taken after %v, before the full duration %v", offset, took, testDuration)
			}
			if term.Token != 8 || term.Kind != lease.Failover {
				t.Fatalf("term = token %d kind %q, want token 8 after a failover", term.Token, term.Kind)
			}
		}
	})

	t.Run("RenewalsKeepFollowerWaiting", func(t *testing.T) {
		ns := env.Namespace(t)
		a := newLock(t, env.Config, ns, "e", "a")
		b := newLock(t, env.Config, ns, "e", "b")
		term := mustAcquire(t, a)
		acq := startAcquire(t.Context(), b)
		// Renew for three lease durations; b must wait throughout.
		var lastSent time.Time
		for until := time.Now().Add(3 * testDuration); time.Now().Before(until); {
			sent, err := a.Renew(t.Context(), term)
			if err != nil {
				t.Fatalf("Renew: %v", err)
			}
			lastSent = sent
			if acq.returned() {
				t.Fatalf("b took the Lease while a renewed it: %v", acq.err)
			}
			sleepUntil(t, sent.Add(testDuration/4))
		}
		got, err := acq.wait(t, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// The rule itself: b saw the last renewal no earlier than it was
		// sent, and waited a full duration after that.
		if acq.end.Before(lastSent.Add(testDuration)) {
			t.Fatalf("b took over %v after a's last renewal was sent, before the full duration %v",
				acq.end.Sub(lastSent), testDuration)
		}
		if got.Token != 2 || got.Kind != lease.Failover {
			t.Fatalf("term = token %d kind %q, want token 2 after a failover", got.Token, got.Kind)
		}
		if _, err := a.Renew(t.Context(), term); !isLost(err) {
			t.Fatalf("the old holder's Renew = %v, want ErrLost", err)
		}
	})

	t.Run("ForeignWriteLosesTerm", func(t *testing.T) {
		ns := env.Namespace(t)
		a := newLock(t, env.Config, ns, "e", "a")
		term := mustAcquire(t, a)
		cur := getLease(t, env, ns, "e")
		intruder, tr := "intruder", int32(5)
		cur.Spec.HolderIdentity, cur.Spec.LeaseTransitions = &intruder, &tr
		if _, err := env.Client.CoordinationV1().Leases(ns).Update(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Renew(t.Context(), term); !isLost(err) {
			t.Fatalf("Renew after someone else took the Lease = %v, want ErrLost", err)
		}
		if err := a.Release(t.Context(), term); err != nil {
			t.Fatalf("Release of a lost term = %v, want nil", err)
		}
		if h := *getLease(t, env, ns, "e").Spec.HolderIdentity; h != "intruder" {
			t.Fatalf("Release of a lost term changed the holder to %q", h)
		}
	})

	t.Run("OwnLostWriteRecognised", func(t *testing.T) {
		// A renewal applied by the server whose answer never arrived leaves
		// the Lock with an old resourceVersion; the next renewal conflicts,
		// recognises its own term and succeeds.
		ns := env.Namespace(t)
		a := newLock(t, env.Config, ns, "e", "a")
		term := mustAcquire(t, a)
		cur := getLease(t, env, ns, "e")
		renewed := metav1.NewMicroTime(time.Now())
		cur.Spec.RenewTime = &renewed
		if _, err := env.Client.CoordinationV1().Leases(ns).Update(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Renew(t.Context(), term); err != nil {
			t.Fatalf("Renew after its own lost write = %v, want success", err)
		}
		after := getLease(t, env, ns, "e")
		if after.ResourceVersion == cur.ResourceVersion || *after.Spec.HolderIdentity != "a" {
			t.Fatalf("Renew did not write: rv %s -> %s, holder %s", cur.ResourceVersion, after.ResourceVersion, *after.Spec.HolderIdentity)
		}
	})

	t.Run("DeletedLease", func(t *testing.T) {
		ns := env.Namespace(t)
		a := newLock(t, env.Config, ns, "e", "a")
		b := newLock(t, env.Config, ns, "e", "b")
		t1 := mustAcquire(t, a)
		if err := a.Release(t.Context(), t1); err != nil {
			t.Fatal(err)
		}
		t2 := mustAcquire(t, b) // token 2
		if err := env.Client.CoordinationV1().Leases(ns).Delete(t.Context(), "e", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Renew(t.Context(), t2); !isLost(err) {
			t.Fatalf("Renew of a deleted Lease = %v, want ErrLost", err)
		}
		// b saw token 2: the Lease it creates again continues above it.
		t3 := mustAcquire(t, b)
		if t3.Token <= t2.Token {
			t.Fatalf("token after re-creation = %d, want above %d", t3.Token, t2.Token)
		}
		// A candidate that never saw the old Lease starts again at 1: the
		// documented case in which tokens go backwards (the UID changes).
		uid := getLease(t, env, ns, "e").UID
		if err := env.Client.CoordinationV1().Leases(ns).Delete(t.Context(), "e", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		c := newLock(t, env.Config, ns, "e", "c")
		if t4 := mustAcquire(t, c); t4.Token != 1 {
			t.Fatalf("a fresh candidate's token on a re-created Lease = %d, want 1", t4.Token)
		}
		if getLease(t, env, ns, "e").UID == uid {
			t.Fatal("the re-created Lease kept its UID")
		}
	})

	t.Run("OneHolderAtATime", func(t *testing.T) {
		// Five candidates contend; each winner renews twice and releases.
		// Terms never overlap and tokens strictly increase.
		ns := env.Namespace(t)
		type held struct {
			id         string
			token      int64
			start, end time.Time
		}
		var (
			mu    sync.Mutex
			terms []held
			wg    sync.WaitGroup
		)
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		errs := make(chan error, 5)
		for i := range 5 {
			id := fmt.Sprintf("c%d", i)
			l := newLock(t, env.Config, ns, "e", id)
			wg.Go(func() {
				term, err := l.Acquire(ctx)
				if err != nil {
					errs <- fmt.Errorf("%s: Acquire: %w", id, err)
					return
				}
				start := time.Now()
				for range 2 {
					if _, err := l.Renew(ctx, term); err != nil {
						errs <- fmt.Errorf("%s: Renew: %w", id, err)
						return
					}
				}
				end := time.Now() // before the release is sent
				if err := l.Release(ctx, term); err != nil {
					errs <- fmt.Errorf("%s: Release: %w", id, err)
					return
				}
				mu.Lock()
				terms = append(terms, held{id, term.Token, start, end})
				mu.Unlock()
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if len(terms) != 5 {
			t.Fatalf("%d terms, want 5", len(terms))
		}
		for i := 1; i < len(terms); i++ {
			prev, cur := terms[i-1], terms[i]
			if cur.token <= prev.token {
				t.Errorf("token %d (%s) after %d (%s)", cur.token, cur.id, prev.token, prev.id)
			}
			if cur.start.Before(prev.end) {
				t.Errorf("%s's term started %v before %s's ended", cur.id, prev.end.Sub(cur.start), prev.id)
			}
		}
	})

	t.Run("WatchReportsHolder", func(t *testing.T) {
		ns := env.Namespace(t)
		a := newLock(t, env.Config, ns, "e", "a")
		w := newLock(t, env.Config, ns, "e", "w")
		ctx, cancel := context.WithCancel(t.Context())
		seen := make(chan lease.Holder, 16)
		done := make(chan error, 1)
		go func() { done <- w.Watch(ctx, func(h lease.Holder) { seen <- h }) }()
		expect := func(id string, token int64) time.Time {
			t.Helper()
			select {
			case h := <-seen:
				if h.Identity != id || h.Token != token {
					t.Fatalf("Watch reported %+v, want %q with token %d", h, id, token)
				}
				return time.Now()
			case <-time.After(30 * time.Second):
				t.Fatalf("Watch did not report %q", id)
				return time.Time{}
			}
		}
		expect("", 0) // absent
		term := mustAcquire(t, a)
		expect("a", 1)
		if err := a.Release(t.Context(), term); err != nil {
			t.Fatal(err)
		}
		expect("", 0)
		acquired := time.Now()
		mustAcquire(t, a) // and never renewed
		expect("a", 2)
		if gone := expect("", 0); gone.Sub(acquired) < testDuration {
			t.Fatalf("a silent holder was reported gone after %v, before its duration %v", gone.Sub(acquired), testDuration)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch = %v, want context.Canceled", err)
		}
	})

	t.Run("WatchFailsWhenServerUnreachable", func(t *testing.T) {
		ns := env.Namespace(t)
		proxy := env.Proxy(t)
		a := newLock(t, env.Config, ns, "e", "a")
		w := newLock(t, proxy.Config(env.Config), ns, "e", "w")
		mustAcquire(t, a)
		seen := make(chan lease.Holder, 16)
		done := make(chan error, 1)
		go func() { done <- w.Watch(t.Context(), func(h lease.Holder) { seen <- h }) }()
		select {
		case h := <-seen:
			if h.Identity != "a" {
				t.Fatalf("Watch reported %+v, want a", h)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Watch reported nothing")
		}
		proxy.Blackhole()
		select {
		case err := <-done:
			if err == nil || errors.Is(err, context.Canceled) {
				t.Fatalf("Watch = %v, want an error", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Watch kept running with the API server unreachable")
		}
	})
}

// ghostLease is a Lease held by "ghost" whose acquire and renew times are
// at, with the given transitions.
func ghostLease(name string, at time.Time, transitions int32) *coordinationv1.Lease {
	holder, secs := "ghost", int32(testDuration/time.Second)
	t := metav1.NewMicroTime(at)
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: &holder, LeaseDurationSeconds: &secs,
			AcquireTime: &t, RenewTime: &t, LeaseTransitions: &transitions,
		},
	}
}

// sleepUntil paces a loop that stands in for a renewer; it synchronises
// nothing.
func sleepUntil(t *testing.T, at time.Time) {
	t.Helper()
	timer := time.NewTimer(time.Until(at))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.Context().Done():
	}
}

// newLockDuration is newLock with another lease duration.
func newLockDuration(t *testing.T, env *kubetest.Env, ns, name, id string, d time.Duration) *lease.Lock {
	t.Helper()
	l, err := lease.New(lease.Config{
		Client:    fastClient(t, env.Config).CoordinationV1(),
		Namespace: ns,
		Name:      name,
		Identity:  id,
		Duration:  d,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}
