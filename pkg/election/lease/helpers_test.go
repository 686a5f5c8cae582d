package lease_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/pkg/election/lease"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog starts its flush daemon when imported and never stops it.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

// testDuration is the lease duration of most tests: the shortest allowed,
// so failovers are quick.
const testDuration = lease.MinDuration

// fastClient returns a clientset whose rate limiter never delays the test's
// few requests.
func fastClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1000, 1000
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newLock returns a Lock on Lease name in ns as id.
func newLock(t *testing.T, cfg *rest.Config, ns, name, id string) *lease.Lock {
	t.Helper()
	return newLockFor(t, cfg, ns, name, id, testDuration)
}

// newLockFor is newLock with duration d.
func newLockFor(t *testing.T, cfg *rest.Config, ns, name, id string, d time.Duration) *lease.Lock {
	t.Helper()
	l, err := lease.New(lease.Config{
		Client:    fastClient(t, cfg).CoordinationV1(),
		Namespace: ns,
		Name:      name,
		Identity:  id,
		Duration:  d,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// getLease reads the Lease as an administrator.
func getLease(t *testing.T, env *kubetest.Env, ns, name string) *coordinationv1.Lease {
	t.Helper()
	l, err := env.Client.CoordinationV1().Leases(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// acquire runs Acquire in the background.
type acquire struct {
	done  chan struct{}
	term  *lease.Term
	err   error
	start time.Time
	end   time.Time
}

func startAcquire(ctx context.Context, l *lease.Lock) *acquire {
	a := &acquire{done: make(chan struct{}), start: time.Now()}
	go func() {
		defer close(a.done)
		a.term, a.err = l.Acquire(ctx)
		a.end = time.Now()
	}()
	return a
}

// wait waits for Acquire to return within timeout.
func (a *acquire) wait(t *testing.T, timeout time.Duration) (*lease.Term, error) {
	t.Helper()
	select {
	case <-a.done:
		return a.term, a.err
	case <-time.After(timeout):
		t.Fatalf("Acquire did not return within %v", timeout)
		return nil, nil
	}
}

// returned reports whether Acquire has returned.
func (a *acquire) returned() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// mustAcquire acquires the Lease; a first acquisition waits one lease
// duration (an absent Lease is waited out), up to 30 s in these tests.
func mustAcquire(t *testing.T, l *lease.Lock) *lease.Term {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	term, err := l.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return term
}

func isLost(err error) bool { return errors.Is(err, lease.ErrLost) }

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// removeEntries removes, as an administrator, every entry of identity id
// from the line of Lease name.
func removeEntries(t *testing.T, env *kubetest.Env, ns, name, id string) {
	t.Helper()
	leases := env.Client.CoordinationV1().Leases(ns)
	line, err := leases.Get(t.Context(), name+lease.LineSuffix, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	gone := map[string]any{}
	for k, v := range line.Annotations {
		var e struct {
			ID string `json:"id"`
		}
		if strings.HasPrefix(k, lease.CandidateKeyPrefix) && json.Unmarshal([]byte(v), &e) == nil && e.ID == id {
			gone[k] = nil
		}
	}
	if len(gone) == 0 {
		return
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": gone}})
	if _, err := leases.Patch(t.Context(), line.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("removing %s's entries from the line: %v", id, err)
	}
}

// lineEntries returns the line's entries of Lease name by nonce, as
// identity and generation.
func lineEntries(t *testing.T, env *kubetest.Env, ns, name string) map[string]struct {
	ID  string `json:"id"`
	Gen int64  `json:"gen"`
} {
	t.Helper()
	out := map[string]struct {
		ID  string `json:"id"`
		Gen int64  `json:"gen"`
	}{}
	line, err := env.Client.CoordinationV1().Leases(ns).Get(t.Context(), name+lease.LineSuffix, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range line.Annotations {
		if nonce, ok := strings.CutPrefix(k, lease.CandidateKeyPrefix); ok {
			e := out[nonce]
			if err := json.Unmarshal([]byte(v), &e); err != nil {
				t.Fatalf("entry %s=%s: %v", k, v, err)
			}
			out[nonce] = e
		}
	}
	return out
}
