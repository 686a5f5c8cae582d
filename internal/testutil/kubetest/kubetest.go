// Package kubetest starts a real Kubernetes control plane (kube-apiserver and
// etcd from the repository's bin folder, via controller-runtime's envtest)
// for tests, and gives them identities bound to the RBAC the project ships.
//
// There is no kubelet: pods never run, but labels, status conditions, RBAC,
// events and watches behave as in a cluster. Run `make test-deps` first.
package kubetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/leader-elector/leader-elector/internal/testutil/repo"
)

// Env is a running control plane.
type Env struct {
	// Config authenticates as a cluster admin.
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface
}

// Start starts a control plane and stops it when the test ends. It fails the
// test if the binaries are missing.
func Start(t testing.TB) *Env {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	assets := filepath.Join(root, "bin")
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			t.Fatalf("kubetest: %s is missing; run `make test-deps`: %v", bin, err)
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		// Two shared cores can make a cold start slow.
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		// A half-started control plane still has processes to stop.
		_ = env.Stop()
		t.Fatalf("kubetest: starting control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("kubetest: stopping control plane: %v", err)
		}
	})
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return &Env{Config: cfg, Client: client}
}

// RepoRoot is the folder holding go.mod.
func RepoRoot() (string, error) { return repo.Root() }

// Eventually polls cond every 20 ms until it returns true, failing the test
// with msg if it has not within timeout. cond must not call t.Fatal.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func(ctx context.Context) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond(ctx) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s: %s", timeout, msg)
		case <-tick.C:
		}
	}
}
