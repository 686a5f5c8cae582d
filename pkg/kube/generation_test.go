package kube_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/pkg/kube"
)

// workloads creates, by hand (envtest runs no controllers), the objects a
// workload controller would: owners, ReplicaSets or ControllerRevisions,
// and pods that name them.
type workloads struct {
	t      *testing.T
	client kubernetes.Interface
	ns     string
}

// ref is a controller ownerReference to obj.
func ref(kind string, obj metav1.Object) metav1.OwnerReference {
	gv := appsv1.SchemeGroupVersion.String()
	if kind == "Job" {
		gv = batchv1.SchemeGroupVersion.String()
	}
	return *metav1.NewControllerRef(obj, schema.FromAPIVersionAndKind(gv, kind))
}

func (w workloads) pod(name string, labels map[string]string, owner *metav1.OwnerReference) {
	w.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
	}
	if owner != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	if _, err := w.client.CoreV1().Pods(w.ns).Create(w.t.Context(), pod, metav1.CreateOptions{}); err != nil {
		w.t.Fatalf("creating pod %s: %v", name, err)
	}
}

var selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}

func podTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
	}
}

// replicaSet creates a ReplicaSet with the revision annotation (none when
// revision is empty), controlled by owner when given.
func (w workloads) replicaSet(name, revision string, owner *metav1.OwnerReference) *appsv1.ReplicaSet {
	w.t.Helper()
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       appsv1.ReplicaSetSpec{Selector: selector, Template: podTemplate()},
	}
	if revision != "" {
		rs.Annotations = map[string]string{kube.RevisionAnnotation: revision}
	}
	if owner != nil {
		rs.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	out, err := w.client.AppsV1().ReplicaSets(w.ns).Create(w.t.Context(), rs, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatalf("creating ReplicaSet %s: %v", name, err)
	}
	return out
}

func (w workloads) deployment(name string) *appsv1.Deployment {
	w.t.Helper()
	d, err := w.client.AppsV1().Deployments(w.ns).Create(w.t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       appsv1.DeploymentSpec{Selector: selector, Template: podTemplate()},
	}, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatalf("creating Deployment %s: %v", name, err)
	}
	return d
}

func (w workloads) statefulSet(name string) *appsv1.StatefulSet {
	w.t.Helper()
	s, err := w.client.AppsV1().StatefulSets(w.ns).Create(w.t.Context(), &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       appsv1.StatefulSetSpec{Selector: selector, Template: podTemplate()},
	}, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatalf("creating StatefulSet %s: %v", name, err)
	}
	return s
}

func (w workloads) daemonSet(name string) *appsv1.DaemonSet {
	w.t.Helper()
	d, err := w.client.AppsV1().DaemonSets(w.ns).Create(w.t.Context(), &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       appsv1.DaemonSetSpec{Selector: selector, Template: podTemplate()},
	}, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatalf("creating DaemonSet %s: %v", name, err)
	}
	return d
}

func (w workloads) controllerRevision(name string, revision int64, owner metav1.OwnerReference) {
	w.t.Helper()
	_, err := w.client.AppsV1().ControllerRevisions(w.ns).Create(w.t.Context(), &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: []metav1.OwnerReference{owner}},
		Data:       runtime.RawExtension{Raw: []byte(`{}`)},
		Revision:   revision,
	}, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatalf("creating ControllerRevision %s: %v", name, err)
	}
}

