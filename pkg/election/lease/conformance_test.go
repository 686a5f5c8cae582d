package lease_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/electiontest"
	"github.com/leader-elector/leader-elector/pkg/election/lease"
)

// TestConformance runs the backend conformance suite on a real API server
// reached through a proxy, which the suite's outage resets.
func TestConformance(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := tcpproxy.Start(t, u.Host)
	viaProxy := rest.CopyConfig(env.Config)
	viaProxy.Host = "https://" + proxy.Addr()
	electiontest.Run(t, electiontest.Harness{
		TTL: lease.MinDuration,
		New: func(t *testing.T, p election.Params) election.Backend {
			b, err := lease.NewBackend(lease.Options{Client: fastClient(t, viaProxy).CoordinationV1(), Namespace: ns}, p, nil)
			if err != nil {
				t.Fatalf("lease.NewBackend: %v", err)
			}
			return b
		},
		Outage: func(t *testing.T) func() {
			proxy.Reset()
			return proxy.Pass
		},
		// A candidate stores its entry in line while it waits, and the
		// Lease while it holds it.
		Delete: func(t *testing.T, p election.Params) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			removeEntries(t, env, ns, p.Election, p.Identity)
			leases := env.Client.CoordinationV1().Leases(ns)
			l, err := leases.Get(ctx, p.Election, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return
			}
			if err != nil {
				t.Fatalf("get Lease %s: %v", p.Election, err)
			}
			if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == p.Identity {
				if err := leases.Delete(ctx, p.Election, metav1.DeleteOptions{}); err != nil {
					t.Fatalf("delete Lease %s: %v", p.Election, err)
				}
			}
		},
	})
}
