package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// reconcile makes the pod match st, patching only what differs. A leader
// demotes stale leader labels on its peers before it labels itself, and sets
// its gate True only once its label is in place; a follower drops its gate
// before its label.
//
// A leader's own label and gate writes are fenced, because a leader frozen
// (SIGSTOP, a VM pause) with such a request still to send would send it on
// waking, after its successor had demoted it: each is conditional on the
// pod's resourceVersion as read before this process last confirmed that it
// leads, and a successor's demotion changes every peer's resourceVersion
// (demotePeers). The successor's term began after that confirmation, so its
// demotion either came first, and the stale request fails with a conflict,
// or came after, and took the label and the gate off again.
func (r *run) reconcile(ctx context.Context, st election.Status) error {
	pod, err := r.getPod(ctx)
	if err != nil {
		r.count(ctx, PublisherLabels)
		return err
	}
	r.pod.uid = pod.UID

	if !st.IsLeader {
		gateErr := r.syncGate(ctx, pod, false)
		_, labelErr := r.syncLabels(ctx, pod, st)
		return errors.Join(gateErr, labelErr)
	}
	// Peers find this pod by its election label: it goes on unfenced, before
	// this process confirms it leads, so a successor's list, made after its
	// own term began, includes this pod.
	if pod.Labels[r.opts.ElectionLabel] != st.Election {
		if pod, err = r.patchMeta(ctx, pod.Name, map[string]string{r.opts.ElectionLabel: st.Election}, nil, ""); err != nil {
			return err
		}
	}
	if err := r.demotePeers(ctx, st); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := r.leads(st)
		if err == nil {
			pod, err = r.syncLabels(ctx, pod, st)
		}
		if err == nil {
			if err = r.leads(st); err == nil {
				err = r.syncGate(ctx, pod, true)
			}
		}
		if !apierrors.IsConflict(err) || attempt == fencedAttempts {
			return err
		}
		// The pod changed since it was read: the kubelet writes its status
		// too. Read it again and confirm again.
		if pod, err = r.getPod(ctx); err != nil {
			return err
		}
	}
}

// fencedAttempts bounds the fenced writes of one reconcile: the kubelet may
// change the pod between our read and our write, which is no failure.
const fencedAttempts = 3

// fencing and fenced run the test hooks around a leader's fenced write.
func (r *run) fencing(what string, leading bool) {
	if leading && r.beforeFenced != nil {
		r.beforeFenced(what)
	}
}

func (r *run) fenced(what string, leading bool, err error) {
	if leading && r.afterFenced != nil {
		r.afterFenced(what, err)
	}
}

// leads confirms that the source still says this process leads the term of
// st (errSuperseded if not): Status re-checks the validity deadline, so a
// process that was frozen past it learns it here.
func (r *run) leads(st election.Status) error {
	if cur, _ := r.src.Status(); !cur.IsLeader || cur.FencingToken != st.FencingToken {
		return errSuperseded
	}
	return nil
}

func (r *run) getPod(ctx context.Context) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, r.requestTimeout)
	defer cancel()
	pod, err := r.client.CoreV1().Pods(r.opts.PodNamespace).Get(ctx, r.opts.PodName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("kube: reading own pod: %w", err)
	}
	return pod, nil
}

func (r *run) roleValue(leader bool) string {
	if leader {
		return r.opts.LeaderValue
	}
	return r.opts.FollowerValue
}

// syncLabels sets the role and election labels with a JSON merge patch when
// they differ, fenced on pod's resourceVersion when st leads (see
// reconcile). It returns the pod as it is after that: the patch's result,
// or pod.
func (r *run) syncLabels(ctx context.Context, pod *corev1.Pod, st election.Status) (*corev1.Pod, error) {
	want := map[string]string{
		r.opts.RoleLabel:     r.roleValue(st.IsLeader),
		r.opts.ElectionLabel: st.Election,
	}
	if hasLabels(pod, want) {
		return pod, nil
	}
	rv := ""
	if st.IsLeader {
		rv = pod.ResourceVersion // the fence: see reconcile
	}
	r.fencing("label", st.IsLeader)
	out, err := r.patchMeta(ctx, pod.Name, want, nil, rv)
	r.fenced("label", st.IsLeader, err)
	if err != nil {
		return nil, err
	}
	r.log.Debug("set role label", "role", want[r.opts.RoleLabel])
	return out, nil
}

