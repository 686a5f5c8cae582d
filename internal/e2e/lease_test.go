package e2e

import (
	"net/url"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
)

// leaseElection is the election of manifests/rbac-lease.yaml, whose Role
// names the Lease.
const leaseElection = "example"

// leaseCluster is a control plane with a namespace whose service account
// has exactly manifests/rbac-lease.yaml.
type leaseCluster struct {
	env *kubetest.Env
	ns  string
	sa  *rest.Config // authenticates as the service account
}

func newLeaseCluster(t *testing.T) *leaseCluster {
	t.Helper()
	return newLeaseClusterWith(t, filepath.Join("manifests", "rbac-lease.yaml"))
}

// newLeaseClusterWith gives the service account exactly the RBAC file at
// rbac, relative to the repository's root.
func newLeaseClusterWith(t *testing.T, rbac string) *leaseCluster {
	t.Helper()
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	sa := env.ServiceAccount(t, ns, "leader-elector", filepath.Join(root, rbac))
	return &leaseCluster{env: env, ns: ns, sa: sa}
}

// backend is how sidecars reach the cluster's Lease as the service account.
func (c *leaseCluster) backend(t *testing.T) backendArgs {
	t.Helper()
	kubeconfig := kubetest.WriteKubeconfig(t, c.sa)
	return func(extra ...string) []string {
		return append([]string{"--backend", "kubernetes", "--election", leaseElection, "--ttl", ttlFlag,
			"--kubeconfig", kubeconfig, "--lease-namespace", c.ns}, extra...)
	}
}

// sidecar runs a sidecar with --backend kubernetes as the service account,
// reaching the API server at host (empty: directly).
func (c *leaseCluster) sidecar(t *testing.T, id, host string) *sidecartest.Process {
	t.Helper()
	cfg := rest.CopyConfig(c.sa)
	if host != "" {
		cfg.Host = "https://" + host
	}
	return sidecartest.Start(t, bin, sidecartest.Options{ID: id, Args: []string{
		"--backend", "kubernetes", "--election", leaseElection, "--ttl", ttlFlag,
		"--kubeconfig", kubetest.WriteKubeconfig(t, cfg),
	}, Env: []string{"POD_NAMESPACE=" + c.ns}})
}

func (c *leaseCluster) holder(t *testing.T) (string, int32) {
	t.Helper()
	l, err := c.env.Client.CoordinationV1().Leases(c.ns).Get(t.Context(), leaseElection, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *l.Spec.HolderIdentity, *l.Spec.LeaseTransitions
}

// TestLeaseRBACIsMinimal checks manifests/rbac-lease.yaml on the real API
// server: everything the backend does is allowed, and RBAC denies what it
// can express: other Leases, unselected lists and watches, deletes,
// patches, secrets.
func TestLeaseRBACIsMinimal(t *testing.T) {
	c := newLeaseCluster(t)
	ctx := t.Context()
	sa, err := kubernetes.NewForConfig(c.sa)
	if err != nil {
		t.Fatal(err)
	}
	leases := sa.CoordinationV1().Leases(c.ns)
	mine := fields.OneTermEqualSelector("metadata.name", leaseElection).String()
	holder := "x"

	// Allowed: what the backend does.
	created, err := leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: leaseElection},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create the election's Lease: %v", err)
	}
	if _, err := leases.Get(ctx, leaseElection, metav1.GetOptions{}); err != nil {
		t.Errorf("get the election's Lease: %v", err)
	}
	if _, err := leases.Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Errorf("update the election's Lease: %v", err)
	}
	if _, err := leases.List(ctx, metav1.ListOptions{FieldSelector: mine}); err != nil {
		t.Errorf("list the election's Lease by name: %v", err)
	}
	w, err := leases.Watch(ctx, metav1.ListOptions{FieldSelector: mine})
	if err != nil {
		t.Errorf("watch the election's Lease by name: %v", err)
	} else {
		w.Stop()
	}

	// Denied.
	other, err := c.env.Client.CoordinationV1().Leases(c.ns).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "someone-elses"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherNS := c.env.Namespace(t)
	denied := map[string]func() error{
		"get another Lease": func() error {
			_, err := leases.Get(ctx, other.Name, metav1.GetOptions{})
			return err
		},
		"update another Lease": func() error {
			_, err := leases.Update(ctx, other, metav1.UpdateOptions{})
			return err
		},
		"list every Lease": func() error {
			_, err := leases.List(ctx, metav1.ListOptions{})
			return err
		},
		"watch every Lease": func() error {
			w, err := leases.Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		},
		"delete the election's Lease": func() error {
			return leases.Delete(ctx, leaseElection, metav1.DeleteOptions{})
		},
		"patch the election's Lease": func() error {
			_, err := leases.Patch(ctx, leaseElection, types.MergePatchType, []byte(`{"spec":{"holderIdentity":"y"}}`), metav1.PatchOptions{})
			return err
		},
		"get the Lease in another namespace": func() error {
			_, err := sa.CoordinationV1().Leases(otherNS).Get(ctx, leaseElection, metav1.GetOptions{})
			return err
		},
		"list secrets": func() error {
			_, err := sa.CoreV1().Secrets(c.ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"get a secret": func() error {
			_, err := sa.CoreV1().Secrets(c.ns).Get(ctx, "any", metav1.GetOptions{})
			return err
		},
	}
	for what, call := range denied {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want Forbidden", what, err)
		}
	}
}

