package kube_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/kube"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog starts its flush daemon when imported and never stops it.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

const election1 = "orders"

// source is an election.Source driven by the test. The API server in these
// tests is real; only the engine is replaced.
type source struct {
	mu      sync.Mutex
	st      election.Status
	changed chan struct{}
	version int // bumped by set
	read    int // the version the last Status call returned
}

func newSource(identity string) *source {
	return &source{
		st:      election.Status{Election: election1, Backend: "test", Identity: identity, TTL: 2 * time.Second},
		changed: make(chan struct{}),
	}
}

func (s *source) Status() (election.Status, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read = s.version
	return s.st, s.changed
}

// set changes the status and returns its version.
func (s *source) set(fn func(*election.Status)) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.st)
	s.st.Changed = time.Now()
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
	return s.version
}

func (s *source) lead(token int64) int {
	return s.set(func(st *election.Status) {
		st.IsLeader, st.Leader, st.FencingToken, st.Ready = true, st.Identity, token, true
	})
}

func (s *source) follow(leader string, token int64) int {
	return s.set(func(st *election.Status) {
		st.IsLeader, st.Leader, st.FencingToken, st.Ready = false, leader, token, true
	})
}

// seen reports whether Status has returned version v or later.
func (s *source) seen(v int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read >= v
}

// metrics counts PublishError calls.
type metrics struct{ errors atomic.Int64 }

func (m *metrics) PublishError(string) { m.errors.Add(1) }

func options(ns, pod string) kube.Options {
	o := kube.DefaultOptions()
	o.PodNamespace, o.PodName = ns, pod
	return o
}

func createPod(t *testing.T, client kubernetes.Interface, ns, name string, labels map[string]string, gates ...string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
	}
	for _, g := range gates {
		pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: corev1.PodConditionType(g)})
	}
	out, err := client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	return out
}

type running struct {
	stop func() // cancels Run and waits for it
}

// start runs a publisher until stop or the end of the test.
func start(t *testing.T, p *kube.Publisher, src election.Source) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Publish(ctx, src) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return within 30s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return &running{stop: stop}
}

func newPublisher(t *testing.T, opts kube.Options, client kubernetes.Interface, m kube.Metrics) *kube.Publisher {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := kube.New(opts, client, logger, m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testWriter sends log lines to t.Log, so they show only for failed tests.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(b))
	return len(b), nil
}

func podLabel(ctx context.Context, client kubernetes.Interface, ns, name, key string) (string, error) {
	pod, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	v, ok := pod.Labels[key]
	if !ok {
		return "", errors.New("label missing")
	}
	return v, nil
}

// waitLabel waits until the pod's label has the value.
func waitLabel(t *testing.T, client kubernetes.Interface, ns, pod, key, want string) {
	t.Helper()
	kubetest.Eventually(t, 20*time.Second, pod+" "+key+"="+want, func(ctx context.Context) bool {
		got, err := podLabel(ctx, client, ns, pod, key)
		return err == nil && got == want
	})
}

func condition(ctx context.Context, client kubernetes.Interface, ns, pod, typ string) corev1.ConditionStatus {
	p, err := client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	for _, c := range p.Status.Conditions {
		if string(c.Type) == typ {
			return c.Status
		}
	}
	return ""
}

func waitCondition(t *testing.T, client kubernetes.Interface, ns, pod, typ string, want corev1.ConditionStatus) {
	t.Helper()
	kubetest.Eventually(t, 20*time.Second, pod+" condition "+typ+"="+string(want), func(ctx context.Context) bool {
		return condition(ctx, client, ns, pod, typ) == want
	})
}

// setCondition sets a pod's status condition as another pod's sidecar would.
func setCondition(t *testing.T, client kubernetes.Interface, ns, pod, typ string, status corev1.ConditionStatus) {
	t.Helper()
	patch := []byte(`{"status":{"conditions":[{"type":"` + typ + `","status":"` + string(status) + `"}]}}`)
	if _, err := client.CoreV1().Pods(ns).Patch(t.Context(), pod, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("setting condition on %s: %v", pod, err)
	}
}