// TestReadWorkloadRevision reads the revision of each kind of workload from
// objects on a real API server, as the service account the shipped RBAC
// (manifests/rbac.yaml) grants, and checks the failures: a pod of no
// workload is ErrNoWorkloadRevision, a missing permission or a malformed
// record fails at once, an unreachable API server is retried until the
// context ends.
func TestReadWorkloadRevision(t *testing.T) {
	env := kubetest.Start(t)
	ns := env.Namespace(t)
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := kubernetes.NewForConfig(env.ServiceAccount(t, ns, "leader-elector", filepath.Join(root, "manifests", "rbac.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	w := workloads{t: t, client: env.Client, ns: ns}

	dep := w.deployment("web")
	depRef := ref("Deployment", dep)
	rsOld := w.replicaSet("web-old", "3", &depRef)
	rsNew := w.replicaSet("web-new", "4", &depRef)
	w.pod("web-old-a", nil, new(ref("ReplicaSet", rsOld)))
	w.pod("web-new-a", nil, new(ref("ReplicaSet", rsNew)))

	sts := w.statefulSet("db")
	stsRef := ref("StatefulSet", sts)
	w.controllerRevision("db-6c9f8d7b5", 2, stsRef)
	w.pod("db-0", map[string]string{kube.ControllerRevisionHashLabel: "db-6c9f8d7b5"}, &stsRef)

	ds := w.daemonSet("agent")
	dsRef := ref("DaemonSet", ds)
	w.controllerRevision("agent-5d8c8f9b6", 7, dsRef)
	w.pod("agent-x", map[string]string{kube.ControllerRevisionHashLabel: "5d8c8f9b6"}, &dsRef)

	tests := []struct {
		pod    string
		want   int64
		source string
	}{
		{"web-old-a", 3, "ReplicaSet web-old annotation deployment.kubernetes.io/revision"},
		{"web-new-a", 4, "ReplicaSet web-new annotation deployment.kubernetes.io/revision"},
		{"db-0", 2, "ControllerRevision db-6c9f8d7b5"},
		{"agent-x", 7, "ControllerRevision agent-5d8c8f9b6"},
	}
	for _, tt := range tests {
		t.Run(tt.pod, func(t *testing.T) {
			got, err := kube.ReadWorkloadRevision(t.Context(), shipped, ns, tt.pod)
			if err != nil {
				t.Fatal(err)
			}
			if got.Revision != tt.want || got.Source != tt.source {
				t.Errorf("got %+v, want revision %d from %s", got, tt.want, tt.source)
			}
		})
	}

	t.Run("no workload", func(t *testing.T) {
		bareRS := w.replicaSet("bare", "", nil)
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "once", UID: types.UID("job-uid")}}
		w.pod("bare-pod", nil, nil)
		w.pod("bare-rs-pod", nil, new(ref("ReplicaSet", bareRS)))
		w.pod("job-pod", nil, new(ref("Job", job)))
		for _, pod := range []string{"bare-pod", "bare-rs-pod", "job-pod"} {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			_, err := kube.ReadWorkloadRevision(ctx, shipped, ns, pod)
			if !errors.Is(err, kube.ErrNoWorkloadRevision) {
				t.Errorf("%s: got %v, want ErrNoWorkloadRevision", pod, err)
			}
			if ctx.Err() != nil {
				t.Errorf("%s: retried until the context ended", pod)
			}
			cancel()
		}
	})

	// Each fails at once (the context is still live when it returns).
	t.Run("permanent failures", func(t *testing.T) {
		badRS := w.replicaSet("web-bad", "three", &depRef)
		w.pod("web-bad-a", nil, new(ref("ReplicaSet", badRS)))
		unannotated := w.replicaSet("web-unannotated", "", &depRef)
		w.pod("web-unannotated-a", nil, new(ref("ReplicaSet", unannotated)))
		w.pod("db-1", nil, &stsRef)
		w.pod("db-2", map[string]string{kube.ControllerRevisionHashLabel: "db-gone"}, &stsRef)
		// A ControllerRevision of another StatefulSet with the name the label gives.
		other := w.statefulSet("other")
		w.controllerRevision("other-1", 9, ref("StatefulSet", other))
		w.pod("db-3", map[string]string{kube.ControllerRevisionHashLabel: "other-1"}, &stsRef)
		podsOnly, err := kubernetes.NewForConfig(env.ServiceAccount(t, ns, "pods-only", filepath.Join("testdata", "rbac-pods-only.yaml")))
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name   string
			client kubernetes.Interface
			pod    string
			check  func(error) bool
			want   string
		}{
			{"revision not a number", shipped, "web-bad-a", nil, `annotation deployment.kubernetes.io/revision="three" is not a positive integer`},
			{"revision missing", shipped, "web-unannotated-a", nil, "has no deployment.kubernetes.io/revision annotation"},
			{"hash label missing", shipped, "db-1", nil, "has no controller-revision-hash label"},
			{"controller revision missing", shipped, "db-2", apierrors.IsNotFound, "reading ControllerRevision db-gone of pod db-2"},
			{"controller revision of another workload", shipped, "db-3", nil, "is not controlled by StatefulSet db"},
			{"pod missing", shipped, "nobody", apierrors.IsNotFound, "reading pod " + ns + "/nobody"},
			{"replicasets forbidden", podsOnly, "web-new-a", apierrors.IsForbidden, "reading ReplicaSet web-new of pod web-new-a"},
			{"controllerrevisions forbidden", podsOnly, "db-0", apierrors.IsForbidden, "reading ControllerRevision db-6c9f8d7b5"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				_, err := kube.ReadWorkloadRevision(ctx, tt.client, ns, tt.pod)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, want an error containing %q", err, tt.want)
				}
				if tt.check != nil && !tt.check(err) {
					t.Errorf("%v is not of the expected API error kind", err)
				}
				if errors.Is(err, kube.ErrNoWorkloadRevision) {
					t.Errorf("%v reads as no workload: generations would silently be off", err)
				}
				if ctx.Err() != nil {
					t.Errorf("retried a permanent failure until the context ended")
				}
			})
		}
	})

	// An API server answering 503 is asked again until the context ends;
	// one that refuses (403) is asked once.
	t.Run("unavailable API server is retried", func(t *testing.T) {
		for _, tc := range []struct {
			code    int
			retried bool
		}{{http.StatusServiceUnavailable, true}, {http.StatusForbidden, false}} {
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.code)
				fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","code":%d,"reason":%q}`, tc.code, http.StatusText(tc.code))
			}))
			client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
			_, err = kube.ReadWorkloadRevision(ctx, client, ns, "web-new-a")
			ended := ctx.Err() != nil
			cancel()
			srv.Close()
			if err == nil {
				t.Errorf("%d: no error", tc.code)
			}
			if n := requests.Load(); tc.retried && (n < 2 || !ended) {
				t.Errorf("%d: %d requests, context ended %v: want tries until the context ends", tc.code, n, ended)
			} else if !tc.retried && (n != 1 || ended) {
				t.Errorf("%d: %d requests, context ended %v: want one try", tc.code, n, ended)
			}
		}
	})
}
