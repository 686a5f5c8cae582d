package e2e

import (
	"fmt"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

// TestRolloutWithGenerationAuto is TestRolloutMovesLeadershipOnce's worst
// order (the leader stopped first, then each next in line: 3 changes
// without generations) with every sidecar on --generation=auto, as the
// chart runs it: the old pods belong to the Deployment's ReplicaSet of
// revision 1, the new ones to its ReplicaSet of revision 2 (made by hand:
// envtest runs no controllers), and each sidecar reads its own revision as
// the shipped RBAC allows. Leadership moves once.
func TestRolloutWithGenerationAuto(t *testing.T) {
	c := newCluster(t)
	ctx := t.Context()
	apps := c.env.Client.AppsV1()
	labels := map[string]string{"app": "web"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}}}}
	sel := &metav1.LabelSelector{MatchLabels: labels}
	dep, err := apps.Deployments(c.ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for rev, prefix := range map[int]string{1: "old", 2: "new"} {
		rs, err := apps.ReplicaSets(c.ns).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
			Name:            fmt.Sprintf("web-%d", rev),
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": strconv.Itoa(rev)},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dep, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		}, Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, i), Labels: labels,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
				Spec: tmpl.Spec}
			if _, err := c.env.Client.CoreV1().Pods(c.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	n := rolloutWith(t, [3]int{0, 1, 2}, func(id string, gen int) *sidecartest.Process {
		p := sidecartest.Start(t, bin, sidecartest.Options{ID: id,
			Args: etcdArgs(c.etcd, "--kubeconfig", c.kubeconfig, "--generation", "auto"),
			Env:  []string{"POD_NAME=" + id, "POD_NAMESPACE=" + c.ns}})
		p.WaitStatus(fmt.Sprintf("generation %d", gen), generous, func(s sidecartest.Status) bool { return s.Generation == int64(gen) })
		return p
	})
	if n != 1 {
		t.Errorf("%d leadership changes, want 1", n)
	}
}
