package chartest

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func TestLint(t *testing.T) {
	for _, name := range sortedKeys(ciCases(t)) {
		file := ciCases(t)[name]
		t.Run(name, func(t *testing.T) {
			out, err := helm(t, "lint", "--strict", chartDir(t), "-f", file)
			if err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Errorf("helm lint did not report success:\n%s", out)
			}
		})
	}
}

func TestGolden(t *testing.T) {
	for name, file := range ciCases(t) {
		t.Run(name, func(t *testing.T) {
			got := render(t, file)
			golden := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/chartest -run TestGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("rendered output differs from %s; inspect with git diff after -update.\n%s", golden, firstDiff(string(want), got))
			}
		})
	}
}

// firstDiff describes the first line where two texts differ.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl
		}
	}
	return ""
}

// writeValues writes a values file into the test's temporary folder.
func writeValues(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A valid etcd base the bad values below modify.
const etcdBase = "etcd:\n  endpoints: [http://etcd:2379]\nexample:\n  enabled: true\n"

func TestSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, values, field string
	}{
		{"unknown backend", "backend: consul\n", "/backend"},
		{"unknown readiness mode", "readiness:\n  mode: leader\n", "/readiness/mode"},
		{"ttl without unit", "election:\n  ttl: \"10\"\n", "/election/ttl"},
		{"fractional ttl", "election:\n  ttl: 1500ms\n", "/election/ttl"},
		{"election name with a slash", "election:\n  name: a/b\n", "/election/name"},
		{"port out of range", "sidecar:\n  port: 70000\n", "/sidecar/port"},
		{"port as a string", "sidecar:\n  port: \"4040\"\n", "/sidecar/port"},
		{"endpoints as one string", "etcd:\n  endpoints: http://etcd:2379\n", "/etcd/endpoints"},
		{"endpoints joined by commas", "etcd:\n  endpoints: [\"http://a:2379,http://b:2379\"]\n", "/etcd/endpoints/0"},
		{"redis address without a port", "backend: redis\nredis:\n  addrs: [redis]\n", "/redis/addrs/0"},
		{"negative redis db", "redis:\n  db: -1\n", "/redis/db"},
		{"password through an unknown channel", "etcd:\n  auth:\n    passwordFrom: flag\n", "/etcd/auth/passwordFrom"},
		{"unknown top-level key", "replicas: 3\n", "replicas"},
		{"unknown sidecar key", "sidecar:\n  nativ: true\n", "nativ"},
		{"bad pull policy", "image:\n  pullPolicy: Sometimes\n", "/image/pullPolicy"},
		{"digest without algorithm", "image:\n  digest: abc\n", "/image/digest"},
		{"zero replicas", "example:\n  replicas: 0\n", "/example/replicas"},
		{"unknown strategy", "example:\n  strategy:\n    type: BlueGreen\n", "/example/strategy/type"},
		{"bad log level", "sidecar:\n  logLevel: verbose\n", "/sidecar/logLevel"},
		{"role label with spaces", "kube:\n  roleLabel: my role\n", "/kube/roleLabel"},
		{"leader value too long", "kube:\n  leaderValue: " + strings.Repeat("x", 64) + "\n", "/kube/leaderValue"},
		{"bad resync", "kube:\n  resync: soon\n", "/kube/resync"},
		{"gate condition not a qualified name", "readiness:\n  gateConditionType: \"leader elector\"\n", "/readiness/gateConditionType"},
		{"extra arg that is not a flag", "sidecar:\n  extraArgs: [demo]\n", "/sidecar/extraArgs/0"},
		{"grace period shorter than the handover", "example:\n  terminationGracePeriodSeconds: 2\n", "/example/terminationGracePeriodSeconds"},
		{"budget of zero pods", "example:\n  podDisruptionBudget:\n    maxUnavailable: 0\n", "/example/podDisruptionBudget/maxUnavailable"},
		{"budget as a fraction", "example:\n  podDisruptionBudget:\n    maxUnavailable: \"0.5\"\n", "/example/podDisruptionBudget/maxUnavailable"},
		{"spread without a topology key", "example:\n  topologySpreadConstraints: [{maxSkew: 1, whenUnsatisfiable: DoNotSchedule}]\n", "/example/topologySpreadConstraints/0"},
		{"spread with an unknown policy", "example:\n  topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: Maybe}]\n", "/example/topologySpreadConstraints/0/whenUnsatisfiable"},
		{"priority class with capitals", "example:\n  priorityClassName: High\n", "/example/priorityClassName"},
		{"node selector with a number", "example:\n  nodeSelector: {zone: 1}\n", "/example/nodeSelector/zone"},
		{"mount at a relative path", "sidecar:\n  extraVolumeMounts: [{name: data, mountPath: data}]\n", "/sidecar/extraVolumeMounts/0/mountPath"},
		{"volume without a name", "sidecar:\n  extraVolumes: [{emptyDir: {}}]\n", "/sidecar/extraVolumes/0"},
		{"scrape interval without unit", "metrics:\n  serviceMonitor:\n    interval: \"30\"\n", "/metrics/serviceMonitor/interval"},
		{"unknown monitor key", "metrics:\n  podMonitor:\n    port: http\n", "port"},
		{"admission policy as a string", "admissionPolicy:\n  enabled: \"yes\"\n", "/admissionPolicy/enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helm(t, "template", releaseName, chartDir(t), "-f", writeValues(t, etcdBase), "-f", writeValues(t, tc.values))
			if err == nil {
				t.Fatal("helm template accepted the values")
			}
			msg := err.Error()
			if !strings.Contains(msg, "schema") || !strings.Contains(msg, tc.field) {
				t.Errorf("want a schema error naming %s, got:\n%s", tc.field, msg)
			}
		})
	}
}

