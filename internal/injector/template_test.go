package injector_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/leader-elector/leader-elector/internal/injector"
)

func TestBadAnnotationsNameTheAnnotation(t *testing.T) {
	tmpl := chartTemplate(t)
	cases := []struct {
		name string
		ann  map[string]string
		key  string
	}{
		{"no election", map[string]string{}, injector.AnnotationElection},
		{"empty election", map[string]string{injector.AnnotationElection: ""}, injector.AnnotationElection},
		{"election with a slash", map[string]string{injector.AnnotationElection: "a/b"}, injector.AnnotationElection},
		{"unknown backend", map[string]string{injector.AnnotationElection: "e", injector.AnnotationBackend: "zookeeper"}, injector.AnnotationBackend},
		{"ttl not a duration", map[string]string{injector.AnnotationElection: "e", injector.AnnotationTTL: "ten"}, injector.AnnotationTTL},
		{"ttl fraction", map[string]string{injector.AnnotationElection: "e", injector.AnnotationTTL: "2500ms"}, injector.AnnotationTTL},
		{"ttl negative", map[string]string{injector.AnnotationElection: "e", injector.AnnotationTTL: "-5s"}, injector.AnnotationTTL},
		{"ttl too short for etcd", map[string]string{injector.AnnotationElection: "e", injector.AnnotationTTL: "1s"}, injector.AnnotationTTL},
		{"readiness unknown", map[string]string{injector.AnnotationElection: "e", injector.AnnotationReadiness: "always"}, injector.AnnotationReadiness},
		{"health url relative", map[string]string{injector.AnnotationElection: "e", injector.AnnotationAppHealthURL: "/healthz"}, injector.AnnotationAppHealthURL},
		{"health url scheme", map[string]string{injector.AnnotationElection: "e", injector.AnnotationAppHealthURL: "ftp://x/y"}, injector.AnnotationAppHealthURL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pod := appPod("p", optedIn(nil), c.ann)
			before := pod.DeepCopy()
			changed, err := tmpl.Inject(pod, true)
			var ae *injector.AnnotationError
			if !errors.As(err, &ae) || ae.Annotation != c.key || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("got %v; want an error naming %s", err, c.key)
			}
			if changed || !reflect.DeepEqual(pod, before) {
				t.Error("a rejected pod was changed")
			}
		})
	}
}

func TestInjectAddsTheSidecarAndNothingElse(t *testing.T) {
	tmpl := chartTemplate(t)
	pod := appPod("p", optedIn(nil), map[string]string{
		injector.AnnotationElection:     "orders",
		injector.AnnotationBackend:      "redis",
		injector.AnnotationTTL:          "15s",
		injector.AnnotationReadiness:    "gate",
		injector.AnnotationAppHealthURL: "http://127.0.0.1:8080/healthz",
	})
	before := pod.DeepCopy()
	changed, err := tmpl.Inject(pod, true)
	if err != nil || !changed {
		t.Fatalf("Inject: %v, %v", changed, err)
	}
	side, native := sidecarOf(pod)
	if side == nil || !native || side.RestartPolicy == nil || *side.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("want a native sidecar, got %+v", pod.Spec.InitContainers)
	}
	for flag, want := range map[string]string{
		"--election": "orders", "--backend": "redis", "--ttl": "15s",
		"--readiness-gate": "leader-elector.io/leader", "--app-health-url": "http://127.0.0.1:8080/healthz",
		"--redis-addr": "redis.cache.svc:6379", "--etcd-endpoints": "",
	} {
		if got := argValue(side, flag); got != want {
			t.Errorf("%s = %q, want %q (args %q)", flag, got, want, side.Args)
		}
	}
	if n := strings.Count(strings.Join(side.Args, " "), "--election="); n != 1 {
		t.Errorf("--election appears %d times", n)
	}
	if len(pod.Spec.ReadinessGates) != 1 || pod.Spec.ReadinessGates[0].ConditionType != "leader-elector.io/leader" {
		t.Errorf("readiness gates %+v", pod.Spec.ReadinessGates)
	}
	// The sidecar's projected token, and the emptyDir of its incarnation
	// file (a restarted sidecar container finds its predecessor's record).
	if len(pod.Spec.Volumes) != 2 || pod.Spec.Volumes[0].Projected == nil || pod.Spec.Volumes[1].EmptyDir == nil {
		t.Errorf("volumes %+v, want the sidecar's projected token and its state emptyDir", pod.Spec.Volumes)
	}
	if got := argValue(side, "--incarnation-file"); !strings.HasPrefix(got, "/") {
		t.Errorf("--incarnation-file = %q, want a path on the state volume", got)
	}
	// Everything but the additions is as it was.
	after := pod.DeepCopy()
	after.Spec.InitContainers, after.Spec.Volumes, after.Spec.ReadinessGates = nil, nil, nil
	if !reflect.DeepEqual(after, before) {
		t.Errorf("Inject changed more than it adds:\nbefore %+v\nafter  %+v", before, after)
	}
	if len(pod.Spec.Containers[0].VolumeMounts) != 0 {
		t.Error("the application container got a mount")
	}

	// Again: nothing changes.
	again := pod.DeepCopy()
	if changed, err := tmpl.Inject(again, true); err != nil || changed || !reflect.DeepEqual(again, pod) {
		t.Errorf("second Inject: changed %v, err %v", changed, err)
	}
}

