package cli

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/leader-elector/leader-elector/internal/testutil/repo"
)

// TestInjectorAcceptsTheChartsArguments parses the arguments the chart gives
// the injector (the golden render of ci/injector-values.yaml, which the
// chart tests keep equal to the chart) and checks they name the objects the
// chart creates: the mounted sidecar template, the webhook configuration,
// the Secret its Role allows, and the Service the webhook calls.
func TestInjectorAcceptsTheChartsArguments(t *testing.T) {
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	for _, golden := range []string{"injector.yaml", "injector-certmanager.yaml"} {
		t.Run(golden, func(t *testing.T) {
			docs := goldenDocs(t, filepath.Join(root, "internal", "chartest", "testdata", "golden", golden))
			var dep appsv1.Deployment
			var cm corev1.ConfigMap
			var wh admissionregistrationv1.MutatingWebhookConfiguration
			var roles []rbacv1.Role
			for _, d := range docs {
				switch kind := kindOf(t, d); kind {
				case "Deployment":
					decode(t, d, &dep)
				case "ConfigMap":
					decode(t, d, &cm)
				case "MutatingWebhookConfiguration":
					decode(t, d, &wh)
				case "Role":
					var r rbacv1.Role
					decode(t, d, &r)
					roles = append(roles, r)
				}
			}
			c := dep.Spec.Template.Spec.Containers[0]
			if c.Args[0] != "injector" {
				t.Fatalf("args %q", c.Args)
			}
			tmpl := filepath.Join(t.TempDir(), "sidecar.yaml")
			if err := os.WriteFile(tmpl, []byte(cm.Data["sidecar.yaml"]), 0o644); err != nil {
				t.Fatal(err)
			}
			args := slices.Clone(c.Args[1:])
			for i, a := range args {
				if strings.HasPrefix(a, "--sidecar-template=") {
					args[i] = "--sidecar-template=" + tmpl
				}
			}
			cfg, o, err := injectorOptions(args, env(map[string]string{"POD_NAMESPACE": "default"}))
			if err != nil {
				t.Fatalf("the injector refuses the chart's arguments: %v", err)
			}
			if o.Port != int(dep.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort) {
				t.Errorf("listens on %d, the container port is %d", o.Port, c.Ports[0].ContainerPort)
			}
			svc := wh.Webhooks[0].ClientConfig.Service
			if cfg.CertDir != "" {
				return // cert-manager: the Certificate names the Service
			}
			if cfg.WebhookConfig != wh.Name {
				t.Errorf("--webhook-config %s, the chart's configuration is %s", cfg.WebhookConfig, wh.Name)
			}
			if !slices.Contains(o.Certs.Hosts, svc.Name+"."+svc.Namespace+".svc") {
				t.Errorf("certificate hosts %q lack the name the API server calls, %s.%s.svc", o.Certs.Hosts, svc.Name, svc.Namespace)
			}
			allowed := false
			for _, r := range roles {
				for _, rule := range r.Rules {
					allowed = allowed || (slices.Contains(rule.ResourceNames, cfg.CertSecret) && slices.Contains(rule.Verbs, "update"))
				}
			}
			if !allowed {
				t.Errorf("no Role lets the injector update its Secret %s", cfg.CertSecret)
			}
		})
	}
}

func goldenDocs(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var out [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, doc)
	}
}

func kindOf(t *testing.T, doc []byte) string {
	t.Helper()
	var m struct{ Kind string }
	if err := yaml.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	return m.Kind
}

func decode(t *testing.T, doc []byte, out any) {
	t.Helper()
	if err := yaml.Unmarshal(doc, out); err != nil {
		t.Fatal(err)
	}
}
