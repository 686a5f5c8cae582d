package chaos

import (
	"context"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
)

// Readiness-gate trials (issue 11, item 5). A plan holding a gate fault
// runs its sidecars, on any backend, with readiness mode `gate`: each has a
// Pod object on the envtest API server (created by the trial, with the
// readiness gate in its spec: envtest runs no kubelet) and publishes the
// gate condition on it (--pod-name, --readiness-gate). The Lease backend's
// sidecars reach the API server through their proxies, the others
// directly. The trial watches the pods from before the first is created
// and records every change of a pod's gate condition in the API server's
// order (resourceVersion), which the checker reads:
//
//   - gate-freeze: SIGSTOP the leader's sidecar past its deadline (TTL +
//     1.5 s to TTL + 3 s), so a successor takes over while it is frozen;
//     SIGCONT at the heal.
//   - gate-kill: SIGKILL the leader's sidecar, restarted after 0–2 s.
//
// The rule (checkGate). In the API server's order of pod updates, at no
// point do two pods have the gate condition True. The frozen or killed
// leader's pod keeps its True for as long as nobody has taken over: nothing
// can take it off before a successor exists (the documented stale window);
// the successor must set it False before it sets its own True, so even that
// pod never overlaps with the successor's. And once one leader is agreed on
// after the heal, the pods must come to show that leader's True alone
// within gateSettleTimeout.
//
// The readiness-gate faults.
const (
	GateFreeze Kind = "gate-freeze" // in gate mode: SIGSTOP the leader past its deadline
	GateKill   Kind = "gate-kill"   // in gate mode: SIGKILL the leader
)

// gateCondition is the readiness gate's condition type in gate trials.
const gateCondition = "chaos.leader-elector.io/leader"

// gateSettleTimeout bounds how long after the agreed leader the pods may
// take to show its gate alone (publishers retry failed calls with backoff).
const gateSettleTimeout = 15 * time.Second

// Gate reports whether the plan runs its sidecars in readiness mode gate.
func (p Plan) Gate() bool {
	for _, f := range p.Faults() {
		if f.Kind == GateFreeze || f.Kind == GateKill {
			return true
		}
	}
	return false
}

// GateObs is one change of one pod's gate condition, as the watch saw it.
type GateObs struct {
	Mono int64  `json:"mono_ns"` // when the watch delivered it
	Pod  string `json:"pod"`
	True bool   `json:"true"`
	RV   string `json:"resource_version"`
}

// GateFault is a gate fault's target.
type GateFault struct {
	Mono int64
	Pod  string
}

// gateWatch creates the pods and records their gate conditions.
type gateWatch struct {
	client     kubernetes.Interface
	ns         string
	kubeconfig string // the API server directly, for non-Lease sidecars
	lease      bool   // the sidecars' --kubeconfig is already in their flags

	mu    sync.Mutex
	obs   []GateObs
	state map[string]bool
	// changed is closed and replaced on every observation.
	changed chan struct{}
}

// startKube starts the envtest API server once per trial.
func (tr *trial) startKube() {
	if tr.kube != nil {
		return
	}
	env := kubetest.Start(tr.t)
	tr.kube = env.Config
	tr.kubeClient = env.Client
	tr.kubeNS = env.Namespace(tr.t)
}

// startGate starts the API server if the backend did not, and the watch.
func (tr *trial) startGate() {
	t := tr.t
	tr.startKube()
	g := &gateWatch{client: tr.kubeClient, ns: tr.kubeNS, lease: tr.plan.Backend == BackendKubernetes,
		state: map[string]bool{}, changed: make(chan struct{})}
	if !g.lease {
		g.kubeconfig = kubetest.WriteKubeconfig(t, tr.kube)
	}
	ctx, cancel := context.WithCancel(context.Background())
	list, err := g.client.CoreV1().Pods(g.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		t.Fatalf("gate: listing pods: %v", err)
	}
	// A RetryWatcher resumes from the last resourceVersion it delivered
	// after a broken connection, so no update is missed.
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return g.client.CoreV1().Pods(g.ns).Watch(ctx, o)
		},
	})
	if err != nil {
		cancel()
		t.Fatalf("gate: watching pods: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if pod, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted {
				g.observe(pod)
			}
		}
	}()
	t.Cleanup(func() {
		w.Stop()
		cancel()
		<-done
	})
	tr.gate = g
}

