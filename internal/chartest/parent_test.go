package chartest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// copyDir copies a directory tree of regular files.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestParentChartIncludesTheSidecar renders a parent chart (testdata/parent)
// that carries this chart as a subchart and builds its own Deployment from
// the named templates, as docs/install.md describes.
func TestParentChartIncludesTheSidecar(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "parent")
	copyDir(t, filepath.Join("testdata", "parent"), dir)
	copyDir(t, chartDir(t), filepath.Join(dir, "charts", "leader-elector"))

	out, err := helm(t, "template", "shop", dir)
	if err != nil {
		t.Fatal(err)
	}
	objs := splitDocs(t, out)
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind()+"/"+o.GetName())
	}
	for _, want := range []string{"ServiceAccount/shop-leader-elector", "Role/shop-leader-elector", "RoleBinding/shop-leader-elector", "Deployment/shop-app"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("rendered %v, missing %s", kinds, want)
		}
	}
	pods := podSpecs(t, objs)
	pod := pods["Deployment/shop-app"]
	if pod == nil {
		t.Fatal("no parent Deployment")
	}
	side, native := sidecarContainer(t, pod)
	if !native || !slices.Contains(side.Args, "--readiness-gate=leader-elector.io/leader") || !slices.Contains(side.Args, "--etcd-endpoints=http://etcd:2379") {
		t.Errorf("sidecar: native=%v args=%v", native, side.Args)
	}
	if side.Image != "ghcr.io/leader-elector/leader-elector:v0.1.0" {
		t.Errorf("image %q", side.Image)
	}
	checkTokenOnlyInSidecar(t, pod)
	if pod.Spec.ServiceAccountName != "shop-leader-elector" || len(pod.Spec.ReadinessGates) != 1 {
		t.Errorf("service account %q, gates %v", pod.Spec.ServiceAccountName, pod.Spec.ReadinessGates)
	}
	if len(find(objs, "Service")) != 0 {
		t.Error("the subchart rendered its example although the parent did not enable it")
	}

	// The subchart's checks apply to the parent's render too.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("leader-elector:\n  etcd:\n    endpoints: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := helm(t, "template", "shop", dir, "-f", bad); err == nil || !strings.Contains(err.Error(), "etcd.endpoints") {
		t.Errorf("want the endpoints check to fail the parent's render, got %v", err)
	}

	// Helm does not check a subchart's kubeVersion: the container template
	// refuses a native sidecar on a cluster without them.
	if _, err := helm(t, "template", "shop", dir, "--kube-version", "1.28.9"); err == nil || !strings.Contains(err.Error(), "sidecar.native needs Kubernetes 1.29") {
		t.Errorf("want the native-sidecar check to fail on 1.28, got %v", err)
	}
	if _, err := helm(t, "template", "shop", dir, "--kube-version", "1.28.9", "--set", "leader-elector.sidecar.native=false"); err != nil {
		t.Errorf("classic sidecar on 1.28: %v", err)
	}

	// A parent that passes no version gets a clear error, not "image: repo:".
	if _, err := helm(t, "template", "shop", dir, "--set", "leaderElectorVersion="); err == nil || !strings.Contains(err.Error(), "the sidecar image has no version") {
		t.Errorf("want the empty-version check to fail the parent's render, got %v", err)
	}
	// image.tag is enough.
	out, err = helm(t, "template", "shop", dir, "--set", "leaderElectorVersion=", "--set", "leader-elector.image.tag=v9.9.9")
	if err != nil {
		t.Fatal(err)
	}
	if side, _ := sidecarContainer(t, podSpecs(t, splitDocs(t, out))["Deployment/shop-app"]); side.Image != "ghcr.io/leader-elector/leader-elector:v9.9.9" {
		t.Errorf("image with image.tag: %q", side.Image)
	}
}
