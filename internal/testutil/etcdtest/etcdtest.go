// Package etcdtest starts in-process etcd clusters for tests and stops them
// when the test ends.
package etcdtest

import (
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leader-elector/leader-elector/internal/etcdembed"
)

// Single starts a one-member cluster in a temporary directory.
func Single(t testing.TB) *etcdembed.Cluster {
	t.Helper()
	return Cluster(t, 1)
}

// Cluster starts an n-member cluster in a temporary directory. etcd's
// errors go to the test log.
func Cluster(t testing.TB, n int) *etcdembed.Cluster {
	t.Helper()
	w := &testWriter{t: t}
	// Registered first, so it runs after the cluster is closed.
	t.Cleanup(func() { w.done.Store(true) })
	c, err := etcdembed.StartCluster(t.Context(), etcdembed.Options{
		Dir:     t.TempDir(),
		Members: n,
		Logger:  slog.New(slog.NewTextHandler(w, nil)),
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// testWriter sends log lines to t.Log until the test is over; t.Log
// panics after that.
type testWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(string(p))
	}
	return len(p), nil
}

// leakWait bounds how long VerifyTestMain waits for goroutines to end. A
// stopped member's peer connections can linger until etcd's peer read
// timeout (5 s) closes them, because etcd never closes the idle connections
// of its peer round tripper.
const leakWait = 15 * time.Second

// VerifyTestMain runs the tests and then, like goleak.VerifyTestMain, fails
// if goroutines are left; unlike it, it gives etcd's lingering peer
// connections time to close first. Use it in packages that start clusters of
// more than one member.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(leakWait)
		for {
			// Find itself retries for a while before it reports a leak.
			err := goleak.Find(opts...)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
				code = 1
				break
			}
		}
	}
	os.Exit(code)
}