func TestTemplateGuardsRejectImpossibleCombinations(t *testing.T) {
	for _, tc := range []struct {
		name, values, want string
	}{
		{"etcd without endpoints", "example:\n  enabled: true\n", "etcd.endpoints"},
		{"redis without addresses", "backend: redis\nexample:\n  enabled: true\n", "redis.addrs"},
		{"etcd TLS without a Secret", etcdBase + "etcd:\n  endpoints: [e:2379]\n  tls:\n    enabled: true\n", "etcd.tls.secretName"},
		{"etcd user without a password Secret", etcdBase + "etcd:\n  endpoints: [e:2379]\n  auth:\n    username: u\n", "etcd.auth.existingSecret"},
		{"redis client cert without a Secret", "backend: redis\nexample:\n  enabled: true\nredis:\n  addrs: [r:6379]\n  tls:\n    enabled: true\n    clientCert: true\n", "redis.tls.secretName"},
		{"redis TLS Secret with TLS off", "backend: redis\nexample:\n  enabled: true\nredis:\n  addrs: [r:6379]\n  tls:\n    secretName: s\n", "redis.tls.enabled"},
		{"redis user without a password Secret", "backend: redis\nexample:\n  enabled: true\nredis:\n  addrs: [r:6379]\n  auth:\n    username: u\n", "redis.auth.existingSecret"},
		{"etcd TLS with an http endpoint", etcdBase + "etcd:\n  endpoints: [https://e:2379, http://f:2379]\n  tls:\n    enabled: true\n    secretName: s\n", "etcd.tls.enabled with the plaintext endpoint http://f:2379"},
		{"etcd password over http", etcdBase + "etcd:\n  endpoints: [http://e:2379]\n  auth:\n    username: u\n    existingSecret: pw\n", "etcd.auth.username would send the password in plaintext to http://e:2379"},
		{"etcd password without TLS", etcdBase + "etcd:\n  endpoints: [e:2379]\n  auth:\n    username: u\n    existingSecret: pw\n", "etcd.auth.insecurePlaintext"},
		{"etcd password in an endpoint", etcdBase + "etcd:\n  endpoints: [http://u:hunter2@e:2379]\n", "etcd.endpoints: an endpoint holds a user or password"},
		{"redis password without TLS", "backend: redis\nexample:\n  enabled: true\nredis:\n  addrs: [r:6379]\n  auth:\n    existingSecret: pw\n", "redis.auth.existingSecret without redis.tls.enabled"},
		{"redis password in an address", "backend: redis\nexample:\n  enabled: true\nredis:\n  addrs: [\"u:hunter2@r:6379\"]\n", "redis.addrs: an address holds a user or password"},
		{"label mode without publishing", etcdBase + "readiness:\n  mode: label\nkube:\n  enabled: false\n", "kube.enabled"},
		{"gate mode without publishing", etcdBase + "readiness:\n  mode: gate\nkube:\n  enabled: false\n", "kube.enabled"},
		{"same leader and follower values", etcdBase + "kube:\n  leaderValue: x\n  followerValue: x\n", "must differ"},
		{"same role and election labels", etcdBase + "kube:\n  roleLabel: a/b\n  electionLabel: a/b\n", "must differ"},
		{"port clash", etcdBase + "sidecar:\n  port: 8080\n", "sidecar.port and example.app.port"},
		{"probe with the default rolling update", etcdBase + "readiness:\n  mode: probe\nexample:\n  enabled: true\n  strategy:\n    type: RollingUpdate\n", "never finishes"},
		{"probe with maxUnavailable 0", etcdBase + "readiness:\n  mode: probe\nexample:\n  enabled: true\n  strategy:\n    rollingUpdate:\n      maxUnavailable: 0\n", "never finishes"},
		{"gate with maxUnavailable 50%", etcdBase + "readiness:\n  mode: gate\nexample:\n  enabled: true\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 50%\n", "never finishes"},
		{"gate with maxUnavailable below the replicas", etcdBase + "readiness:\n  mode: gate\nexample:\n  enabled: true\n  replicas: 3\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 2\n", "never finishes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helm(t, "template", releaseName, chartDir(t), "-f", writeValues(t, tc.values))
			if err == nil {
				t.Fatal("helm template accepted the values")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want an error mentioning %q, got:\n%v", tc.want, err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error prints the password:\n%v", err)
			}
		})
	}
}

