package kube

import (
	"context"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
)

// Event reasons.
const (
	ReasonBecameLeader = "BecameLeader"
	ReasonSteppedDown  = "SteppedDown"
)

// eventComponent is the event source and reporting controller.
const eventComponent = "leader-elector"

// events records core v1 events on the pod through client-go's recorder. The
// recorder writes asynchronously and retries on its own; the sink below adds
// a per-request timeout, counts failures, and lets shutdown wait for its last
// event.
type events struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	sink        *eventSink
	stop        context.CancelFunc
}

// newEvents starts a recorder. Its writes outlive the caller's context on
// purpose, so a SteppedDown event written during shutdown is not cut off;
// close stops it.
func newEvents(client kubernetes.Interface, timeout time.Duration, failed func()) *events {
	ctx, cancel := context.WithCancel(context.Background())
	sink := &eventSink{client: client, ctx: ctx, timeout: timeout, failed: failed}
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(sink)
	return &events{
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: eventComponent}),
		sink:        sink,
		stop:        cancel,
	}
}

// record queues an event on the pod. With wait set it returns a channel that
// is closed once the event has been written; otherwise nil.
func (e *events) record(pod podRef, reason, message string, wait bool) <-chan struct{} {
	var written <-chan struct{}
	if wait {
		written = e.sink.expect(message)
	}
	ref := &corev1.ObjectReference{
		Kind:       "Pod",
		APIVersion: "v1",
		Namespace:  pod.namespace,
		Name:       pod.name,
		UID:        pod.uid,
	}
	e.recorder.Event(ref, corev1.EventTypeNormal, reason, message)
	return written
}

func (e *events) close() {
	e.broadcaster.Shutdown()
	e.stop()
}

type podRef struct {
	namespace, name string
	uid             types.UID
}

// eventSink implements record.EventSink, whose methods take no context.
type eventSink struct {
	client  kubernetes.Interface
	ctx     context.Context // ends when the recorder is closed
	timeout time.Duration
	failed  func()

	mu      sync.Mutex
	waiting map[string]chan struct{} // by message
}

var _ record.EventSink = (*eventSink)(nil)

// expect returns a channel closed when an event with the message (or an
// aggregate of it, whose message ends with it) has been written.
func (s *eventSink) expect(message string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting == nil {
		s.waiting = map[string]chan struct{}{}
	}
	ch, ok := s.waiting[message]
	if !ok {
		ch = make(chan struct{})
		s.waiting[message] = ch
	}
	return ch
}

func (s *eventSink) done(ev *corev1.Event, err error) {
	if err != nil {
		if s.ctx.Err() == nil { // not cut off by close
			s.failed()
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for msg, ch := range s.waiting {
		if strings.HasSuffix(ev.Message, msg) {
			close(ch)
			delete(s.waiting, msg)
		}
	}
}

func (s *eventSink) Create(ev *corev1.Event) (*corev1.Event, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	out, err := s.client.CoreV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	s.done(ev, err)
	return out, err
}

func (s *eventSink) Update(ev *corev1.Event) (*corev1.Event, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	out, err := s.client.CoreV1().Events(ev.Namespace).Update(ctx, ev, metav1.UpdateOptions{})
	s.done(ev, err)
	return out, err
}

// Patch is used by the recorder to bump the count of a repeated event.
func (s *eventSink) Patch(ev *corev1.Event, data []byte) (*corev1.Event, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	out, err := s.client.CoreV1().Events(ev.Namespace).Patch(ctx, ev.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
	s.done(ev, err)
	return out, err
}