func (g *gateWatch) observe(pod *corev1.Pod) {
	on := false
	for _, c := range pod.Status.Conditions {
		if c.Type == gateCondition {
			on = c.Status == corev1.ConditionTrue
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if was, seen := g.state[pod.Name]; seen && was == on {
		return
	}
	g.state[pod.Name] = on
	g.obs = append(g.obs, GateObs{Mono: monoNow(), Pod: pod.Name, True: on, RV: pod.ResourceVersion})
	close(g.changed)
	g.changed = make(chan struct{})
}

// args creates pod's Pod object, with the readiness gate in its spec, and
// returns the flags that make its sidecar publish on it.
func (g *gateWatch) args(tr *trial, pod string) []string {
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod},
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "app", Image: "busybox"}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gateCondition}},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := g.client.CoreV1().Pods(g.ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		tr.t.Fatalf("gate: creating pod %s: %v", pod, err)
	}
	args := []string{"--pod-name", pod, "--pod-namespace", g.ns, "--readiness-gate", gateCondition}
	if !g.lease {
		args = append(args, "--kubeconfig", g.kubeconfig)
	}
	return args
}

// only reports whether pod is the one pod whose gate is True.
func (g *gateWatch) only(pod string) (bool, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ok := g.state[pod]
	for p, on := range g.state {
		if on && p != pod {
			ok = false
		}
	}
	return ok, g.changed
}

func (g *gateWatch) record() []GateObs {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]GateObs(nil), g.obs...)
}

// gateTarget notes the pod a gate fault hits.
func (tr *trial) gateTarget(s *slot) {
	if tr.gate != nil {
		tr.rec.GateFaults = append(tr.rec.GateFaults, GateFault{Mono: monoNow(), Pod: s.pod})
	}
}

// settleGate waits until leader's pod alone shows the gate True.
func (tr *trial) settleGate(leader *slot) {
	if tr.gate == nil {
		return
	}
	tr.rec.GateSettled = -1
	if leader == nil {
		return
	}
	start := time.Now()
	timeout := time.NewTimer(gateSettleTimeout)
	defer timeout.Stop()
	for {
		ok, changed := tr.gate.only(leader.pod)
		if ok {
			tr.rec.GateSettled = time.Since(start)
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			return
		}
	}
}

// checkGate checks the gate rule (see gateKinds) on rec.Gate.
func checkGate(rec *Record, res *Result) {
	if !rec.GateMode {
		return
	}
	on := map[string]bool{}
	overlapping := false
	for _, o := range rec.Gate {
		on[o.Pod] = o.True
		var pods []string
		for p, t := range on {
			if t {
				pods = append(pods, p)
			}
		}
		if len(pods) > 1 && !overlapping {
			res.GateOverlaps++
			res.violate("gate: pods %v had condition %s True at once (after %s's update at resourceVersion %s, mono %d)",
				slices.Sorted(slices.Values(pods)), gateCondition, o.Pod, o.RV, o.Mono)
		}
		overlapping = len(pods) > 1
	}
	if rec.GateSettled < 0 {
		res.violate("gate: after the heal the pods never showed the agreed leader's condition True alone within %v", gateSettleTimeout)
	}
	// How long a successor took to set its own gate after each fault.
	for _, f := range rec.GateFaults {
		for _, o := range rec.Gate {
			if o.Mono > f.Mono && o.True && o.Pod != f.Pod {
				res.GateHandover = append(res.GateHandover, time.Duration(o.Mono-f.Mono))
				break
			}
		}
	}
}
