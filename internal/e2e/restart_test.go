package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

// restartTTL is long, so that a takeover well under it can only come from
// the restarted sidecar releasing its predecessor's lease.
const restartTTL = 10 * time.Second

// The leader's sidecar is SIGKILLed and started again in the same "pod"
// (same --id, --pod-uid and --incarnation-file): the restarted process
// releases its predecessor's candidacy (on etcd: deletes its key and leaves
// the resigned marker), so the follower leads at once instead of after the
// TTL. Histories never overlap.
// Before Redis implemented election.Reclaimer, its restarted sidecar only
// warned, and the follower waited out the TTL.
func TestRestartedSidecarReleasesItsPredecessor(t *testing.T) {
	onBackends(t, false, restartReleases)
}

func restartReleases(t *testing.T, name string, backend backendArgs) {
	dir := t.TempDir() // stands in for each pod's emptyDir
	args := func(id string) []string {
		return backend("--ttl", restartTTL.String(),
			"--incarnation-file", filepath.Join(dir, id+".incarnation"), "--pod-uid", "uid-"+id)
	}
	a := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: args("a")})
	a.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	b := sidecartest.Start(t, bin, sidecartest.Options{ID: "b", Args: args("b")})
	b.WaitStatus("following a", generous, func(s sidecartest.Status) bool { return s.Ready && s.Name == "a" })

	// A second process with a's file (the same --id started twice by
	// mistake) refuses to start and touches nothing.
	ctx, cancel := context.WithTimeout(t.Context(), generous)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"--id", "a", "--http", "127.0.0.1:0"}, args("a")...)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 ||
		!strings.Contains(string(out), "--incarnation-file") || !strings.Contains(string(out), "another running process") {
		t.Fatalf("a second process with a's incarnation file: %v\n%s\nwant a failure naming --incarnation-file", err, out)
	}
	if st, err := a.Status(t.Context()); err != nil || !st.IsLeader {
		t.Fatalf("after the refused twin a reads %+v (%v), want still leading", st, err)
	}

	killed := time.Now()
	a.Signal(syscall.SIGKILL)
	a.Wait(generous)
	restarted := time.Now()
	a2 := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: args("a")})
	listening := time.Now()
	if name == "kubernetes" {
		// A Lease has no queue: b, watching, usually takes the released
		// Lease first, but the restarted a may; either way within
		// milliseconds, not a TTL.
		next, _ := agree(t, []*sidecartest.Process{b, a2})
		led := time.Now()
		t.Logf("kill → %s leads: %v (restart → listening %v); TTL %v", next.ID, led.Sub(killed), listening.Sub(restarted), restartTTL)
		if d := led.Sub(killed); d > restartTTL/2 {
			t.Errorf("%s led %v after a was killed, want well under the TTL %v: was the Lease released?", next.ID, d, restartTTL)
		}
		if !a2.Logged("released the previous process's candidacy") {
			t.Error("the restarted a did not log releasing its predecessor's candidacy")
		}
		assertNoOverlap(t, []*sidecartest.Process{a, b, a2})
		return
	}
	b.WaitStatus("leadership after a's restart", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	led := time.Now()
	t.Logf("kill → b leads: %v (restart → listening %v, listening → b leads %v); TTL %v",
		led.Sub(killed), listening.Sub(restarted), led.Sub(listening), restartTTL)
	if d := led.Sub(killed); d > restartTTL/2 {
		t.Errorf("b led %v after a was killed, want well under the TTL %v: was the lease released?", d, restartTTL)
	}
	if !a2.Logged("released the previous process's candidacy") {
		t.Error("the restarted a did not log releasing its predecessor's candidacy")
	}
	a2.WaitStatus("following b", generous, func(s sidecartest.Status) bool { return s.Ready && s.Name == "b" && !s.IsLeader })
	assertNoOverlap(t, []*sidecartest.Process{a, b, a2})
}

// A record written by another pod (a volume shared by mistake) is never
// acted on: the restarted process leaves that lease to expire.
func TestIncarnationOfAnotherPodIsLeftAlone(t *testing.T) {
	cluster := etcdtest.Single(t)
	file := filepath.Join(t.TempDir(), "shared.incarnation")
	args := func(uid string) []string {
		return etcdArgs(cluster.ClientURLs(), "--ttl", restartTTL.String(), "--incarnation-file", file, "--pod-uid", uid)
	}
	a := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: args("uid-1")})
	a.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	a.Signal(syscall.SIGKILL)
	a.Wait(generous)
	other := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: args("uid-2")})
	deadline := time.Now().Add(generous)
	for !other.Logged("--incarnation-file records another candidate; leaving its candidacy alone") {
		if time.Now().After(deadline) {
			t.Fatal("the process of another pod did not log leaving the record alone")
		}
		<-time.After(10 * time.Millisecond) // polling the log; nothing to wait on
	}
	if other.Logged("released the previous process's candidacy") {
		t.Error("a process of another pod released the record's candidacy")
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
}