func TestDefaultsAndClassicSidecar(t *testing.T) {
	tmpl := chartTemplate(t)
	pod := appPod("p", optedIn(nil), map[string]string{injector.AnnotationElection: "orders"})
	if _, err := tmpl.Inject(pod, false); err != nil {
		t.Fatal(err)
	}
	side, native := sidecarOf(pod)
	if side == nil || native || side.RestartPolicy != nil || len(pod.Spec.InitContainers) != 0 {
		t.Fatalf("want a classic sidecar in containers, got %+v", pod.Spec)
	}
	// The chart's defaults: its backend and TTL; no gate in readiness mode none.
	if argValue(side, "--backend") != "etcd" || argValue(side, "--ttl") != "10s" || argValue(side, "--readiness-gate") != "" || len(pod.Spec.ReadinessGates) != 0 {
		t.Errorf("args %q, gates %+v", side.Args, pod.Spec.ReadinessGates)
	}
}

func TestPodsNotOptedInAreUntouched(t *testing.T) {
	tmpl := chartTemplate(t)
	ann := map[string]string{injector.AnnotationElection: "orders"}
	for _, labels := range []map[string]string{nil, {"app": "x"}, {injector.LabelInject: "false"}, {injector.LabelInject: "True"}} {
		pod := appPod("p", labels, ann)
		before := pod.DeepCopy()
		if changed, err := tmpl.Inject(pod, true); err != nil || changed || !reflect.DeepEqual(pod, before) {
			t.Errorf("labels %v: changed %v, err %v", labels, changed, err)
		}
	}
	// A hand-written sidecar is left alone too, even with bad annotations.
	pod := appPod("p", optedIn(nil), map[string]string{injector.AnnotationTTL: "bad"})
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: injector.ContainerName, Image: "mine"})
	if changed, err := tmpl.Inject(pod, true); err != nil || changed {
		t.Errorf("pod with its own sidecar: changed %v, err %v", changed, err)
	}
}

func TestTakenVolumeNameRejects(t *testing.T) {
	tmpl := chartTemplate(t)
	pod := appPod("p", optedIn(nil), map[string]string{injector.AnnotationElection: "orders"})
	pod.Spec.Volumes = []corev1.Volume{{Name: "leader-elector-kube-api-access"}}
	before := pod.DeepCopy()
	if _, err := tmpl.Inject(pod, true); err == nil || !strings.Contains(err.Error(), "leader-elector-kube-api-access") {
		t.Errorf("got %v, want an error naming the volume", err)
	}
	if !reflect.DeepEqual(pod, before) {
		t.Error("the pod changed")
	}
}

func TestParseTemplateRejectsBadTemplates(t *testing.T) {
	for name, raw := range map[string]string{
		"empty":           "",
		"unknown field":   "defaultBackend: etcd\nbackends: {etcd: {containers: [{name: leader-elector}]}}\nextra: 1\n",
		"default missing": "defaultBackend: redis\nbackends: {etcd: {containers: [{name: leader-elector}]}}\n",
		"wrong container": "defaultBackend: etcd\nbackends: {etcd: {containers: [{name: app}]}}\n",
		"two containers":  "defaultBackend: etcd\nbackends: {etcd: {containers: [{name: leader-elector}, {name: leader-elector}]}}\n",
		"no backends":     "defaultBackend: etcd\n",
	} {
		if _, err := injector.ParseTemplate([]byte(raw)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzInject: whatever the annotations say, Inject either rejects the pod
// with an error naming an annotation and leaves it alone, or injects exactly
// one sidecar whose --election is the annotation's value.
func FuzzInject(f *testing.F) {
	f.Add("orders", "etcd", "10s", "gate", "http://127.0.0.1:8080/healthz")
	f.Add("", "", "", "", "")
	f.Add("a.b_c-d", "redis", "1s", "probe", "https://x")
	tmpl := chartTemplate(f)
	f.Fuzz(func(t *testing.T, election, backend, ttl, readiness, health string) {
		ann := map[string]string{injector.AnnotationElection: election}
		for k, v := range map[string]string{injector.AnnotationBackend: backend, injector.AnnotationTTL: ttl, injector.AnnotationReadiness: readiness, injector.AnnotationAppHealthURL: health} {
			if v != "" {
				ann[k] = v
			}
		}
		pod := appPod("p", optedIn(nil), ann)
		before := pod.DeepCopy()
		changed, err := tmpl.Inject(pod, true)
		if err != nil {
			var ae *injector.AnnotationError
			if !errors.As(err, &ae) || !strings.HasPrefix(ae.Annotation, "leader-elector.io/") || changed || !reflect.DeepEqual(pod, before) {
				t.Fatalf("error %v (changed %v)", err, changed)
			}
			return
		}
		side, _ := sidecarOf(pod)
		if !changed || side == nil || argValue(side, "--election") != election || len(pod.Spec.InitContainers) != 1 {
			t.Fatalf("changed %v, sidecar %+v", changed, side)
		}
	})
}

func TestKubernetesBackendNeedsALeaseName(t *testing.T) {
	tmpl := chartTemplate(t)
	// A template offering the kubernetes backend (its sidecar's shape does
	// not matter to this rule).
	tmpl.Backends["kubernetes"] = tmpl.Backends["etcd"]
	for election, ok := range map[string]bool{"orders": true, "orders.v2": true, "Orders": false, "orders_v2": false} {
		pod := appPod("p", optedIn(nil), map[string]string{injector.AnnotationElection: election, injector.AnnotationBackend: "kubernetes"})
		_, err := tmpl.Inject(pod, true)
		var ae *injector.AnnotationError
		if ok && err != nil {
			t.Errorf("%s: %v", election, err)
		}
		if !ok && (!errors.As(err, &ae) || ae.Annotation != injector.AnnotationElection) {
			t.Errorf("%s: got %v, want an error naming %s", election, err, injector.AnnotationElection)
		}
	}
}