// deployment renders values and returns the example Deployment.
func deployment(t *testing.T, values string) *appsv1.Deployment {
	t.Helper()
	objs := splitDocs(t, render(t, writeValues(t, values)))
	ds := find(objs, "Deployment")
	if len(ds) != 1 {
		t.Fatalf("want one Deployment, got %d", len(ds))
	}
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ds[0].Object, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

func TestStrategyIsSafeForEachReadinessMode(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		want         appsv1.DeploymentStrategyType
	}{
		{"none rolls", "readiness:\n  mode: none\n", appsv1.RollingUpdateDeploymentStrategyType},
		{"label rolls", "readiness:\n  mode: label\n", appsv1.RollingUpdateDeploymentStrategyType},
		{"probe recreates", "readiness:\n  mode: probe\n", appsv1.RecreateDeploymentStrategyType},
		{"gate recreates", "readiness:\n  mode: gate\n", appsv1.RecreateDeploymentStrategyType},
		{"gate may roll with maxUnavailable 100%", "readiness:\n  mode: gate\nexample:\n  enabled: true\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 100%\n", appsv1.RollingUpdateDeploymentStrategyType},
		{"probe may roll with maxUnavailable = replicas", "readiness:\n  mode: probe\nexample:\n  enabled: true\n  replicas: 3\n  strategy:\n    rollingUpdate:\n      maxUnavailable: 3\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := deployment(t, etcdBase+tc.values)
			if d.Spec.Strategy.Type != tc.want {
				t.Errorf("strategy: got %q, want %q", d.Spec.Strategy.Type, tc.want)
			}
		})
	}
}

func TestReadinessModes(t *testing.T) {
	render := func(t *testing.T, mode string) (*appsv1.Deployment, map[string]string, []string) {
		values := etcdBase + "readiness:\n  mode: " + mode + "\n"
		objs := splitDocs(t, renderValues(t, values))
		svc := find(objs, "Service")
		if len(svc) != 1 {
			t.Fatalf("want one Service, got %d", len(svc))
		}
		sel, _, err := unstructured.NestedStringMap(svc[0].Object, "spec", "selector")
		if err != nil {
			t.Fatal(err)
		}
		d := deployment(t, values)
		side, _ := sidecarContainer(t, &corev1.Pod{Spec: d.Spec.Template.Spec})
		return d, sel, side.Args
	}
	app := func(d *appsv1.Deployment) corev1.Container { return d.Spec.Template.Spec.Containers[0] }

	t.Run("none", func(t *testing.T) {
		d, sel, args := render(t, "none")
		if _, ok := sel["leader-elector.io/role"]; ok {
			t.Error("Service selects the role label")
		}
		if p := app(d).ReadinessProbe; p == nil || p.HTTPGet != nil {
			t.Errorf("app readiness probe should not ask the sidecar: %+v", p)
		}
		if len(d.Spec.Template.Spec.ReadinessGates) != 0 || hasPrefix(args, "--readiness-gate") {
			t.Error("readiness gate set")
		}
	})
	t.Run("label", func(t *testing.T) {
		_, sel, args := render(t, "label")
		if sel["leader-elector.io/role"] != "leader" {
			t.Errorf("Service selector %v does not select the leader label", sel)
		}
		if !slices.Contains(args, "--role-label=leader-elector.io/role") || !slices.Contains(args, "--leader-value=leader") {
			t.Errorf("sidecar args do not publish the label the Service selects: %v", args)
		}
	})
	t.Run("probe", func(t *testing.T) {
		d, sel, _ := render(t, "probe")
		p := app(d).ReadinessProbe
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/leader" || p.HTTPGet.Port.IntValue() != 4040 {
			t.Errorf("app readiness probe is not the sidecar's /leader: %+v", p)
		}
		if _, ok := sel["leader-elector.io/role"]; ok {
			t.Error("Service selects the role label")
		}
	})
	t.Run("gate", func(t *testing.T) {
		d, _, args := render(t, "gate")
		gates := d.Spec.Template.Spec.ReadinessGates
		if len(gates) != 1 || gates[0].ConditionType != "leader-elector.io/leader" {
			t.Errorf("readiness gates: %+v", gates)
		}
		if !slices.Contains(args, "--readiness-gate=leader-elector.io/leader") {
			t.Errorf("sidecar does not set the gate's condition: %v", args)
		}
	})
}

