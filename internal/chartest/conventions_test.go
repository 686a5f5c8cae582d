package chartest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// appVersion reads the chart's appVersion.
func appVersion(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^appVersion: "([^"]+)"$`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("Chart.yaml has no quoted appVersion")
	}
	return string(m[1])
}

// TestOneVersionString: the chart's appVersion is the version make builds
// into the binary and tags the image with, and the tag the chart and the
// generated manifests pull. (tools/image checks the image's own labels and
// the binary inside it.)
func TestOneVersionString(t *testing.T) {
	v := appVersion(t)
	if !regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`).MatchString(v) {
		t.Errorf("appVersion %q is not v<semver>", v)
	}
	if got := strings.TrimSpace(makePackaging(t, "version")); got != v {
		t.Errorf("make version = %q, chart appVersion = %q", got, v)
	}
	mk := goBuildCommand(t, makePackaging(t, "-n", "image-binary", "GO=go"))
	if !slices.ContainsFunc(mk, func(w string) bool { return strings.HasSuffix(w, "internal/cli.buildVersion="+v) }) {
		t.Errorf("make image-binary does not stamp %s: %q", v, mk)
	}
	if out := makePackaging(t, "-n", "image", "GO=go"); !strings.Contains(out, "-version "+v+" ") {
		t.Errorf("make image does not tag %s:\n%s", v, out)
	}
	want := "ghcr.io/leader-elector/leader-elector:" + v
	d := deployment(t, etcdBase)
	if c, _ := sidecarContainer(t, &corev1.Pod{Spec: d.Spec.Template.Spec}); c.Image != want {
		t.Errorf("chart image %q, want %q", c.Image, want)
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `image: "`+want+`"`) {
		t.Errorf("manifests/example.yaml does not pull %s", want)
	}
}

// TestEmptyImageVersionFails renders a copy of the chart without an
// appVersion: with no image.tag that must fail with a message naming the
// fix, not render "repository:".
func TestEmptyImageVersionFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "leader-elector")
	copyDir(t, chartDir(t), dir)
	chart := filepath.Join(dir, "Chart.yaml")
	raw, err := os.ReadFile(chart)
	if err != nil {
		t.Fatal(err)
	}
	raw = regexp.MustCompile(`(?m)^appVersion: .*$`).ReplaceAll(raw, []byte(`appVersion: ""`))
	if err := os.WriteFile(chart, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	values := writeValues(t, etcdBase)
	_, err = helm(t, "template", releaseName, dir, "-f", values)
	if err == nil || !strings.Contains(err.Error(), "the sidecar image has no version: set image.tag") {
		t.Errorf("want the empty-version error, got %v", err)
	}
	// The helm test hook renders the image too, even without the example.
	if _, err := helm(t, "template", releaseName, dir, "--set", "example.enabled=false"); err == nil {
		t.Error("the test hook rendered an image without a version")
	}
	out, err := helm(t, "template", releaseName, dir, "-f", values, "--set", "image.tag=v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `image: "ghcr.io/leader-elector/leader-elector:v1.2.3"`) {
		t.Error("image.tag v1.2.3 not used")
	}
}

// TestSidecarReadinessIgnoresTheBackend: a sidecar's readiness counts toward
// its pod's Ready condition, so in readiness modes none and label (where
// every pod should stay Ready) its probe must not be an endpoint that
// depends on the lock backend. TestAgainstAPIServer also runs every rendered
// sidecar with an unreachable backend and requires its rendered readiness
// probe to answer 200.
func TestSidecarReadinessIgnoresTheBackend(t *testing.T) {
	backendBound := []string{"/readyz", "/leader", "/status"}
	for _, mode := range []string{"none", "label", "probe", "gate"} {
		for _, native := range []string{"true", "false"} {
			t.Run(mode+"/native="+native, func(t *testing.T) {
				d := deployment(t, etcdBase+"readiness:\n  mode: "+mode+"\nsidecar:\n  native: "+native+"\n")
				pod := &corev1.Pod{Spec: d.Spec.Template.Spec}
				side, _ := sidecarContainer(t, pod)
				p := side.ReadinessProbe
				if p == nil || p.HTTPGet == nil {
					t.Fatalf("sidecar readiness probe: %+v", p)
				}
				if slices.Contains(backendBound, p.HTTPGet.Path) {
					t.Errorf("sidecar readiness probe %s depends on the backend", p.HTTPGet.Path)
				}
				app := d.Spec.Template.Spec.Containers[0]
				asksSidecar := app.ReadinessProbe != nil && app.ReadinessProbe.HTTPGet != nil && app.ReadinessProbe.HTTPGet.Port.IntValue() == 4040
				if want := mode == "probe"; asksSidecar != want {
					t.Errorf("app readiness asks the sidecar: %v, want %v (%+v)", asksSidecar, want, app.ReadinessProbe)
				}
				if gated := len(d.Spec.Template.Spec.ReadinessGates) > 0; gated != (mode == "gate") {
					t.Errorf("readiness gate present: %v", gated)
				}
			})
		}
	}
}

// checkTokenOnlyInSidecar: the pod does not automount the service-account
// token; the sidecar mounts a projected, pod-bound token at the in-cluster
// path; no other container mounts it.
func checkTokenOnlyInSidecar(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if a := pod.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("automountServiceAccountToken is %v, want false", a)
	}
	tokenVolumes := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ServiceAccountToken != nil {
				tokenVolumes[v.Name] = true
				if s.ServiceAccountToken.Audience != "" {
					t.Errorf("token audience %q: the API server's default audience is needed", s.ServiceAccountToken.Audience)
				}
			}
		}
	}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		var mounted []string
		for _, m := range c.VolumeMounts {
			if tokenVolumes[m.Name] {
				mounted = append(mounted, m.MountPath)
				if !m.ReadOnly {
					t.Errorf("%s mounts the token writable", c.Name)
				}
			}
		}
		switch {
		case c.Name == "leader-elector" && !slices.Equal(mounted, []string{"/var/run/secrets/kubernetes.io/serviceaccount"}):
			t.Errorf("sidecar token mounts %v, want the in-cluster path", mounted)
		case c.Name != "leader-elector" && len(mounted) > 0:
			t.Errorf("container %s mounts the token at %v", c.Name, mounted)
		}
	}
}

func TestTokenReachesOnlyTheSidecar(t *testing.T) {
	for _, native := range []string{"true", "false"} {
		t.Run("native="+native, func(t *testing.T) {
			d := deployment(t, etcdBase+"sidecar:\n  native: "+native+"\n")
			checkTokenOnlyInSidecar(t, &corev1.Pod{Spec: d.Spec.Template.Spec})
		})
	}
	t.Run("publishing off", func(t *testing.T) {
		d := deployment(t, etcdBase+"kube:\n  enabled: false\nreadiness:\n  mode: none\n")
		pod := &corev1.Pod{Spec: d.Spec.Template.Spec}
		if a := pod.Spec.AutomountServiceAccountToken; a == nil || *a {
			t.Errorf("automountServiceAccountToken %v", a)
		}
		for _, v := range pod.Spec.Volumes {
			if v.Projected != nil {
				t.Errorf("volume %s: no token is needed without publishing", v.Name)
			}
		}
	})
}

func TestPodDisruptionBudgetIsModeAware(t *testing.T) {
	for _, tc := range []struct {
		mode, extra string
		want        string // maxUnavailable, or "" for no budget
	}{
		{"none", "", "1"},
		{"label", "", "1"},
		{"label", "example:\n  enabled: true\n  podDisruptionBudget:\n    maxUnavailable: 50%\n", "50%"},
		{"none", "example:\n  enabled: true\n  podDisruptionBudget:\n    enabled: false\n", ""},
		{"probe", "", ""},
		{"gate", "", ""},
	} {
		t.Run(tc.mode+"/"+tc.want, func(t *testing.T) {
			objs := splitDocs(t, renderValues(t, etcdBase+"readiness:\n  mode: "+tc.mode+"\n"+tc.extra))
			pdbs := find(objs, "PodDisruptionBudget")
			if tc.want == "" {
				if len(pdbs) != 0 {
					t.Fatalf("a budget in mode %s would stall drains: %v", tc.mode, pdbs[0].Object)
				}
				return
			}
			if len(pdbs) != 1 {
				t.Fatalf("want one PodDisruptionBudget, got %d", len(pdbs))
			}
			var pdb policyv1.PodDisruptionBudget
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(pdbs[0].Object, &pdb); err != nil {
				t.Fatal(err)
			}
			if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.String() != tc.want || pdb.Spec.MinAvailable != nil {
				t.Errorf("maxUnavailable %v minAvailable %v, want maxUnavailable %s", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable, tc.want)
			}
			if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
				t.Errorf("unhealthyPodEvictionPolicy %v", p)
			}
			d := deployment(t, etcdBase+"readiness:\n  mode: "+tc.mode+"\n"+tc.extra)
			if !mapsEqual(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
				t.Errorf("budget selects %v, the Deployment %v", pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestPodSchedulingValues(t *testing.T) {
	d := deployment(t, etcdBase+`example:
  enabled: true
  podLabels: {team: payments}
  podAnnotations: {example.com/owner: payments}
  nodeSelector: {kubernetes.io/os: linux}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {app.kubernetes.io/name: leader-elector}}
  tolerations: [{key: dedicated, operator: Equal, value: elector, effect: NoSchedule}]
  topologySpreadConstraints:
    - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}
    - {maxSkew: 2, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {team: payments}}}
  priorityClassName: elector-high
