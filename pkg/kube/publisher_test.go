package kube_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/pkg/kube"
)

const (
	roleKey     = kube.DefaultRoleLabel
	electionKey = kube.DefaultElectionLabel
	gate        = "leader-elector.io/leader"
)

func TestLabelsFollowStatus(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	createPod(t, env.Client, ns, "a", nil)
	src := newSource("a")
	run := start(t, newPublisher(t, options(ns, "a"), env.Client, nil), src)

	waitLabel(t, env.Client, ns, "a", roleKey, "follower")
	waitLabel(t, env.Client, ns, "a", electionKey, election1)
	src.lead(7)
	waitLabel(t, env.Client, ns, "a", roleKey, "leader")
	src.follow("b", 8)
	waitLabel(t, env.Client, ns, "a", roleKey, "follower")
	src.lead(9)
	waitLabel(t, env.Client, ns, "a", roleKey, "leader")

	// Shutting down while leading hands the label back.
	run.stop()
	got, err := podLabel(t.Context(), env.Client, ns, "a", roleKey)
	if err != nil || got != "follower" {
		t.Errorf("after shutdown: got %q (%v), want follower", got, err)
	}
}

func TestCustomLabelValues(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	createPod(t, env.Client, ns, "a", map[string]string{"app": "x"})
	opts := options(ns, "a")
	opts.RoleLabel, opts.LeaderValue, opts.FollowerValue = "example.com/state", "primary", "replica"
	src := newSource("a")
	start(t, newPublisher(t, opts, env.Client, nil), src)

	waitLabel(t, env.Client, ns, "a", "example.com/state", "replica")
	src.lead(1)
	waitLabel(t, env.Client, ns, "a", "example.com/state", "primary")
	if got, _ := podLabel(t.Context(), env.Client, ns, "a", "app"); got != "x" {
		t.Errorf("unrelated label: got %q, want x", got)
	}
}

func TestHandoverMovesLabel(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	createPod(t, env.Client, ns, "a", nil)
	createPod(t, env.Client, ns, "b", nil)
	srcA, srcB := newSource("a"), newSource("b")
	start(t, newPublisher(t, options(ns, "a"), env.Client, nil), srcA)
	start(t, newPublisher(t, options(ns, "b"), env.Client, nil), srcB)

	srcA.lead(10)
	srcB.follow("a", 10)
	waitLabel(t, env.Client, ns, "a", roleKey, "leader")
	waitLabel(t, env.Client, ns, "b", roleKey, "follower")

	// a steps down (its deadline passed), then b wins the next term.
	srcA.follow("", 0)
	srcB.lead(11)
	srcA.follow("b", 11)
	waitLabel(t, env.Client, ns, "b", roleKey, "leader")
	waitLabel(t, env.Client, ns, "a", roleKey, "follower")
	assertOneLeader(t, env.Client, ns, "b")
}

func TestDemotesStaleLeader(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	// A leader that was cut off and never took its label off.
	createPod(t, env.Client, ns, "stale", map[string]string{electionKey: election1, roleKey: "leader"})
	// A leader of another election: not ours to touch.
	createPod(t, env.Client, ns, "elsewhere", map[string]string{electionKey: "billing", roleKey: "leader"})
	createPod(t, env.Client, ns, "a", nil)
	src := newSource("a")
	start(t, newPublisher(t, options(ns, "a"), env.Client, nil), src)
	waitLabel(t, env.Client, ns, "a", roleKey, "follower")

	// A follower leaves peers alone.
	if got, _ := podLabel(t.Context(), env.Client, ns, "stale", roleKey); got != "leader" {
		t.Fatalf("a follower changed a peer's label to %q", got)
	}

	src.lead(3)
	waitLabel(t, env.Client, ns, "a", roleKey, "leader")
	// The demotion happens before a labels itself, so it is visible now.
	if got, _ := podLabel(t.Context(), env.Client, ns, "stale", roleKey); got != "follower" {
		t.Errorf("stale leader: got %q, want follower", got)
	}
	if got, _ := podLabel(t.Context(), env.Client, ns, "elsewhere", roleKey); got != "leader" {
		t.Errorf("leader of another election: got %q, want leader", got)
	}
	assertOneLeader(t, env.Client, ns, "a")
}

