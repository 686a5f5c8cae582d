package chartest

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/leader-elector/leader-elector/internal/injector"
)

// typed decodes the rendered objects of kind into T.
func typed[T any](t *testing.T, objs []*unstructured.Unstructured, kind string) []T {
	t.Helper()
	var out []T
	for _, u := range objs {
		if u.GetKind() != kind {
			continue
		}
		var v T
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &v); err != nil {
			t.Fatalf("%s/%s: %v", kind, u.GetName(), err)
		}
		out = append(out, v)
	}
	return out
}

func injectorCase(t *testing.T) string {
	t.Helper()
	return ciCases(t)["injector"]
}

// TestInjectorCertManagerGolden renders the injector with its certificate
// from cert-manager. It is not a ci/ case: the dry-run test would need
// cert-manager's CRDs.
func TestInjectorCertManagerGolden(t *testing.T) {
	got := render(t, filepath.Join(repoRoot(t), "internal", "chartest", "testdata", "injector", "certmanager-values.yaml"))
	golden := filepath.Join("testdata", "golden", "injector-certmanager.yaml")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/chartest -run TestInjectorCertManagerGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("rendered output differs from %s.\n%s", golden, firstDiff(string(want), got))
	}
	objs := splitDocs(t, got)
	whs := typed[admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration")
	if len(whs) != 1 || whs[0].Annotations["cert-manager.io/inject-ca-from"] != "default/demo-leader-elector-injector" {
		t.Errorf("webhook configuration without cert-manager's CA injection: %+v", whs)
	}
	injectorRoles := 0
	for _, u := range objs {
		if (u.GetKind() == "Role" || u.GetKind() == "ClusterRole") && u.GetLabels()["app.kubernetes.io/component"] == "injector" {
			injectorRoles++
		}
	}
	// Only the ClusterRoles for injected sidecars (publishing, Lease), which
	// the injector does not hold.
	if injectorRoles != 2 {
		t.Error("with cert-manager the injector needs no rights on Secrets or webhook configurations")
	}
	deps := typed[appsv1.Deployment](t, objs, "Deployment")
	if len(deps) != 1 || !slices.Contains(deps[0].Spec.Template.Spec.Containers[0].Args, "--cert-dir=/etc/leader-elector-injector/tls") ||
		!slices.Contains(deps[0].Spec.Template.Spec.Containers[0].Args, "--native-sidecar=false") {
		t.Errorf("injector Deployment %+v", deps)
	}
}

