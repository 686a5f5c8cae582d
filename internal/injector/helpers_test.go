package injector_test

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/leader-elector/leader-elector/internal/injector"
	"github.com/leader-elector/leader-elector/internal/testutil/repo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog starts its flush daemon when imported and never stops it.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		// controller-runtime's delegating logger waits 30 s for SetLogger.
		goleak.IgnoreTopFunction("sigs.k8s.io/controller-runtime/pkg/log.eventuallyFulfillRoot.func1"),
		goleak.IgnoreAnyFunction("time.Sleep"),
	)
}

// chartGolden is the chart's render of ci/injector-values.yaml, which the
// chart tests (internal/chartest TestGolden) keep equal to the chart. The
// injector's tests take the sidecar template and the webhook configuration
// from it, so they test what the chart installs.
func chartGolden(t testing.TB) []map[string]any {
	t.Helper()
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "internal", "chartest", "testdata", "golden", "injector.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var out []map[string]any
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		if len(m) > 0 {
			out = append(out, m)
		}
	}
}

// chartObject decodes the golden's object of that kind into out.
func chartObject(t testing.TB, kind string, out any) {
	t.Helper()
	for _, m := range chartGolden(t) {
		if m["kind"] != kind {
			continue
		}
		raw, err := yaml.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("the chart renders no %s", kind)
}

// chartTemplate is the sidecar template the chart mounts into the injector.
func chartTemplate(t testing.TB) *injector.Template {
	t.Helper()
	var cm corev1.ConfigMap
	chartObject(t, "ConfigMap", &cm)
	tmpl, err := injector.ParseTemplate([]byte(cm.Data["sidecar.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// chartWebhook is the chart's MutatingWebhookConfiguration.
func chartWebhook(t testing.TB) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	var w admissionregistrationv1.MutatingWebhookConfiguration
	chartObject(t, "MutatingWebhookConfiguration", &w)
	return &w
}

// appPod is a pod that passes Pod Security "restricted" on its own.
func appPod(name string, labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			// The ServiceAccount admission plugin (which envtest turns off)
			// fills this in before webhooks run in a real cluster.
			ServiceAccountName:           "default",
			AutomountServiceAccountToken: new(false),
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "registry.k8s.io/pause:3.10",
				SecurityContext: &corev1.SecurityContext{
					RunAsNonRoot:             new(true),
					RunAsUser:                new(int64(65532)),
					AllowPrivilegeEscalation: new(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}},
		},
	}
}

func optedIn(extra map[string]string) map[string]string {
	m := map[string]string{injector.LabelInject: "true", "app": "orders"}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// sidecarOf returns the pod's leader-elector container and whether it is
// a native sidecar.
func sidecarOf(pod *corev1.Pod) (*corev1.Container, bool) {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == injector.ContainerName {
			return &pod.Spec.InitContainers[i], true
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == injector.ContainerName {
			return &pod.Spec.Containers[i], false
		}
	}
	return nil, false
}

func hasArg(c *corev1.Container, arg string) bool {
	for _, a := range c.Args {
		if a == arg {
			return true
		}
	}
	return false
}

func argValue(c *corev1.Container, flag string) string {
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}
