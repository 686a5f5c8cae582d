package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
func (r *run) reconcile(ctx context.Context, st election.Status) error {
	pod, err := r.getPod(ctx)
	if err != nil {
		r.count(ctx, PublisherLabels)
		return err
	}
	r.pod.uid = pod.UID

	if !st.IsLeader {
		gateErr := r.syncGate(ctx, pod, false)
		return errors.Join(gateErr, r.syncLabels(ctx, pod, st))
	}
	if err := r.demotePeers(ctx, st.Election); err != nil {
		return err
	}
	if err := r.syncLabels(ctx, pod, st); err != nil {
		return err
	}
	return r.syncGate(ctx, pod, true)
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
// they differ.
func (r *run) syncLabels(ctx context.Context, pod *corev1.Pod, st election.Status) error {
	want := map[string]string{
		r.opts.RoleLabel:     r.roleValue(st.IsLeader),
		r.opts.ElectionLabel: st.Election,
	}
	if hasLabels(pod, want) {
		return nil
	}
	if err := r.patchLabels(ctx, pod.Name, want); err != nil {
		return err
	}
	r.log.Debug("set role label", "role", want[r.opts.RoleLabel])
	return nil
}

func hasLabels(pod *corev1.Pod, want map[string]string) bool {
	for k, v := range want {
		if got, ok := pod.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (r *run) patchLabels(ctx context.Context, name string, set map[string]string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": set}})
	if err != nil {
		return fmt.Errorf("kube: encoding label patch: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.requestTimeout)
	defer cancel()
	_, err = r.client.CoreV1().Pods(r.opts.PodNamespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			r.count(ctx, PublisherLabels)
		}
		return fmt.Errorf("kube: labelling pod %s: %w", name, err)
	}
	return nil
}

// demotePeers takes every sign of leadership off the other pods of the
// election: the leader label and, when a readiness gate is configured, a True
// gate condition. A leader that was cut off or frozen cannot take them off
// itself, so its successor does, before it labels itself or sets its own
// gate. Label and condition are checked separately: an earlier leader may
// have demoted a frozen pod's label while its condition still says True.
func (r *run) demotePeers(ctx context.Context, election string) error {
	selector := labels.SelectorFromSet(labels.Set{r.opts.ElectionLabel: election}).String()
	lctx, cancel := context.WithTimeout(ctx, r.requestTimeout)
	defer cancel()
	list, err := r.client.CoreV1().Pods(r.opts.PodNamespace).List(lctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		r.count(ctx, PublisherLabels)
		return fmt.Errorf("kube: listing peers: %w", err)
	}
	gate := corev1.PodConditionType(r.opts.ReadinessGate)
	var errs []error
	for i := range list.Items {
		peer := &list.Items[i]
		if peer.Name == r.opts.PodName {
			continue
		}
		if peer.Labels[r.opts.RoleLabel] == r.opts.LeaderValue {
			err := r.patchLabels(ctx, peer.Name, map[string]string{r.opts.RoleLabel: r.opts.FollowerValue})
			switch {
			case apierrors.IsNotFound(err):
				continue // gone already: nothing left to demote
			case err != nil:
				errs = append(errs, err)
			default:
				r.log.Info("demoted stale leader label", "peer", peer.Name)
			}
		}
		if gate != "" && conditionIs(peer, gate, corev1.ConditionTrue) {
			err := r.setCondition(ctx, peer.Name, corev1.ConditionFalse, "SupersededByNewLeader")
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				errs = append(errs, err)
			default:
				r.log.Info("demoted stale readiness condition", "peer", peer.Name, "condition", gate)
			}
		}
	}
	return errors.Join(errs...)
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
	if err := r.setCondition(ctx, pod.Name, want, reason); err != nil {
		return err
	}
	r.log.Debug("set readiness condition", "condition", gate, "status", want)
	return nil
}

// setCondition sets the readiness-gate condition of the named pod through the
// pods/status subresource. A strategic merge patch merges conditions by type,
// so conditions owned by the kubelet are left alone.
func (r *run) setCondition(ctx context.Context, name string, status corev1.ConditionStatus, reason string) error {
	gate := corev1.PodConditionType(r.opts.ReadinessGate)
	cond := map[string]any{
		"type":               gate,
		"status":             status,
		"reason":             reason,
		"lastTransitionTime": metav1.NewTime(time.Now()),
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []any{cond}}})
	if err != nil {
		return fmt.Errorf("kube: encoding condition patch: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.requestTimeout)
	defer cancel()
	_, err = r.client.CoreV1().Pods(r.opts.PodNamespace).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		if !apierrors.IsNotFound(err) {
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
