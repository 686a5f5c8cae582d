package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

// opsRBAC is the RBAC the Lease backend needs for switchover, reclaim and
// generations (the election's Lease and its line): the one the chart ships,
// so these tests also show it is enough.
var opsRBAC = filepath.Join("manifests", "rbac-lease.yaml")

// A planned switchover on the Lease backend hands leadership to the named
// sidecar and to no other, in milliseconds, with increasing tokens.
func TestLeaseSwitchoverHandsOverToTheNamedSidecar(t *testing.T) {
	c := newLeaseClusterWith(t, opsRBAC)
	switchover(t, "kubernetes", c.backend(t))
}

// A leader's sidecar killed and restarted in its pod releases its
// predecessor's term at once on the Lease backend.
func TestLeaseRestartedSidecarReleasesItsPredecessor(t *testing.T) {
	c := newLeaseClusterWith(t, opsRBAC)
	restartReleases(t, "kubernetes", c.backend(t))
}

// Two sidecars started with the same --id in two pods (a mistake): when
// the one that does not lead is killed and restarted in its pod, its
// release touches only its own predecessor's place in line, never its
// twin's term.
func TestLeaseRestartedTwinNeverStealsFromTheOther(t *testing.T) {
	c := newLeaseClusterWith(t, opsRBAC)
	be := c.backend(t)
	dir := t.TempDir()
	args := func(pod string) []string {
		return be("--ttl", restartTTL.String(),
			"--incarnation-file", filepath.Join(dir, pod+".incarnation"), "--pod-uid", "uid-"+pod)
	}
	leader := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: args("pod-1")})
	first := leader.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	twin := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: args("pod-2")})
	inLine := func(s sidecartest.Status) bool { return s.Ready && !s.IsLeader && s.State == "campaigning" }
	twin.WaitStatus("waiting in line", generous, inLine)
	// Readiness can come before the candidacy is recorded: kill it only
	// once its file names its candidacy.
	waitRecorded(t, filepath.Join(dir, "pod-2.incarnation"))
	twin.Signal(syscall.SIGKILL)
	twin.Wait(generous)
	again := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: args("pod-2")})
	waitLogged(t, again, "released the previous process's candidacy")
	again.WaitStatus("waiting in line", generous, inLine)
	st, err := leader.Status(t.Context())
	if err != nil || !st.IsLeader || st.FencingToken != first.FencingToken {
		t.Fatalf("after the twin's restart the leader reads %+v (%v), want leading at token %d", st, err, first.FencingToken)
	}
	if n := len(leader.Intervals()); n != 1 {
		t.Errorf("the leader's term was interrupted: %d intervals", n)
	}
	if h, tr := c.holder(t); h != "a" || int64(tr) != first.FencingToken {
		t.Errorf("the Lease names %s at %d, want a at %d", h, tr, first.FencingToken)
	}
	assertNoOverlap(t, []*sidecartest.Process{leader, twin, again})
}

// waitRecorded waits until the incarnation file at path records a handle.
func waitRecorded(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(generous); ; {
		var r struct {
			Handle string `json:"handle"`
		}
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &r) == nil && r.Handle != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s records no candidacy", path)
		}
		<-time.After(5 * time.Millisecond) // polling a file; nothing to wait on
	}
}

// A rolling update of 3 replicas on the Lease backend moves leadership once
// with generations, whatever order the old pods go in. Without them the
// count depends on which waiting candidate wins each release (no queue on
// a Lease): it is logged, between 1 and 3.
func TestLeaseRolloutMovesLeadershipOnce(t *testing.T) {
	for _, tc := range []struct {
		generations bool
		victims     [3]int
	}{
		{false, [3]int{0, 1, 2}},
		{false, [3]int{2, 0, 1}},
		{false, [3]int{2, 1, 0}},
		{true, [3]int{0, 1, 2}},
		{true, [3]int{2, 0, 1}},
		{true, [3]int{2, 1, 0}},
	} {
		t.Run(fmt.Sprintf("generations %v, victims %v", tc.generations, tc.victims), func(t *testing.T) {
			c := newLeaseClusterWith(t, opsRBAC)
			start := time.Now()
			got := rollout(t, c.backend(t), tc.generations, tc.victims)
			t.Logf("rollout took %v", time.Since(start))
			switch {
			case tc.generations && got != 1:
				t.Errorf("%d leadership changes with generations, want 1", got)
			case got < 1 || got > 3:
				t.Errorf("%d leadership changes, want 1 to 3", got)
			}
		})
	}
}
