package chartest

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// incarnationVolume checks, for a pod spec whose sidecar has
// --incarnation-file, that a sidecar container restarted by the kubelet in
// the same pod finds the file its predecessor wrote: the path lies on an
// emptyDir (which lives as long as the pod, across container restarts),
// mounted by the sidecar alone, and POD_UID comes from the downward API. It
// reports whether the sidecar has the flag.
func incarnationVolume(t *testing.T, pod *corev1.Pod) bool {
	t.Helper()
	side, _ := sidecarContainer(t, pod)
	var file string
	for _, a := range side.Args {
		if v, ok := strings.CutPrefix(a, "--incarnation-file="); ok {
			file = v
		}
	}
	uid := slices.ContainsFunc(side.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_UID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.uid"
	})
	if file == "" {
		if uid {
			t.Error("POD_UID is set without --incarnation-file")
		}
		return false
	}
	if !uid {
		t.Error("--incarnation-file without POD_UID from metadata.uid: a record from another pod could not be told apart")
	}
	var mount *corev1.VolumeMount
	for i, m := range side.VolumeMounts {
		if strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			mount = &side.VolumeMounts[i]
		}
	}
	if mount == nil {
		t.Fatalf("--incarnation-file=%s is on no volume: the root filesystem is read-only, and a restarted container starts from a fresh one", file)
	}
	if mount.ReadOnly || mount.SubPath != "" || mount.SubPathExpr != "" {
		t.Errorf("mount %+v: want the whole volume, writable", mount)
	}
	i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == mount.Name })
	if i < 0 {
		t.Fatalf("volume %s is not in the pod", mount.Name)
	}
	if pod.Spec.Volumes[i].EmptyDir == nil {
		t.Errorf("volume %s is %+v, want an emptyDir (one per pod, kept across container restarts)", mount.Name, pod.Spec.Volumes[i].VolumeSource)
	}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		if c.Name == side.Name {
			continue
		}
		if slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == mount.Name }) {
			t.Errorf("container %s mounts the incarnation volume %s", c.Name, mount.Name)
		}
	}
	return true
}

// TestIncarnationFileSurvivesSidecarRestart checks every rendered pod spec
// (each CI case and manifests/): with the chart's defaults the sidecar keeps
// its incarnation file on an emptyDir of its own, so a restarted sidecar
// container sees the same file; operations.incarnationFile false removes
// flag, variable, mount and volume.
func TestIncarnationFileSurvivesSidecarRestart(t *testing.T) {
	with := 0
	for name, objs := range renderedSets(t) {
		for key, pod := range podSpecs(t, objs) {
			if !hasSidecar(pod) {
				continue
			}
			t.Run(name+"/"+key, func(t *testing.T) {
				if incarnationVolume(t, pod) {
					with++
				} else {
					t.Error("no --incarnation-file with the chart's defaults")
				}
			})
		}
	}
	if with < 10 {
		t.Errorf("only %d rendered sidecars have an incarnation file", with)
	}
	t.Run("off", func(t *testing.T) {
		d := deployment(t, etcdBase+"operations:\n  incarnationFile: false\n")
		pod := &corev1.Pod{Spec: d.Spec.Template.Spec}
		if incarnationVolume(t, pod) {
			t.Error("--incarnation-file rendered with operations.incarnationFile false")
		}
		for _, v := range pod.Spec.Volumes {
			if v.EmptyDir != nil {
				t.Errorf("volume %s rendered with operations.incarnationFile false", v.Name)
			}
		}
	})
}

// TestGenerationValues: --generation=auto by default, with get on
// replicasets and controllerrevisions in the Role; a number as given, with
// no extra permission; off without the flag; auto is off without
// kube.enabled, since the sidecar needs its pod's name to read it.
func TestGenerationValues(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		want         string // the --generation value; "" for none
	}{
		{"default", "", "auto"},
		{"number", "operations:\n  generation: 7\n", "7"},
		{"off", "operations:\n  generation: \"off\"\n", ""},
		{"auto without publishing", "kube:\n  enabled: false\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := splitDocs(t, render(t, writeValues(t, etcdBase+tc.values)))
			var got []string
			for _, pod := range podSpecs(t, objs) {
				if !hasSidecar(pod) {
					continue
				}
				side, _ := sidecarContainer(t, pod)
				for _, a := range side.Args {
					if v, ok := strings.CutPrefix(a, "--generation="); ok {
						got = append(got, v)
					}
				}
			}
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("--generation=%v rendered, want none", got)
			case tc.want != "" && !slices.Equal(got, []string{tc.want}):
				t.Errorf("--generation %v, want [%s]", got, tc.want)
			}
			apps := false
			for _, r := range typed[rbacv1.Role](t, objs, "Role") {
				for _, rule := range r.Rules {
					if !slices.Contains(rule.APIGroups, "apps") {
						continue
					}
					apps = true
					slices.Sort(rule.Resources)
					if !slices.Equal(rule.Resources, []string{"controllerrevisions", "replicasets"}) || !slices.Equal(rule.Verbs, []string{"get"}) {
						t.Errorf("apps rule %+v: want get on replicasets and controllerrevisions only", rule)
					}
				}
			}
			if apps != (tc.want == "auto") {
				t.Errorf("Role grants apps reads: %v; want them exactly when --generation=auto", apps)
			}
		})
	}
}
