package chartest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog starts its flush daemon when imported and never stops it.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

// releaseName is the release every test renders.
const releaseName = "demo"

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "leader-elector") }

// helmPath is bin/helm; `make test-deps` builds it.
func helmPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join(repoRoot(t), "bin", "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing; run `make test-deps`: %v", p, err)
	}
	return p
}

// kubeVersion is the Kubernetes version the tests' API server runs
// (KUBE_VERSION in hack/tools.mk), without the leading v.
func kubeVersion(t testing.TB) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "hack", "tools.mk"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^KUBE_VERSION \?= v(\S+)$`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("no KUBE_VERSION in hack/tools.mk")
	}
	return string(m[1])
}

// helm runs bin/helm and returns stdout, or an error carrying stderr.
// `helm template` and `helm lint` render for the tests' Kubernetes version
// unless the arguments name one: a helm built with `go install` would
// otherwise assume Kubernetes 1.20, which the chart's kubeVersion refuses.
func helm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	if len(args) > 0 && (args[0] == "template" || args[0] == "lint") && !slices.Contains(args, "--kube-version") {
		args = append(slices.Clone(args), "--kube-version", kubeVersion(t))
	}
	cmd := exec.CommandContext(t.Context(), helmPath(t), args...)
	cmd.Dir = repoRoot(t)
	// Keep helm away from the user's configuration and caches.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(strings.TrimSpace(stderr.String() + "\n" + err.Error()))
	}
	return stdout.String(), nil
}

// ciCases returns the values files in charts/leader-elector/ci by case name
// (the file name without -values.yaml).
func ciCases(t testing.TB) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir(t), "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("want at least 8 values files in ci/, got %d", len(files))
	}
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// render runs helm template with a values file and returns the output.
func render(t testing.TB, valuesFile string, extra ...string) string {
	t.Helper()
	args := append([]string{"template", releaseName, chartDir(t), "-f", valuesFile}, extra...)
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm template -f %s: %v", filepath.Base(valuesFile), err)
	}
	return out
}

// splitDocs decodes a multi-document YAML stream into objects, skipping
// documents that hold only comments.
func splitDocs(t testing.TB, stream string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("invalid YAML document: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// podSpecs returns every pod spec in objs (Pods and Deployment templates)
// by "Kind/name".
func podSpecs(t testing.TB, objs []*unstructured.Unstructured) map[string]*corev1.Pod {
	t.Helper()
	out := map[string]*corev1.Pod{}
	for _, u := range objs {
		raw, err := u.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw, nil, nil)
		if runtime.IsNotRegisteredError(err) {
			continue // a custom resource (ServiceMonitor, PodMonitor): no pods
		}
		if err != nil {
			t.Fatalf("decoding %s/%s: %v", u.GetKind(), u.GetName(), err)
		}
		key := u.GetKind() + "/" + u.GetName()
		switch o := obj.(type) {
		case *corev1.Pod:
			out[key] = o
		case *appsv1.Deployment:
			out[key] = &corev1.Pod{ObjectMeta: o.Spec.Template.ObjectMeta, Spec: o.Spec.Template.Spec}
		}
	}
	return out
}

// sidecarContainer returns the leader-elector container of a pod and
// whether it is a native sidecar.
func sidecarContainer(t testing.TB, pod *corev1.Pod) (corev1.Container, bool) {
	t.Helper()
	for _, c := range pod.Spec.InitContainers {
		if c.Name == "leader-elector" {
			return c, true
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == "leader-elector" {
			return c, false
		}
	}
	t.Fatal("no leader-elector container in the pod")
	return corev1.Container{}, false
}

func find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}
