package cli

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/leader-elector/leader-elector/internal/freeport"
	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
)

// TestGenerationAuto runs --generation=auto against a real API server, as a
// service account with the shipped RBAC (manifests/rbac.yaml) or without
// the apps reads: a Deployment's pod gets its ReplicaSet's revision, a bare
// pod runs with generations off and says so, and a denied read stops the
// sidecar (exit 1) with an error naming the flag before the backend is
// contacted.
func TestGenerationAuto(t *testing.T) {
	kenv := kubetest.Start(t)
	ns := kenv.Namespace(t)
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	shipped := kubetest.WriteKubeconfig(t, kenv.ServiceAccount(t, ns, "leader-elector", filepath.Join(root, "manifests", "rbac.yaml")))
	podsOnly := kubetest.WriteKubeconfig(t, kenv.ServiceAccount(t, ns, "pods-only", filepath.Join(root, "pkg", "kube", "testdata", "rbac-pods-only.yaml")))

	// What the Deployment controller would create (envtest runs none).
	ctx := t.Context()
	labels := map[string]string{"app": "web"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}
	sel := &metav1.LabelSelector{MatchLabels: labels}
	dep, err := kenv.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := kenv.Client.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-5",
		Annotations:     map[string]string{"deployment.kubernetes.io/revision": "5"},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dep, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
		Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, owner := range map[string][]metav1.OwnerReference{
		"web-5-a": {*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))},
		"bare":    nil,
	} {
		if _, err := kenv.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: owner},
			Spec: tmpl.Spec}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	args := func(kubeconfig, pod string) []string {
		return []string{"--election=e", "--etcd-endpoints=127.0.0.1:2379", "--http=", "--generation=auto",
			"--kubeconfig=" + kubeconfig, "--pod-name=" + pod, "--pod-namespace=" + ns}
	}

	for _, tc := range []struct {
		pod  string
		want int64
		log  string
	}{
		{"web-5-a", 5, "ReplicaSet web-5 annotation deployment.kubernetes.io/revision"},
		{"bare", 0, "generations are off: no rolling update replaces this pod"},
	} {
		t.Run(tc.pod, func(t *testing.T) {
			cfg, err := parseConfig(args(shipped, tc.pod), env(nil))
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			got, err := resolveGeneration(t.Context(), cfg, nil, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("generation %d, want %d", got, tc.want)
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("log %q does not say %q", logs.String(), tc.log)
			}
		})
	}

	// A sidecar restarted in the same pod takes the generation its
	// predecessor recorded, even with the API server gone; a record of
	// another pod is not taken.
	t.Run("restart reuses the recorded generation", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "incarnation")
		log := slog.New(slog.DiscardHandler)
		start := func(kubeconfig, podUID string) (*config, *incarnationLog) {
			t.Helper()
			cfg, err := parseConfig(append(args(kubeconfig, "web-5-a"), "--incarnation-file="+file), env(map[string]string{"POD_UID": podUID}))
			if err != nil {
				t.Fatal(err)
			}
			b, err := newBackend(cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			inc, err := openIncarnation(cfg, b, log)
			if err != nil {
				t.Fatal(err)
			}
			return cfg, inc
		}
		cfg, first := start(shipped, "uid-1")
		gen, err := resolveGeneration(t.Context(), cfg, first, log)
		if err != nil || gen != 5 {
			t.Fatalf("first process: generation %d, %v; want 5", gen, err)
		}
		first.me.Generation = gen
		first.record("lease-1")
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}

		ports, err := freeport.Ports(1)
		if err != nil {
			t.Fatal(err)
		}
		gone := kubetest.WriteKubeconfig(t, &rest.Config{Host: "http://127.0.0.1:" + strconv.Itoa(ports[0]), BearerToken: "x"})
		cfg, again := start(gone, "uid-1")
		var logs bytes.Buffer
		gen, err = resolveGeneration(t.Context(), cfg, again, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil || gen != 5 {
			t.Errorf("restarted process: generation %d, %v; want 5 from the incarnation file", gen, err)
		}
		if !strings.Contains(logs.String(), "previous sidecar process") {
			t.Errorf("log %q does not say where the generation came from", logs.String())
		}
		if err := again.Close(); err != nil {
			t.Fatal(err)
		}

		cfg, other := start(gone, "uid-2")
		defer other.Close()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if gen, err := resolveGeneration(ctx, cfg, other, log); err == nil {
			t.Errorf("another pod's record gave generation %d without the API server", gen)
		}
	})

	t.Run("denied", func(t *testing.T) {
		addr, contacts := countingListener(t)
		a := append(args(podsOnly, "web-5-a"), "--etcd-endpoints="+addr)
		var stdout, stderr bytes.Buffer
		code := Run(t.Context(), a, env(nil), &stdout, &stderr)
		if code != exitError {
			t.Errorf("exit code %d, want %d", code, exitError)
		}
		for _, want := range []string{"--generation=auto: reading ReplicaSet web-5 of pod web-5-a", "forbidden", "get on pods, and on replicasets and controllerrevisions"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
			}
		}
		if n := contacts.Load(); n != 0 {
			t.Errorf("the backend was contacted %d times before the generation was known", n)
		}
	})
}
