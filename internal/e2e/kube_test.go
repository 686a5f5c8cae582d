package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
)

const (
	roleLabel     = "leader-elector.io/role"
	electionLabel = "leader-elector.io/election"
	gate          = "leader-elector.io/leader"
)

// cluster is a control plane with a namespace whose service account has
// exactly the project's RBAC manifest, and an etcd for the election.
type cluster struct {
	env        *kubetest.Env
	ns         string
	kubeconfig string // authenticates as the service account
	etcd       []string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	sa := env.ServiceAccount(t, ns, "leader-elector", filepath.Join(root, "manifests", "rbac.yaml"))
	return &cluster{env: env, ns: ns, kubeconfig: kubetest.WriteKubeconfig(t, sa), etcd: etcdtest.Single(t).ClientURLs()}
}

// pod creates a pod with the readiness gate; without a kubelet it never runs.
func (c *cluster) pod(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	_, err := c.env.Client.CoreV1().Pods(c.ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "app", Image: "example.invalid/app"}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gate}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// sidecar runs a sidecar as the pod named id.
func (c *cluster) sidecar(t *testing.T, id string, etcd []string, kubeconfig string) *sidecartest.Process {
	t.Helper()
	return sidecartest.Start(t, bin, sidecartest.Options{ID: id, Args: etcdArgs(etcd,
		"--kubeconfig", kubeconfig, "--readiness-gate", gate, "--kube-resync", "2s"),
		Env: []string{"POD_NAME=" + id, "POD_NAMESPACE=" + c.ns}})
}

func (c *cluster) getPod(ctx context.Context, name string) (*corev1.Pod, error) {
	return c.env.Client.CoreV1().Pods(c.ns).Get(ctx, name, metav1.GetOptions{})
}

func gateStatus(p *corev1.Pod) corev1.ConditionStatus {
	for _, cond := range p.Status.Conditions {
		if cond.Type == gate {
			return cond.Status
		}
	}
	return ""
}

// waitPod waits until the pod satisfies ok.
func (c *cluster) waitPod(t *testing.T, name, what string, ok func(*corev1.Pod) bool) {
	t.Helper()
	kubetest.Eventually(t, generous, name+": "+what, func(ctx context.Context) bool {
		p, err := c.getPod(ctx, name)
		return err == nil && ok(p)
	})
}

func role(want string) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool { return p.Labels[roleLabel] == want }
}

func TestKubeLabelsGateAndEventsFollowLeadership(t *testing.T) {
	c := newCluster(t)
	ids := []string{"web-0", "web-1", "web-2"}
	for _, id := range ids {
		c.pod(t, id, nil)
	}
	// Watch every pod change to check the invariant at each step.
	w, err := c.env.Client.CoreV1().Pods(c.ns).Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	labelled := make(chan map[string]string, 1024) // pod → role, after each event
	go func() {
		roles := map[string]string{}
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted {
				roles[p.Name] = p.Labels[roleLabel]
				snapshot := make(map[string]string, len(roles))
				for k, v := range roles {
					snapshot[k] = v
				}
				labelled <- snapshot
			}
		}
		close(labelled)
	}()

	var ps []*sidecartest.Process
	for _, id := range ids {
		ps = append(ps, c.sidecar(t, id, c.etcd, c.kubeconfig))
	}
	leader, st := agree(t, ps)
	c.waitPod(t, leader.ID, "leader label and gate True", func(p *corev1.Pod) bool {
		return p.Labels[roleLabel] == "leader" && p.Labels[electionLabel] == "e2e" && gateStatus(p) == corev1.ConditionTrue
	})
	for _, p := range ps {
		if p != leader {
			c.waitPod(t, p.ID, "follower label and gate False", func(p *corev1.Pod) bool {
				return p.Labels[roleLabel] == "follower" && p.Labels[electionLabel] == "e2e" && gateStatus(p) == corev1.ConditionFalse
			})
		}
	}
	kubetest.Eventually(t, generous, "a BecameLeader event with the token", func(ctx context.Context) bool {
		evs, err := c.env.Client.CoreV1().Events(c.ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + leader.ID})
		if err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.Reason == "BecameLeader" && strings.Contains(e.Message, fmt.Sprint(st.FencingToken)) {
				return true
			}
		}
		return false
	})

	// Handover: the label moves with leadership.
	leader.Signal(syscall.SIGTERM)
	next, _ := successor(t, ps, leader)
	c.waitPod(t, next.ID, "leader label after handover", role("leader"))
	c.waitPod(t, leader.ID, "follower label after stepping down", role("follower"))
	// The watch may deliver the label a moment after the poll above saw
	// it: read snapshots until the new leader's label shows, then check.
	deadline := time.NewTimer(generous)
	defer deadline.Stop()
	for {
		var snapshot map[string]string
		select {
		case snapshot = <-labelled:
		case <-deadline.C:
			t.Fatal("the pod watch never showed the new leader's label")
		}
		if snapshot[next.ID] != "leader" {
			continue
		}
		// The new leader has published: no other pod may still say leader.
		for pod, r := range snapshot {
			if pod != next.ID && r == "leader" {
				t.Errorf("after %s published, %s still carried the leader label", next.ID, pod)
			}
		}
		return
	}
}