// A leader that was frozen (or cut off) cannot take its own gate condition
// off; before the new leader sets its gate True it sets False on every peer
// of the election that still says True, whatever the peer's label says
// (labels may already have been demoted by an earlier leader).
func TestDemotesStaleReadinessGate(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	frozen := createPod(t, env.Client, ns, "frozen", map[string]string{electionKey: election1, roleKey: "leader"}, gate)
	demoted := createPod(t, env.Client, ns, "demoted", map[string]string{electionKey: election1, roleKey: "follower"}, gate)
	elsewhere := createPod(t, env.Client, ns, "elsewhere", map[string]string{electionKey: "billing", roleKey: "leader"}, gate)
	for _, p := range []*corev1.Pod{frozen, demoted, elsewhere} {
		setCondition(t, env.Client, ns, p.Name, gate, corev1.ConditionTrue)
	}
	createPod(t, env.Client, ns, "a", nil, gate)
	opts := options(ns, "a")
	opts.ReadinessGate = gate
	src := newSource("a")
	start(t, newPublisher(t, opts, env.Client, nil), src)
	waitCondition(t, env.Client, ns, "a", gate, corev1.ConditionFalse)

	// A follower leaves peers alone.
	for _, name := range []string{"frozen", "demoted"} {
		if got := condition(t.Context(), env.Client, ns, name, gate); got != corev1.ConditionTrue {
			t.Fatalf("a follower changed %s's condition to %q", name, got)
		}
	}

	src.lead(7)
	waitCondition(t, env.Client, ns, "a", gate, corev1.ConditionTrue)
	// The demotion happens before a sets its own gate, so it is visible now.
	for _, name := range []string{"frozen", "demoted"} {
		if got := condition(t.Context(), env.Client, ns, name, gate); got != corev1.ConditionFalse {
			t.Errorf("stale peer %s: condition %q, want False", name, got)
		}
	}
	if got := condition(t.Context(), env.Client, ns, "elsewhere", gate); got != corev1.ConditionTrue {
		t.Errorf("pod of another election: condition %q, want True", got)
	}
	if got, _ := podLabel(t.Context(), env.Client, ns, "frozen", roleKey); got != "follower" {
		t.Errorf("frozen leader's label: got %q, want follower", got)
	}
}