func TestNativeAndClassicSidecar(t *testing.T) {
	native := deployment(t, etcdBase)
	c, isNative := sidecarContainer(t, &corev1.Pod{Spec: native.Spec.Template.Spec})
	if !isNative || c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("native: want an init container with restartPolicy Always, got native=%v %v", isNative, c.RestartPolicy)
	}
	classic := deployment(t, etcdBase+"sidecar:\n  native: false\n")
	c, isNative = sidecarContainer(t, &corev1.Pod{Spec: classic.Spec.Template.Spec})
	if isNative || c.RestartPolicy != nil || len(classic.Spec.Template.Spec.InitContainers) != 0 {
		t.Errorf("classic: want a plain container, got native=%v %v", isNative, c.RestartPolicy)
	}
}

func TestSecureDefaults(t *testing.T) {
	d := deployment(t, etcdBase)
	c, _ := sidecarContainer(t, &corev1.Pod{Spec: d.Spec.Template.Spec})
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no security context")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("runAsNonRoot not set")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("root filesystem writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation allowed")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
		t.Error("capabilities not all dropped")
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("seccomp profile not RuntimeDefault")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources incomplete: %+v", c.Resources)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe: %+v", p)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("readiness probe: %+v", p)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["POD_NAME"] != "metadata.name" || env["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("downward API env: %v", env)
	}
}

func TestSecretsReachTheSidecar(t *testing.T) {
	t.Run("etcd password from env", func(t *testing.T) {
		d := deployment(t, etcdBase+"etcd:\n  endpoints: [e:2379]\n  tls:\n    enabled: true\n    secretName: tls\n  auth:\n    username: u\n    existingSecret: pw\n    passwordKey: pass\n")
		c, _ := sidecarContainer(t, &corev1.Pod{Spec: d.Spec.Template.Spec})
		var ref *corev1.SecretKeySelector
		for _, e := range c.Env {
			if e.Name == "LEADER_ELECTOR_ETCD_PASSWORD" && e.ValueFrom != nil {
				ref = e.ValueFrom.SecretKeyRef
			}
		}
		if ref == nil || ref.Name != "pw" || ref.Key != "pass" {
			t.Errorf("password env: %+v", ref)
		}
		if !slices.Contains(c.Args, "--etcd-username=u") || hasPrefix(c.Args, "--etcd-password-file") {
			t.Errorf("args: %v", c.Args)
		}
	})
	t.Run("redis password and TLS from files", func(t *testing.T) {
		d := deployment(t, "backend: redis\nexample:\n  enabled: true\nredis:\n  addrs: [r:6379]\n  tls:\n    enabled: true\n    secretName: tls\n    clientCert: true\n  auth:\n    username: u\n    existingSecret: pw\n    passwordFrom: file\n")
		pod := &corev1.Pod{Spec: d.Spec.Template.Spec}
		c, _ := sidecarContainer(t, pod)
		for _, want := range []string{
			"--redis-tls", "--redis-username=u",
			"--redis-cacert=/etc/leader-elector/redis-tls/ca.crt",
			"--redis-cert=/etc/leader-elector/redis-tls/tls.crt",
			"--redis-key=/etc/leader-elector/redis-tls/tls.key",
			"--redis-password-file=/etc/leader-elector/redis-auth/password",
		} {
			if !slices.Contains(c.Args, want) {
				t.Errorf("args lack %s: %v", want, c.Args)
			}
		}
		secrets := map[string]string{}
		for _, v := range pod.Spec.Volumes {
			if v.Secret != nil {
				secrets[v.Name] = v.Secret.SecretName
			}
		}
		var secretMounts int
		for _, m := range c.VolumeMounts {
			if m.Name == "leader-elector-kube-api-access" || m.Name == "leader-elector-state" {
				continue // the service-account token (TestTokenReachesOnlyTheSidecar), the incarnation file (TestIncarnationFileSurvivesSidecarRestart)
			}
			secretMounts++
			if secrets[m.Name] == "" || !m.ReadOnly {
				t.Errorf("mount %s: secret %q, readOnly %v", m.Name, secrets[m.Name], m.ReadOnly)
			}
		}
		if secretMounts != 2 || secrets["leader-elector-redis-tls"] != "tls" || secrets["leader-elector-redis-auth"] != "pw" {
			t.Errorf("mounts %v, volumes %v", c.VolumeMounts, secrets)
		}
	})
}

func renderValues(t *testing.T, values string) string { return render(t, writeValues(t, values)) }

func hasPrefix(args []string, prefix string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, prefix) })
}