sidecar:
  extraEnv: [{name: GODEBUG, value: "x509negativeserial=1"}]
`)
	spec := d.Spec.Template.Spec
	if d.Spec.Template.Labels["team"] != "payments" || d.Spec.Template.Annotations["example.com/owner"] != "payments" {
		t.Errorf("pod labels %v annotations %v", d.Spec.Template.Labels, d.Spec.Template.Annotations)
	}
	if spec.NodeSelector["kubernetes.io/os"] != "linux" || spec.PriorityClassName != "elector-high" {
		t.Errorf("nodeSelector %v priorityClassName %q", spec.NodeSelector, spec.PriorityClassName)
	}
	if spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil || len(spec.Tolerations) != 1 || spec.Tolerations[0].Value != "elector" {
		t.Errorf("affinity %+v tolerations %+v", spec.Affinity, spec.Tolerations)
	}
	tsc := spec.TopologySpreadConstraints
	if len(tsc) != 2 {
		t.Fatalf("topology spread constraints: %+v", tsc)
	}
	if tsc[0].LabelSelector == nil || !mapsEqual(tsc[0].LabelSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Errorf("an empty labelSelector is not filled with the pod selector: %+v", tsc[0].LabelSelector)
	}
	if tsc[1].LabelSelector == nil || tsc[1].LabelSelector.MatchLabels["team"] != "payments" || len(tsc[1].LabelSelector.MatchLabels) != 1 {
		t.Errorf("a given labelSelector was changed: %+v", tsc[1].LabelSelector)
	}
	side, _ := sidecarContainer(t, &corev1.Pod{Spec: spec})
	if !slices.ContainsFunc(side.Env, func(e corev1.EnvVar) bool { return e.Name == "GODEBUG" }) {
		t.Errorf("extraEnv missing: %v", side.Env)
	}
}

// TestHistoryFileExampleWorks: the values file's own --history-file example
// needs a writable volume on the read-only root filesystem; extraVolumes and
// extraVolumeMounts provide it (TestAgainstAPIServer runs the rendered
// sidecar with it, see ci/etcd-conventions-values.yaml).
func TestHistoryFileExampleWorks(t *testing.T) {
	d := deployment(t, etcdBase+`sidecar:
  extraArgs: ["--history-file=/var/lib/leader-elector/history.jsonl"]
  extraVolumes: [{name: leader-elector-data, emptyDir: {sizeLimit: 16Mi}}]
  extraVolumeMounts: [{name: leader-elector-data, mountPath: /var/lib/leader-elector}]
