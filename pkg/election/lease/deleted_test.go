package lease_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
)

// A Lease deleted while its holder still claims (kubectl delete lease, to
// "unstick" an election) ends nothing the holder knows of until its next
// renewal, or its deadline when it is cut off from the API server: a
// candidate that sees the Lease absent creates it only after it has seen it
// absent for a whole lease duration (and 2 %), by which time the holder's
// validity, measured from a renewal sent before the deletion, has run out.
func TestADeletedLeaseIsWaitedOut(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	a := newLock(t, env.Config, ns, "e", "a")
	b := newLock(t, env.Config, ns, "e", "b")
	mustAcquire(t, a) // a holds the Lease, then is cut off (never renews)
	acq := startAcquire(t.Context(), b)
	deleted := time.Now()
	if err := env.Client.CoordinationV1().Leases(ns).Delete(t.Context(), "e", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	term, err := acq.wait(t, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if took := acq.end.Sub(deleted); took < testDuration {
		t.Fatalf("b created the deleted Lease %v after the deletion, within a's %v lease: a may still claim", took, testDuration)
	}
	if term.Token <= 1 {
		t.Errorf("token after re-creation %d, want above a's 1", term.Token)
	}
}