func hasLabels(pod *corev1.Pod, want map[string]string) bool {
	for k, v := range want {
		if got, ok := pod.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// patchMeta sets labels and annotations of the named pod with a JSON merge
// patch and returns the pod as patched. With rv set, the patch is
// conditional on the pod's resourceVersion (as setCondition's).
func (r *run) patchMeta(ctx context.Context, name string, labels, annotations map[string]string, rv string) (*corev1.Pod, error) {
	meta := map[string]any{}
	if rv != "" {
		meta["resourceVersion"] = rv
	}
	if len(labels) > 0 {
		meta["labels"] = labels
	}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	patch, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return nil, fmt.Errorf("kube: encoding label patch: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.requestTimeout)
	defer cancel()
	out, err := r.client.CoreV1().Pods(r.opts.PodNamespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) && (rv == "" || !apierrors.IsConflict(err)) {
			r.count(ctx, PublisherLabels)
		}
		return nil, fmt.Errorf("kube: labelling pod %s: %w", name, err)
	}
	return out, nil
}

// SupersededAnnotation is set on every other pod of the election by a
// leader, to the fencing token of its term, before it labels itself or sets
// its gate: the write changes each peer's resourceVersion, on which a
// peer's own leader label and gate True are conditional (see reconcile).
const SupersededAnnotation = "leader-elector.io/superseded-by-term"

// demotePeers takes every sign of leadership off the other pods of the
// election: the leader label and, when a readiness gate is configured, a True
// gate condition. A leader that was cut off or frozen cannot take them off
// itself, so its successor does, before it labels itself or sets its own
// gate. Label and condition are checked separately: an earlier leader may
// have demoted a frozen pod's label while its condition still says True.
// Every peer is written once a term (SupersededAnnotation) and its label
// and condition judged from what that write returned, so a leader label or
// gate True that lands after the list is seen too. The writes are fenced
// like the leader's own (see reconcile): conditional on the peer's
// resourceVersion as read before this process confirmed it leads, so a
// process that froze while demoting and woke after its successor took over
// cannot demote the successor.
func (r *run) demotePeers(ctx context.Context, st election.Status) error {
	selector := labels.SelectorFromSet(labels.Set{r.opts.ElectionLabel: st.Election}).String()
	lctx, cancel := context.WithTimeout(ctx, r.requestTimeout)
	defer cancel()
	list, err := r.client.CoreV1().Pods(r.opts.PodNamespace).List(lctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		r.count(ctx, PublisherLabels)
		return fmt.Errorf("kube: listing peers: %w", err)
	}
	if err := r.leads(st); err != nil {
		return err
	}
	gate := corev1.PodConditionType(r.opts.ReadinessGate)
	var errs []error
	for i := range list.Items {
		peer := &list.Items[i]
		if peer.Name == r.opts.PodName {
			continue
		}
		if err := r.demote(ctx, st, peer, gate); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// demote takes the signs of leadership off one peer, as read before this
// process last confirmed it leads; on a conflict it reads the peer again
// and confirms again.
func (r *run) demote(ctx context.Context, st election.Status, peer *corev1.Pod, gate corev1.PodConditionType) error {
	token := strconv.FormatInt(st.FencingToken, 10)
	for attempt := 1; ; attempt++ {
		wasLeader := peer.Labels[r.opts.RoleLabel] == r.opts.LeaderValue
		var err error
		if wasLeader || peer.Annotations[SupersededAnnotation] != token {
			// The label goes to follower in the same write, whatever the
			// read said.
			var out *corev1.Pod
			r.fencing("demote", true)
			out, err = r.patchMeta(ctx, peer.Name,
				map[string]string{r.opts.RoleLabel: r.opts.FollowerValue},
				map[string]string{SupersededAnnotation: token}, peer.ResourceVersion)
			r.fenced("demote", true, err)
			if err == nil {
				if wasLeader {
					r.log.Info("demoted stale leader label", "peer", peer.Name)
				}
				peer = out
			}
		}
		if err == nil && gate != "" && conditionIs(peer, gate, corev1.ConditionTrue) {
			err = r.setCondition(ctx, peer.Name, corev1.ConditionFalse, "SupersededByNewLeader", peer.ResourceVersion)
			if err == nil {
				r.log.Info("demoted stale readiness condition", "peer", peer.Name, "condition", gate)
			}
		}
		if !apierrors.IsConflict(err) || attempt == fencedAttempts {
			return err
		}
		gctx, cancel := context.WithTimeout(ctx, r.requestTimeout)
		peer, err = r.client.CoreV1().Pods(r.opts.PodNamespace).Get(gctx, peer.Name, metav1.GetOptions{})
		cancel()
		if err != nil {
			return fmt.Errorf("kube: reading peer: %w", err)
		}
		if err := r.leads(st); err != nil {
			return err
		}
	}
}

func conditionIs(pod *corev1.Pod, typ corev1.PodConditionType, status corev1.ConditionStatus) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == typ {
			return c.Status == status
		}
	}
	return false
}

// syncGate sets this pod's readiness-gate condition when it differs.
func (r *run) syncGate(ctx context.Context, pod *corev1.Pod, leading bool) error {
	gate := corev1.PodConditionType(r.opts.ReadinessGate)
	if gate == "" {
		return nil
	}
	want, reason := corev1.ConditionFalse, "NotLeader"
	if leading {
		want, reason = corev1.ConditionTrue, "Leader"
	}
	if conditionIs(pod, gate, want) {
		return nil
	}
	rv := ""
	if leading {
		rv = pod.ResourceVersion // the fence: see reconcile
	}
	r.fencing("gate", leading)
	err := r.setCondition(ctx, pod.Name, want, reason, rv)
	r.fenced("gate", leading, err)
	if err != nil {
		return err
	}
	r.log.Debug("set readiness condition", "condition", gate, "status", want)
	return nil
}

// setCondition sets the readiness-gate condition of the named pod through the
// pods/status subresource. A strategic merge patch merges conditions by type,
// so conditions owned by the kubelet are left alone. With rv set, the patch
// carries it as metadata.resourceVersion, which the API server takes as a
// precondition: a pod changed since fails with a conflict.
func (r *run) setCondition(ctx context.Context, name string, status corev1.ConditionStatus, reason, rv string) error {
	gate := corev1.PodConditionType(r.opts.ReadinessGate)
	cond := map[string]any{
		"type":               gate,
		"status":             status,
		"reason":             reason,
		"lastTransitionTime": metav1.NewTime(time.Now()),
	}
	body := map[string]any{"status": map[string]any{"conditions": []any{cond}}}
	if rv != "" {
		body["metadata"] = map[string]any{"resourceVersion": rv}
	}
	patch, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("kube: encoding condition patch: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.requestTimeout)
	defer cancel()
	_, err = r.client.CoreV1().Pods(r.opts.PodNamespace).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		if !apierrors.IsNotFound(err) && (rv == "" || !apierrors.IsConflict(err)) {
			r.count(ctx, PublisherReadiness)
		}
		return fmt.Errorf("kube: setting condition %s=%s on pod %s: %w", gate, status, name, err)
	}
	return nil
}

// count records a failed update, unless the attempt was abandoned because
// the status changed or the publisher is stopping: that is no failure.
func (r *run) count(ctx context.Context, publisher string) {
	if ctx.Err() == nil {
		r.metrics.PublishError(publisher)
	}
}
