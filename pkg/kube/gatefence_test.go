package kube_test

import (
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/pkg/kube"
)

// A leader frozen (SIGSTOP) just before it labels itself leader, sets its
// own gate True or demotes a peer, whose successor then takes over, must
// not do so when it wakes with that request still to send: the successor's
// demotion changed the frozen pod's resourceVersion, and its own writes the
// successor's, on which the write is conditional. (The chaos suite's
// gate-freeze, seed 17745947: pods b and c True at once.)
func TestWritesOfAFrozenLeaderAreFenced(t *testing.T) {
	env := kubetest.Start(t)
	for _, what := range []string{"label", "gate", "demote"} {
		t.Run(what, func(t *testing.T) { frozenLeaderWrite(t, env, what) })
	}
}

// frozenLeaderWrite freezes pod c's publisher before its fenced write what,
// lets b lead, then lets c's write go and checks it was refused.
func frozenLeaderWrite(t *testing.T, env *kubetest.Env, what string) {
	ns := env.Namespace(t)
	for _, name := range []string{"c", "b"} {
		createPod(t, env.Client, ns, name, nil, gate)
	}
	optsC, optsB := options(ns, "c"), options(ns, "b")
	optsC.ReadinessGate, optsB.ReadinessGate = gate, gate

	srcC, srcB := newSource("c"), newSource("b")
	frozen, thaw := make(chan struct{}), make(chan struct{})
	results := make(chan error, 1)
	var once sync.Once
	pubC := newPublisher(t, optsC, env.Client, nil)
	kube.SetFencedHooks(pubC, func(w string) {
		if w != what {
			return
		}
		once.Do(func() {
			close(frozen)
			<-thaw
		})
	}, func(w string, err error) {
		if w != what {
			return
		}
		select {
		case results <- err:
			// The woken process learns it no longer leads (its deadline
			// passed while frozen) only after the request went out.
			srcC.follow("b", 2)
		default:
		}
	})
	start(t, pubC, srcC)
	start(t, newPublisher(t, optsB, env.Client, nil), srcB)
	waitLabel(t, env.Client, ns, "c", roleKey, "follower")
	waitLabel(t, env.Client, ns, "b", roleKey, "follower")

	srcC.lead(1)
	<-frozen // c confirmed it leads, then froze before the write went out
	srcB.lead(2)
	waitCondition(t, env.Client, ns, "b", gate, corev1.ConditionTrue)
	close(thaw)
	err := <-results
	label, _ := podLabel(t.Context(), env.Client, ns, "c", roleKey)
	if err == nil {
		t.Fatalf("the frozen leader's %s write was accepted after its successor took over (c: label %s, gate %s)",
			what, label, condition(t.Context(), env.Client, ns, "c", gate))
	}
	if !apierrors.IsConflict(err) {
		t.Fatalf("the frozen leader's %s write failed with %v, want a conflict", what, err)
	}
	if got := condition(t.Context(), env.Client, ns, "c", gate); got == corev1.ConditionTrue || label == "leader" {
		t.Errorf("c: label %s, gate %s; want neither leader nor True", label, got)
	}
	assertOneLeader(t, env.Client, ns, "b")
}
