package injector

import (
	"fmt"
	"os"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Template is the sidecar the chart renders for each backend it was
// installed with (templates/injector-sidecar.yaml), read from a file. The
// container comes from the chart's "leader-elector.container" template, so
// an injected sidecar and one the chart puts into a pod template are built
// by the same code.
type Template struct {
	// DefaultBackend is used when a pod has no backend annotation.
	DefaultBackend string `json:"defaultBackend"`
	// GateConditionType is the readiness gate's condition type (the chart's
	// readiness.gateConditionType).
	GateConditionType string `json:"gateConditionType"`
	// Backends maps a backend name to its sidecar.
	Backends map[string]Sidecar `json:"backends"`
}

// Sidecar is one backend's sidecar as the chart renders it.
type Sidecar struct {
	// Kube reports whether the sidecar publishes leadership on its pod
	// (kube.enabled): the readiness modes label and gate need it.
	Kube bool `json:"kube"`
	// Containers holds exactly one container, named leader-elector, with
	// restartPolicy Always (the injector removes it when the cluster has no
	// native sidecars).
	Containers []corev1.Container `json:"containers"`
	// Volumes are the pod volumes its mounts need, e.g. its projected token.
	Volumes []corev1.Volume `json:"volumes,omitempty"`
}

// LoadTemplate reads and checks a template file.
func LoadTemplate(path string) (*Template, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTemplate(raw)
}

// ParseTemplate decodes a template (YAML or JSON) and checks its shape.
// Unknown fields are errors: a template from another chart version fails
// at start-up, not at a pod's admission.
func ParseTemplate(raw []byte) (*Template, error) {
	t := &Template{}
	if err := yaml.UnmarshalStrict(raw, t); err != nil {
		return nil, fmt.Errorf("sidecar template: %w", err)
	}
	if len(t.Backends) == 0 {
		return nil, fmt.Errorf("sidecar template: no backends (configure etcd.endpoints, redis.addrs or the kubernetes backend in the chart)")
	}
	if _, ok := t.Backends[t.DefaultBackend]; !ok {
		return nil, fmt.Errorf("sidecar template: default backend %q is not among %v", t.DefaultBackend, t.names())
	}
	for name, s := range t.Backends {
		if len(s.Containers) != 1 || s.Containers[0].Name != ContainerName {
			return nil, fmt.Errorf("sidecar template: backend %s: want exactly one container named %s", name, ContainerName)
		}
	}
	return t, nil
}

// names returns the backend names, sorted.
func (t *Template) names() []string {
	out := make([]string, 0, len(t.Backends))
	for n := range t.Backends {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// hasSidecar reports whether the pod already has a container named
// leader-elector, injected or written by hand.
func hasSidecar(pod *corev1.Pod) bool {
	is := func(c corev1.Container) bool { return c.Name == ContainerName }
	return slices.ContainsFunc(pod.Spec.InitContainers, is) || slices.ContainsFunc(pod.Spec.Containers, is)
}

// Inject adds the sidecar to pod as its annotations ask, exactly as the
// webhook does, and reports whether it changed the pod. A pod without the
// opt-in label, or that already has a container named leader-elector, is
// left alone (false, nil). A bad annotation is an *AnnotationError; a taken
// volume name is another error; the pod is unchanged on error.
func (t *Template) Inject(pod *corev1.Pod, native bool) (bool, error) {
	if pod.Labels[LabelInject] != "true" || hasSidecar(pod) {
		return false, nil
	}
	r, err := parseRequest(pod.Annotations, t)
	if err != nil {
		return false, err
	}
	if err := t.inject(pod, r, native); err != nil {
		return false, err
	}
	return true, nil
}

// inject adds the sidecar for r to pod. native puts it into initContainers
// with restartPolicy Always, else into containers. It changes nothing and
// returns an error when a volume name is taken.
func (t *Template) inject(pod *corev1.Pod, r request, native bool) error {
	sc := t.Backends[r.Backend]
	for _, v := range sc.Volumes {
		if slices.ContainsFunc(pod.Spec.Volumes, func(p corev1.Volume) bool { return p.Name == v.Name }) {
			return fmt.Errorf("the pod already has a volume named %s, which the sidecar needs", v.Name)
		}
	}
	c := *sc.Containers[0].DeepCopy()
	c.Args = podArgs(c.Args, r, t.GateConditionType)
	if native {
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
		// Last, so the sidecar starts once the pod's own init containers
		// are done: a pod still initialising does not campaign.
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, c)
	} else {
		c.RestartPolicy = nil
		pod.Spec.Containers = append(pod.Spec.Containers, c)
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, sc.Volumes...)
	if r.Readiness == "gate" && !slices.ContainsFunc(pod.Spec.ReadinessGates, func(g corev1.PodReadinessGate) bool {
		return string(g.ConditionType) == t.GateConditionType
	}) {
		pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: corev1.PodConditionType(t.GateConditionType)})
	}
	return nil
}

// podArgs rewrites the template's arguments for one pod: its election name
// and TTL replace the chart's, and --readiness-gate and --app-health-url are
// added when asked for (and dropped from the template otherwise).
func podArgs(args []string, r request, gate string) []string {
	out := make([]string, 0, len(args)+2)
	for _, a := range args {
		switch {
		case hasFlag(a, "--election"):
			out = append(out, "--election="+r.Election)
		case hasFlag(a, "--ttl") && r.TTL != "":
			out = append(out, "--ttl="+r.TTL)
		case hasFlag(a, "--readiness-gate"), hasFlag(a, "--app-health-url"):
		default:
			out = append(out, a)
		}
	}
	if r.Readiness == "gate" {
		out = append(out, "--readiness-gate="+gate)
	}
	if r.AppHealthURL != "" {
		out = append(out, "--app-health-url="+r.AppHealthURL)
	}
	return out
}

// hasFlag reports whether arg sets flag in the --flag=value form the chart
// renders.
func hasFlag(arg, flag string) bool {
	return len(arg) > len(flag) && arg[:len(flag)+1] == flag+"="
}