// TestLeaseSidecars runs three sidecars on one Lease with the shipped RBAC:
// one leader that every sidecar and the Lease record name, a graceful
// handover faster than the TTL, a crash failover, increasing tokens and no
// overlap in the histories.
func TestLeaseSidecars(t *testing.T) {
	c := newLeaseCluster(t)
	ps := []*sidecartest.Process{c.sidecar(t, "a", ""), c.sidecar(t, "b", ""), c.sidecar(t, "c", "")}
	leader, first := agree(t, ps)
	if first.Backend != "kubernetes" || first.Caveats == "" || first.FencingToken < 1 {
		t.Errorf("leader status %+v", first)
	}
	if h, tr := c.holder(t); h != leader.ID || int64(tr) != first.FencingToken {
		t.Errorf("the Lease names %s with transitions %d; the sidecars say %s with token %d", h, tr, leader.ID, first.FencingToken)
	}

	start := time.Now()
	leader.Signal(syscall.SIGTERM)
	next, st := successor(t, ps, leader)
	took := time.Since(start)
	if code := leader.Wait(generous); code != 0 {
		t.Errorf("SIGTERM exit code %d, want 0", code)
	}
	if took >= ttl {
		t.Errorf("graceful handover took %v; a release is taken over by watch, well under the %v TTL", took, ttl)
	}
	if st.FencingToken <= first.FencingToken {
		t.Errorf("token %d after handover, want more than %d", st.FencingToken, first.FencingToken)
	}
	t.Logf("graceful handover: %v", took)

	live := without(ps, leader)
	start = time.Now()
	next.Signal(syscall.SIGKILL)
	next.Wait(generous)
	_, third := agree(t, without(live, next))
	t.Logf("crash failover: %v (TTL %v)", time.Since(start), ttl)
	// No lower bound: the crashed leader's last renewal came up to a third
	// of the TTL before the kill, and the takeover counts from that.
	if took := time.Since(start); took > ttl+generous {
		t.Errorf("crash failover took %v", took)
	}
	if third.FencingToken <= st.FencingToken {
		t.Errorf("token %d after failover, want more than %d", third.FencingToken, st.FencingToken)
	}
	assertNoOverlap(t, ps)
}

// TestLeaseBlackholedLeaderStepsDown cuts the leader off from the API
// server: it steps down at its own deadline, before a follower can take
// the Lease, and rejoins as a follower when the network heals.
func TestLeaseBlackholedLeaderStepsDown(t *testing.T) {
	c := newLeaseCluster(t)
	u, err := url.Parse(c.sa.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := tcpproxy.Start(t, u.Host)
	a := c.sidecar(t, "a", proxy.Addr())
	first := a.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	ps := []*sidecartest.Process{a, c.sidecar(t, "b", ""), c.sidecar(t, "c", "")}
	agree(t, ps)

	proxy.Blackhole()
	cut := time.Now()
	a.WaitStatus("stepping down", generous, func(s sidecartest.Status) bool { return !s.IsLeader })
	steppedDown := time.Since(cut)
	next, st := agree(t, ps[1:])
	if st.FencingToken <= first.FencingToken {
		t.Errorf("successor token %d, want more than %d", st.FencingToken, first.FencingToken)
	}
	if steppedDown >= ttl {
		t.Errorf("the cut-off leader stepped down %v after the cut, not within its %v TTL", steppedDown, ttl)
	}
	assertNoOverlap(t, ps)

	proxy.Pass()
	a.WaitStatus("rejoining as a follower", generous, func(s sidecartest.Status) bool {
		return !s.IsLeader && s.Ready && s.Name == next.ID
	})
	t.Logf("stepped down %v after the cut; %s took over", steppedDown, next.ID)
}
