package kubetest_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog starts its flush daemon when imported and never stops it.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

func TestControlPlaneAndServiceAccount(t *testing.T) {
	env := kubetest.Start(t)
	ctx := t.Context()

	v, err := env.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.37.2" {
		t.Errorf("server version: got %s, want v1.37.2", v.GitVersion)
	}

	ns := env.Namespace(t)
	other := env.Namespace(t)
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cfg := env.ServiceAccount(t, ns, "leader-elector", filepath.Join(root, "manifests", "rbac.yaml"))

	// Load the identity back from a kubeconfig file, the way a binary would.
	loaded, err := clientcmd.BuildConfigFromFlags("", kubetest.WriteKubeconfig(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(loaded)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{ns, other} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}
		if _, err := env.Client.CoreV1().Pods(n).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	patch := []byte(`{"metadata":{"labels":{"x":"y"}}}`)
	if _, err := sa.CoreV1().Pods(ns).Patch(ctx, "p", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Errorf("patching a pod in its own namespace: %v", err)
	}
	_, err = sa.CoreV1().Pods(other).Patch(ctx, "p", types.MergePatchType, patch, metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("patching a pod in another namespace: got %v, want forbidden", err)
	}
	_, err = sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("listing secrets: got %v, want forbidden", err)
	}
}

func TestProxyDownAndUp(t *testing.T) {
	env := kubetest.Start(t)
	proxy := env.Proxy(t)
	cfg := proxy.Config(env.Config)
	cfg.Timeout = 2 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	list := func(ctx context.Context) error {
		_, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		return err
	}
	if err := list(t.Context()); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	proxy.Down()
	if err := list(t.Context()); err == nil {
		t.Fatal("request succeeded while the proxy was down")
	}
	proxy.Blackhole()
	if err := list(t.Context()); err == nil {
		t.Fatal("request succeeded while the proxy was blackholed")
	}
	proxy.Up()
	kubetest.Eventually(t, 10*time.Second, "requests pass again after Up", func(ctx context.Context) bool {
		return list(ctx) == nil
	})
}