func TestPutsBackHandEditedLabel(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	createPod(t, env.Client, ns, "a", nil)
	opts := options(ns, "a")
	opts.Resync = time.Hour // only the watch can notice the edit
	src := newSource("a")
	start(t, newPublisher(t, opts, env.Client, nil), src)
	src.lead(5)
	waitLabel(t, env.Client, ns, "a", roleKey, "leader")

	patch := []byte(`{"metadata":{"labels":{"` + roleKey + `":"follower"}}}`)
	if _, err := env.Client.CoreV1().Pods(ns).Patch(t.Context(), "a", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLabel(t, env.Client, ns, "a", roleKey, "leader")

	patch = []byte(`{"metadata":{"labels":{"` + roleKey + `":null}}}`)
	if _, err := env.Client.CoreV1().Pods(ns).Patch(t.Context(), "a", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLabel(t, env.Client, ns, "a", roleKey, "leader")
}

func TestReadinessGate(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	createPod(t, env.Client, ns, "a", nil, gate)
	opts := options(ns, "a")
	opts.ReadinessGate = gate
	src := newSource("a")
	run := start(t, newPublisher(t, opts, env.Client, nil), src)

	waitCondition(t, env.Client, ns, "a", gate, corev1.ConditionFalse)
	src.lead(1)
	waitCondition(t, env.Client, ns, "a", gate, corev1.ConditionTrue)
	waitLabel(t, env.Client, ns, "a", roleKey, "leader")
	src.follow("", 0)
	waitCondition(t, env.Client, ns, "a", gate, corev1.ConditionFalse)
	src.lead(2)
	waitCondition(t, env.Client, ns, "a", gate, corev1.ConditionTrue)

	run.stop()
	if got := condition(t.Context(), env.Client, ns, "a", gate); got != corev1.ConditionFalse {
		t.Errorf("after shutdown: condition %s, want False", got)
	}
}

func TestEventsCarryToken(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	pod := createPod(t, env.Client, ns, "a", nil)
	src := newSource("a")
	run := start(t, newPublisher(t, options(ns, "a"), env.Client, nil), src)
	waitLabel(t, env.Client, ns, "a", roleKey, "follower")

	src.lead(41)
	waitEvent(t, env.Client, pod, kube.ReasonBecameLeader, "fencing token 41")
	src.follow("b", 42)
	waitEvent(t, env.Client, pod, kube.ReasonSteppedDown, "fencing token 41")
	src.lead(43)
	waitEvent(t, env.Client, pod, kube.ReasonBecameLeader, "fencing token 43")

	// Shutdown waits for its SteppedDown event.
	run.stop()
	if !hasEvent(t.Context(), env.Client, pod, kube.ReasonSteppedDown, "fencing token 43") {
		t.Error("no SteppedDown event for token 43 after shutdown")
	}
}

func TestEventsOff(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	pod := createPod(t, env.Client, ns, "a", nil)
	opts := options(ns, "a")
	opts.Events = false
	src := newSource("a")
	run := start(t, newPublisher(t, opts, env.Client, nil), src)
	src.lead(1)
	waitLabel(t, env.Client, ns, "a", roleKey, "leader")
	run.stop()
	list, err := env.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range list.Items {
		if ev.InvolvedObject.UID == pod.UID {
			t.Errorf("event recorded with --kube-events=false: %s %s", ev.Reason, ev.Message)
		}
	}
}

// TestAPIServerAway cuts the publisher off from the API server in the middle
// of a term: status keeps being consumed, and once the server is back the
// labels catch up with the latest status.
func TestAPIServerAway(t *testing.T) {
	for _, mode := range []string{"down", "blackhole"} {
		t.Run(mode, func(t *testing.T) {
			env := kubetest.Start(t)
			ns := env.Namespace(t)
			createPod(t, env.Client, ns, "a", nil, gate)
			proxy := env.Proxy(t)
			client, err := kubernetes.NewForConfig(proxy.Config(env.Config))
			if err != nil {
				t.Fatal(err)
			}
			opts := options(ns, "a")
			opts.ReadinessGate = gate
			m := &metrics{}
			p := newPublisher(t, opts, client, m)
			// A request timeout far above the waits below: only abandoning a
			// hung request when the status changes keeps up with the status.
			kube.SetTiming(p, 8*time.Second, 2*time.Second, time.Second)
			src := newSource("a")
			run := start(t, p, src)
			src.lead(1)
			waitLabel(t, env.Client, ns, "a", roleKey, "leader")

			if mode == "down" {
				proxy.Down()
			} else {
				proxy.Blackhole()
			}
			// Every new status is read promptly although no request can
			// succeed.
			for i := range 5 {
				var v int
				if i%2 == 0 {
					v = src.follow("b", int64(2+i))
				} else {
					v = src.lead(int64(2 + i))
				}
				kubetest.Eventually(t, 4*time.Second, "status consumed while the API server is away", func(context.Context) bool {
					return src.seen(v)
				})
			}
			kubetest.Eventually(t, 30*time.Second, "failures counted", func(context.Context) bool {
				return m.errors.Load() > 0
			})
			// The last status says follower, but the server still has leader.
			src.follow("b", 10)
			if got, _ := podLabel(t.Context(), env.Client, ns, "a", roleKey); got != "leader" {
				t.Fatalf("label changed while the API server was away: %q", got)
			}

			proxy.Up()
			waitLabel(t, env.Client, ns, "a", roleKey, "follower")
			waitCondition(t, env.Client, ns, "a", gate, corev1.ConditionFalse)

			// And it keeps following the status afterwards.
			src.lead(11)
			waitLabel(t, env.Client, ns, "a", roleKey, "leader")
			waitCondition(t, env.Client, ns, "a", gate, corev1.ConditionTrue)

			// Shutdown while the server is away is bounded too.
			if mode == "down" {
				proxy.Down()
			} else {
				proxy.Blackhole()
			}
			begin := time.Now()
			run.stop()
			if d := time.Since(begin); d > 15*time.Second {
				t.Errorf("shutdown took %s with the API server away", d)
			}
		})
	}
}

// TestRBAC runs the publisher as the leader-elector service account bound to
// manifests/rbac.yaml, with every feature on.
func TestRBAC(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	other := env.Namespace(t)
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cfg := env.ServiceAccount(t, ns, "leader-elector", filepath.Join(root, "manifests", "rbac.yaml"))
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	pod := createPod(t, env.Client, ns, "a", nil, gate)
	createPod(t, env.Client, ns, "stale", map[string]string{electionKey: election1, roleKey: "leader"})
	createPod(t, env.Client, other, "a", nil)
	opts := options(ns, "a")
	opts.ReadinessGate = gate
	m := &metrics{}
	src := newSource("a")
	run := start(t, newPublisher(t, opts, client, m), src)

	waitLabel(t, env.Client, ns, "a", roleKey, "follower")
	src.lead(12)
	waitLabel(t, env.Client, ns, "a", roleKey, "leader")
	waitCondition(t, env.Client, ns, "a", gate, corev1.ConditionTrue)
	waitEvent(t, env.Client, pod, kube.ReasonBecameLeader, "fencing token 12")
	assertOneLeader(t, env.Client, ns, "a")
	run.stop()
	waitEvent(t, env.Client, pod, kube.ReasonSteppedDown, "fencing token 12")
	if n := m.errors.Load(); n != 0 {
		t.Errorf("%d publishing errors with the shipped RBAC", n)
	}

	// The identity is no use beyond its own namespace's pods and events.
	patch := []byte(`{"metadata":{"labels":{"` + roleKey + `":"leader"}}}`)
	_, err = client.CoreV1().Pods(other).Patch(t.Context(), "a", types.MergePatchType, patch, metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("patching a pod in another namespace: got %v, want forbidden", err)
	}
	_, err = client.CoreV1().Secrets(ns).Get(t.Context(), "any", metav1.GetOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("reading a secret: got %v, want forbidden", err)
	}
	err = client.CoreV1().Pods(ns).Delete(t.Context(), "stale", metav1.DeleteOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("deleting a pod: got %v, want forbidden", err)
	}
}

func assertOneLeader(t *testing.T, client kubernetes.Interface, ns, want string) {
	t.Helper()
	list, err := client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{
		LabelSelector: electionKey + "=" + election1 + "," + roleKey + "=leader",
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Name)
	}
	if len(names) != 1 || names[0] != want {
		t.Errorf("pods labelled leader: %v, want only %s", names, want)
	}
}

func hasEvent(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, reason, text string) bool {
	list, err := client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": pod.Name, "reason": reason}.String(),
	})
	if err != nil {
		return false
	}
	for _, ev := range list.Items {
		if ev.InvolvedObject.UID == pod.UID && ev.InvolvedObject.Kind == "Pod" && strings.Contains(ev.Message, text) {
			return true
		}
	}
	return false
}

func waitEvent(t *testing.T, client kubernetes.Interface, pod *corev1.Pod, reason, text string) {
	t.Helper()
	kubetest.Eventually(t, 20*time.Second, "event "+reason+" with "+text, func(ctx context.Context) bool {
		return hasEvent(ctx, client, pod, reason, text)
	})
}