func TestInjectorResources(t *testing.T) {
	objs := splitDocs(t, render(t, injectorCase(t), "--namespace", "platform"))
	deps := typed[appsv1.Deployment](t, objs, "Deployment")
	if len(deps) != 1 || *deps[0].Spec.Replicas != 2 {
		t.Fatalf("want one injector Deployment of 2 replicas, got %+v", deps)
	}
	if len(typed[corev1.Service](t, objs, "Service")) != 1 || len(typed[unstructured.Unstructured](t, objs, "PodDisruptionBudget")) != 1 {
		t.Error("want the injector's Service and PodDisruptionBudget")
	}
	whs := typed[admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration")
	if len(whs) != 1 || len(whs[0].Webhooks) != 1 {
		t.Fatalf("webhook configurations %+v", whs)
	}
	wh := whs[0].Webhooks[0]
	if *wh.FailurePolicy != admissionregistrationv1.Fail || *wh.TimeoutSeconds != 5 || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone ||
		wh.ObjectSelector.MatchLabels[injector.LabelInject] != "true" || len(wh.ObjectSelector.MatchLabels) != 1 ||
		len(wh.Rules) != 1 || !reflect.DeepEqual(wh.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) ||
		!reflect.DeepEqual(wh.Rules[0].Resources, []string{"pods"}) || *wh.ClientConfig.Service.Path != injector.MutatePath {
		t.Errorf("webhook %+v", wh)
	}
	excluded := wh.NamespaceSelector.MatchExpressions[0]
	if excluded.Key != "kubernetes.io/metadata.name" || excluded.Operator != "NotIn" || !reflect.DeepEqual(excluded.Values, []string{"platform", "kube-system"}) {
		t.Errorf("the injector's namespace and kube-system must be excluded: %+v", excluded)
	}
	if wh.NamespaceSelector.MatchLabels["leader-elector.io/injection"] != "enabled" {
		t.Errorf("injector.namespaceSelector not applied: %+v", wh.NamespaceSelector)
	}
	// The injector's cluster-wide right is its own webhook configuration.
	for _, cr := range typed[rbacv1.ClusterRole](t, objs, "ClusterRole") {
		for _, r := range cr.Rules {
			if slices.Contains(r.Resources, "mutatingwebhookconfigurations") && !reflect.DeepEqual(r.ResourceNames, []string{whs[0].Name}) {
				t.Errorf("ClusterRole %s reaches other webhook configurations: %+v", cr.Name, r)
			}
			if slices.Contains(r.Resources, "rolebindings") || slices.Contains(r.Resources, "secrets") || slices.Contains(r.Verbs, "bind") || slices.Contains(r.Verbs, "escalate") {
				t.Errorf("ClusterRole %s grants too much: %+v", cr.Name, r)
			}
		}
	}
	// The sidecar template parses and offers both configured backends and
	// kubernetes.
	cms := typed[corev1.ConfigMap](t, objs, "ConfigMap")
	if len(cms) != 1 {
		t.Fatalf("ConfigMaps %d", len(cms))
	}
	tmpl, err := injector.ParseTemplate([]byte(cms[0].Data["sidecar.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.DefaultBackend != "etcd" || len(tmpl.Backends) != 3 || tmpl.Backends["kubernetes"].Containers == nil {
		t.Errorf("template backends %v, default %s", tmpl.Backends, tmpl.DefaultBackend)
	}
}

// TestInjectedSidecarMatchesTheChartsSidecar: for the same settings, the
// sidecar the injector adds equals the one the chart puts into its example
// Deployment (container, volumes, readiness gate).
func TestInjectedSidecarMatchesTheChartsSidecar(t *testing.T) {
	for _, tc := range []struct{ name, values string }{
		{"etcd gate", "election: {name: orders, ttl: 7s}\nreadiness: {mode: gate}\nexample: {enabled: true}\n"},
		{"redis tls and a password file", "backend: redis\nelection: {name: orders}\nreadiness: {mode: label}\nexample: {enabled: true}\n" +
			"redis: {addrs: [\"r:6379\"], tls: {enabled: true, secretName: ca}, auth: {username: u, existingSecret: pw, passwordFrom: file}}\n"},
		{"no kube", "election: {name: orders}\nkube: {enabled: false}\nexample: {enabled: true}\n"},
		{"kubernetes", "backend: kubernetes\nelection: {name: orders, ttl: 15s}\nexample: {enabled: true}\n"},
		{"kubernetes without publishing", "backend: kubernetes\nelection: {name: orders}\nkube: {enabled: false}\nexample: {enabled: true}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			values := "etcd: {endpoints: [\"http://etcd:2379\"]}\n" + tc.values + "injector: {enabled: true}\n"
			objs := splitDocs(t, render(t, writeValues(t, values)))
			var example *corev1.Pod
			for key, pod := range podSpecs(t, objs) {
				if key == "Deployment/"+releaseName+"-leader-elector" {
					example = pod
				}
			}
			if example == nil {
				t.Fatal("no example Deployment")
			}
			want, _ := sidecarContainer(t, example)
			cms := typed[corev1.ConfigMap](t, objs, "ConfigMap")
			if len(cms) != 1 {
				t.Fatalf("ConfigMaps %d", len(cms))
			}
			tmpl, err := injector.ParseTemplate([]byte(cms[0].Data["sidecar.yaml"]))
			if err != nil {
				t.Fatal(err)
			}
			args := map[string]string{}
			for _, a := range want.Args {
				k, v, _ := strings.Cut(a, "=")
				args[k] = v
			}
			ann := map[string]string{injector.AnnotationElection: args["--election"], injector.AnnotationTTL: args["--ttl"]}
			if _, ok := args["--readiness-gate"]; ok {
				ann[injector.AnnotationReadiness] = "gate"
			}
			pod := &corev1.Pod{}
			pod.Labels = map[string]string{injector.LabelInject: "true"}
			pod.Annotations = ann
			if _, err := tmpl.Inject(pod, true); err != nil {
				t.Fatal(err)
			}
			got := pod.Spec.InitContainers[0]
			if !reflect.DeepEqual(got, want) {
				t.Errorf("injected container differs from the chart's:\n got %+v\nwant %+v", got, want)
			}
			if !reflect.DeepEqual(pod.Spec.Volumes, example.Spec.Volumes) || !reflect.DeepEqual(pod.Spec.ReadinessGates, example.Spec.ReadinessGates) {
				t.Errorf("volumes or gates differ:\n got %+v %+v\nwant %+v %+v", pod.Spec.Volumes, pod.Spec.ReadinessGates, example.Spec.Volumes, example.Spec.ReadinessGates)
			}
		})
	}
}

func TestInjectorGuardsAndSchema(t *testing.T) {
	for _, tc := range []struct{ name, values, want string }{
		{"no backend configured", "injector: {enabled: true}\n", "etcd.endpoints"},
		{"default backend not configured", "backend: redis\netcd: {endpoints: [\"http://e:2379\"]}\ninjector: {enabled: true}\n", "backend redis is the pods' default"},
		{"unknown failure policy", "injector: {failurePolicy: Sometimes}\n", "/injector/failurePolicy"},
		{"timeout too long", "injector: {timeoutSeconds: 31}\n", "/injector/timeoutSeconds"},
		{"unknown injector key", "injector: {replica: 2}\n", "replica"},
		{"native not a choice", "injector: {nativeSidecar: yes}\n", "/injector/nativeSidecar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helm(t, "template", releaseName, chartDir(t), "-f", writeValues(t, tc.values))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}