func TestKubeStaleLabelDemotedAndHandEditsReconciled(t *testing.T) {
	c := newCluster(t)
	// A crashed leader of the same election left its label behind.
	c.pod(t, "old", map[string]string{roleLabel: "leader", electionLabel: "e2e"})
	c.pod(t, "web-0", nil)
	a := c.sidecar(t, "web-0", c.etcd, c.kubeconfig)
	a.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	c.waitPod(t, "web-0", "leader label", role("leader"))
	c.waitPod(t, "old", "demotion of the stale leader label", role("follower"))

	// A hand edit is put back.
	_, err := c.env.Client.CoreV1().Pods(c.ns).Patch(t.Context(), "web-0", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+roleLabel+`":"follower"}}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.waitPod(t, "web-0", "the hand-edited label put back", role("leader"))
}

// With both the API server and etcd cut off, the HTTP status still flips at
// the validity deadline: publishing never delays stepping down.
func TestKubeAPIDownDoesNotDelayStepDown(t *testing.T) {
	c := newCluster(t)
	c.pod(t, "web-0", nil)
	apiProxy := c.env.Proxy(t)
	saCfg := c.env.ServiceAccount(t, c.ns, "cut-off", "")
	// Same RBAC as the real account: bind the project's Role to it too.
	bindRole(t, c.env.Client, c.ns, "cut-off")
	kubeconfig := kubetest.WriteKubeconfig(t, apiProxy.Config(saCfg))
	etcdProxy := tcpproxy.Start(t, strings.TrimPrefix(c.etcd[0], "http://"))
	a := c.sidecar(t, "web-0", []string{etcdProxy.Addr()}, kubeconfig)
	a.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	c.waitPod(t, "web-0", "leader label", role("leader"))

	apiProxy.Blackhole()
	etcdProxy.Blackhole()
	cut := time.Now()
	a.WaitStatus("stepping down", generous, func(s sidecartest.Status) bool { return !s.IsLeader })
	if took := time.Since(cut); took >= ttl {
		t.Errorf("stepped down %v after the cut, not within the %v TTL", took, ttl)
	}
	// The label is stale while the API server is unreachable, and fixed when it returns.
	apiProxy.Up()
	etcdProxy.Pass()
	a.WaitStatus("leading again", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	c.waitPod(t, "web-0", "leader label after recovery", role("leader"))
}

// bindRole binds the Role from manifests/rbac.yaml (already applied in ns)
// to another service account.
func bindRole(t *testing.T, client kubernetes.Interface, ns, sa string) {
	t.Helper()
	roles, err := client.RbacV1().Roles(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil || len(roles.Items) != 1 {
		t.Fatalf("want the one Role from manifests/rbac.yaml in %s: %v", ns, err)
	}
	rb := roleBinding(ns, sa, roles.Items[0].Name)
	if _, err := client.RbacV1().RoleBindings(ns).Create(t.Context(), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func roleBinding(ns, sa, role string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
	}
}
