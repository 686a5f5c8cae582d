package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInjectorRejectsBadFlagsNamingThem(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "sidecar.yaml")
	if err := os.WriteFile(tmpl, []byte("defaultBackend: etcd\nbackends:\n  etcd:\n    containers: [{name: leader-elector, image: x}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("defaultBackend: redis\nbackends: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	self := []string{"--sidecar-template", tmpl, "--cert-secret", "s", "--webhook-config", "w", "--service", "svc", "--namespace", "ns"}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no template", nil, nil, "--sidecar-template is required"},
		{"missing template", []string{"--sidecar-template", filepath.Join(dir, "nope")}, nil, "--sidecar-template"},
		{"bad template", []string{"--sidecar-template", bad}, nil, "--sidecar-template"},
		{"bad listen", append(self, "--listen", "9443"), nil, "--listen"},
		{"bad port", append(self, "--listen", ":99999"), nil, "--listen"},
		{"bad native", append(self, "--native-sidecar", "maybe"), nil, "--native-sidecar"},
		{"bad log format", append(self, "--log-format", "xml"), nil, "--log-format"},
		{"bad log level", append(self, "--log-level", "loud"), nil, "--log-level"},
		{"no secret", []string{"--sidecar-template", tmpl}, nil, "--cert-secret"},
		{"no webhook config", []string{"--sidecar-template", tmpl, "--cert-secret", "s"}, nil, "--webhook-config"},
		{"no namespace", []string{"--sidecar-template", tmpl, "--cert-secret", "s", "--webhook-config", "w"}, nil, "--namespace"},
		{"no hosts", []string{"--sidecar-template", tmpl, "--cert-secret", "s", "--webhook-config", "w", "--namespace", "ns"}, nil, "--service or --cert-host"},
		{"short validity", append(self, "--cert-validity", "10m"), nil, "--cert-validity"},
		{"slow checks", append(self, "--cert-check-interval", "800h"), nil, "--cert-check-interval"},
		{"bad env", []string{"--sidecar-template", tmpl, "--cert-dir", dir}, map[string]string{"LEADER_ELECTOR_INJECTOR_CERT_VALIDITY": "soon"}, "LEADER_ELECTOR_INJECTOR_CERT_VALIDITY"},
		{"extra argument", append(self, "extra"), nil, `"extra"`},
		{"missing kubeconfig", append(self, "--kubeconfig", filepath.Join(dir, "nope")), nil, "--kubeconfig"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), append([]string{"injector"}, c.args...), env(c.env), &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), exitUsage, c.want)
			}
		})
	}
}

func TestInjectorOptionsFromFlagsAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "sidecar.yaml")
	if err := os.WriteFile(tmpl, []byte("defaultBackend: etcd\nbackends:\n  etcd:\n    containers: [{name: leader-elector, image: x}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, o, err := injectorOptions([]string{"--cert-secret", "tls", "--webhook-config", "wh", "--service", "inj", "--cert-host", "10.0.0.1"}, env(map[string]string{
		"LEADER_ELECTOR_INJECTOR_SIDECAR_TEMPLATE": tmpl,
		"POD_NAMESPACE": "system",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"inj.system.svc", "inj.system.svc.cluster.local", "inj.system", "inj", "10.0.0.1"}
	if strings.Join(o.Certs.Hosts, ",") != strings.Join(want, ",") || o.Certs.Namespace != "system" || o.Port != 9443 || o.Host != "" || o.Template.DefaultBackend != "etcd" {
		t.Errorf("options %+v", o)
	}
}
