package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Where a workload controller records its revision.
const (
	// RevisionAnnotation is set by the Deployment controller on each of its
	// ReplicaSets: the Deployment's revision that ReplicaSet's template
	// belongs to, an integer the controller increases with every new
	// template and also on a rollback (which gives the old ReplicaSet a new,
	// highest number). Source: k8s.io/kubernetes pkg/controller/deployment.
	RevisionAnnotation = "deployment.kubernetes.io/revision"
	// ControllerRevisionHashLabel is set by the StatefulSet and DaemonSet
	// controllers on their pods: for a StatefulSet the name of the pod's
	// ControllerRevision, for a DaemonSet that name without the
	// "<daemonset>-" prefix (apps/v1 ControllerRevisionHashLabelKey).
	ControllerRevisionHashLabel = appsv1.ControllerRevisionHashLabelKey
)

// ErrNoWorkloadRevision means the pod belongs to no workload that keeps
// revisions: a bare pod, or one whose controller is a Job, a bare
// ReplicaSet or a custom resource. Such a pod is never replaced by a rolling
// update of a newer template, so it has no generation to publish.
var ErrNoWorkloadRevision = errors.New("kube: the pod belongs to no workload that keeps revisions")

// WorkloadRevision is a pod's generation as its workload controller
// numbers it.
type WorkloadRevision struct {
	// Revision is at least 1 and increases with every new pod template of
	// the workload (and on a rollback).
	Revision int64
	// Source names where it was read, for logs: e.g.
	// "ReplicaSet web-5d9c annotation deployment.kubernetes.io/revision".
	Source string
}

// ReadWorkloadRevision reads the revision of the workload that controls pod
// namespace/name: for a pod of a Deployment, its ReplicaSet's
// deployment.kubernetes.io/revision annotation; for a pod of a StatefulSet
// or DaemonSet, the .revision of the ControllerRevision its
// controller-revision-hash label names. It needs get on pods, replicasets
// and controllerrevisions (apps) in the namespace.
//
// Errors: ErrNoWorkloadRevision (wrapped) when the pod has no such workload;
// the API error (errors.Is-compatible with apierrors' checks) when an object
// cannot be read; a plain error when the controller's record is malformed.
// Transient failures (the API server unreachable, 429, 5xx) are retried
// every 500 ms until ctx ends; every other error returns at once.
func ReadWorkloadRevision(ctx context.Context, client kubernetes.Interface, namespace, name string) (WorkloadRevision, error) {
	var (
		out     WorkloadRevision
		lastErr error
	)
	err := wait.PollUntilContextCancel(ctx, revisionRetry, true, func(ctx context.Context) (bool, error) {
		out, lastErr = readWorkloadRevision(ctx, client, namespace, name)
		if lastErr == nil {
			return true, nil
		}
		if !transient(lastErr) {
			return false, lastErr
		}
		return false, nil
	})
	if err != nil && lastErr != nil {
		// Name the last API failure rather than the context's deadline.
		return WorkloadRevision{}, lastErr
	}
	return out, err
}

// revisionRetry is the pause between tries after a transient failure.
const revisionRetry = 500 * time.Millisecond

// transient reports whether a failed read may succeed if tried again: the
// API server could not be reached or answered 429 or 5xx. Denials, missing
// objects and malformed records are permanent.
func transient(err error) bool {
	if errors.Is(err, ErrNoWorkloadRevision) || errors.As(err, new(malformedError)) {
		return false
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		code := st.Status().Code
		return code == http.StatusTooManyRequests || code >= http.StatusInternalServerError
	}
	return true // a transport error: refused, reset, timed out
}

// malformedError is a controller's record that cannot be read as a
// revision: permanent, not retried.
type malformedError struct{ msg string }

func (e malformedError) Error() string { return e.msg }

func malformed(format string, args ...any) error {
	return malformedError{fmt.Sprintf(format, args...)}
}

func readWorkloadRevision(ctx context.Context, client kubernetes.Interface, namespace, name string) (WorkloadRevision, error) {
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return WorkloadRevision{}, fmt.Errorf("reading pod %s/%s: %w", namespace, name, err)
	}
	owner := metav1.GetControllerOf(pod)
	if owner == nil {
		return WorkloadRevision{}, fmt.Errorf("pod %s has no controller: %w", name, ErrNoWorkloadRevision)
	}
	if gv := owner.APIVersion; gv != appsv1.SchemeGroupVersion.String() {
		return WorkloadRevision{}, fmt.Errorf("pod %s is controlled by %s %s (%s): %w", name, owner.Kind, owner.Name, gv, ErrNoWorkloadRevision)
	}
	switch owner.Kind {
	case "ReplicaSet":
		rs, err := client.AppsV1().ReplicaSets(namespace).Get(ctx, owner.Name, metav1.GetOptions{})
		if err != nil {
			return WorkloadRevision{}, fmt.Errorf("reading ReplicaSet %s of pod %s: %w", owner.Name, name, err)
		}
		if rs.UID != owner.UID {
			return WorkloadRevision{}, malformed("ReplicaSet %s was replaced since pod %s was created", owner.Name, name)
		}
		raw, ok := rs.Annotations[RevisionAnnotation]
		if !ok {
			if metav1.GetControllerOf(rs) == nil {
				return WorkloadRevision{}, fmt.Errorf("pod %s belongs to ReplicaSet %s, which no Deployment controls: %w", name, rs.Name, ErrNoWorkloadRevision)
			}
			return WorkloadRevision{}, malformed("ReplicaSet %s has no %s annotation", rs.Name, RevisionAnnotation)
		}
		rev, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || rev < 1 {
			return WorkloadRevision{}, malformed("ReplicaSet %s: annotation %s=%q is not a positive integer", rs.Name, RevisionAnnotation, raw)
		}
		return WorkloadRevision{Revision: rev, Source: "ReplicaSet " + rs.Name + " annotation " + RevisionAnnotation}, nil
	case "StatefulSet", "DaemonSet":
		hash := pod.Labels[ControllerRevisionHashLabel]
		if hash == "" {
			return WorkloadRevision{}, malformed("pod %s of %s %s has no %s label", name, owner.Kind, owner.Name, ControllerRevisionHashLabel)
		}
		crName := hash
		if owner.Kind == "DaemonSet" {
			crName = owner.Name + "-" + hash
		}
		cr, err := client.AppsV1().ControllerRevisions(namespace).Get(ctx, crName, metav1.GetOptions{})
		if err != nil {
			return WorkloadRevision{}, fmt.Errorf("reading ControllerRevision %s of pod %s: %w", crName, name, err)
		}
		if c := metav1.GetControllerOf(cr); c == nil || c.UID != owner.UID {
			return WorkloadRevision{}, malformed("ControllerRevision %s is not controlled by %s %s", crName, owner.Kind, owner.Name)
		}
		if cr.Revision < 1 {
			return WorkloadRevision{}, malformed("ControllerRevision %s has revision %d", crName, cr.Revision)
		}
		return WorkloadRevision{Revision: cr.Revision, Source: "ControllerRevision " + crName}, nil
	default:
		return WorkloadRevision{}, fmt.Errorf("pod %s is controlled by %s %s: %w", name, owner.Kind, owner.Name, ErrNoWorkloadRevision)
	}
}