`)
	pod := &corev1.Pod{Spec: d.Spec.Template.Spec}
	side, _ := sidecarContainer(t, pod)
	if !slices.Contains(side.Args, "--history-file=/var/lib/leader-elector/history.jsonl") {
		t.Errorf("args %v", side.Args)
	}
	var mounted, declared bool
	for _, m := range side.VolumeMounts {
		mounted = mounted || (m.Name == "leader-elector-data" && m.MountPath == "/var/lib/leader-elector")
	}
	for _, v := range pod.Spec.Volumes {
		declared = declared || (v.Name == "leader-elector-data" && v.EmptyDir != nil)
	}
	if !mounted || !declared {
		t.Errorf("mounted %v declared %v: %+v %+v", mounted, declared, side.VolumeMounts, pod.Spec.Volumes)
	}
	checkTokenOnlyInSidecar(t, pod)
}

func TestPrometheusMonitors(t *testing.T) {
	objs := splitDocs(t, renderValues(t, etcdBase+`metrics:
  serviceMonitor: {enabled: true, interval: 30s, labels: {release: prometheus}}
  podMonitor: {enabled: true, scrapeTimeout: 5s}
`))
	sms, pms := find(objs, "ServiceMonitor"), find(objs, "PodMonitor")
	if len(sms) != 1 || len(pms) != 1 {
		t.Fatalf("ServiceMonitors %d, PodMonitors %d", len(sms), len(pms))
	}
	var metricsSvc *unstructured.Unstructured
	for _, s := range find(objs, "Service") {
		if strings.HasSuffix(s.GetName(), "-metrics") {
			metricsSvc = s
		}
	}
	if metricsSvc == nil {
		t.Fatal("no metrics Service")
	}
	var svc corev1.Service
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(metricsSvc.Object, &svc); err != nil {
		t.Fatal(err)
	}
	wantSelector := map[string]string{"leader-elector.io/election": "demo-leader-elector"}
	if !mapsEqual(svc.Spec.Selector, wantSelector) || svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("metrics Service: selector %v clusterIP %q publishNotReady %v", svc.Spec.Selector, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	}
	smSel, _, _ := unstructured.NestedStringMap(sms[0].Object, "spec", "selector", "matchLabels")
	for k, v := range smSel {
		if svc.Labels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s; the metrics Service has %v", k, v, svc.Labels)
		}
	}
	if sms[0].GetLabels()["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v", sms[0].GetLabels())
	}
	eps, _, _ := unstructured.NestedSlice(sms[0].Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != "elector-http" || eps[0].(map[string]any)["interval"] != "30s" {
		t.Errorf("ServiceMonitor endpoints %v", eps)
	}
	pmSel, _, _ := unstructured.NestedStringMap(pms[0].Object, "spec", "selector", "matchLabels")
	if !mapsEqual(pmSel, wantSelector) {
		t.Errorf("PodMonitor selects %v", pmSel)
	}
	// The sidecar's port is named as the monitors say.
	d := deployment(t, etcdBase)
	side, _ := sidecarContainer(t, &corev1.Pod{Spec: d.Spec.Template.Spec})
	if len(side.Ports) != 1 || side.Ports[0].Name != "elector-http" {
		t.Errorf("sidecar ports %v", side.Ports)
	}

	// Off by default: the CRDs may not exist in the cluster.
	objs = splitDocs(t, renderValues(t, etcdBase))
	if len(find(objs, "ServiceMonitor"))+len(find(objs, "PodMonitor")) != 0 {
		t.Error("monitors rendered by default")
	}
}

func TestKubeVersion(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "\nkubeVersion: \">=1.29.0-0\"\n") {
		t.Error("Chart.yaml does not require Kubernetes 1.29 (native sidecars)")
	}
	if _, err := helm(t, "template", releaseName, chartDir(t), "-f", writeValues(t, etcdBase), "--kube-version", "1.28.9"); err == nil || !strings.Contains(err.Error(), "kubeVersion") {
		t.Errorf("want helm to refuse Kubernetes 1.28, got %v", err)
	}
	// The admission policy needs 1.30: rendered there, not on 1.29.
	for v, want := range map[string]int{"1.29.4": 0, "1.30.0": 1, "1.37.2": 1} {
		out, err := helm(t, "template", releaseName, chartDir(t), "-f", writeValues(t, etcdBase), "--kube-version", v)
		if err != nil {
			t.Fatalf("kube %s: %v", v, err)
		}
		objs := splitDocs(t, out)
		if got := len(find(objs, "ValidatingAdmissionPolicy")); got != want {
			t.Errorf("kube %s: %d policies, want %d", v, got, want)
		}
		if got := len(find(objs, "ValidatingAdmissionPolicyBinding")); got != want {
			t.Errorf("kube %s: %d bindings, want %d", v, got, want)
		}
	}
	for _, values := range []string{"admissionPolicy:\n  enabled: false\n", "kube:\n  enabled: false\n"} {
		objs := splitDocs(t, renderValues(t, etcdBase+values))
		if len(find(objs, "ValidatingAdmissionPolicy")) != 0 {
			t.Errorf("policy rendered with %q", values)
		}
	}
}
