package bench

import (
	"strings"
	"testing"
	"time"
)

// The operations section has one table per measured backend, each with the
// rollout target checked, and names the backends that were skipped.
func TestOpsSectionPerBackend(t *testing.T) {
	s := Summary{N: 3, P50: 10 * time.Millisecond, P99: 20 * time.Millisecond, Max: 20 * time.Millisecond}
	r := &Results{Config: Config{TTL: 2 * time.Second}, OpsSkipped: []string{"Redis"}, Ops: []*OpsResult{
		{Backend: "etcd", Rollouts: []RolloutResult{{Order: "leader first", Without: 3, With: 1}},
			Switchover: s, RestartFromKill: s, RestartFromExec: s, RestartStartup: s},
		{Backend: "Kubernetes Lease", Rollouts: []RolloutResult{{Order: "leader first", Without: 3, With: 2}},
			Switchover: s, RestartFromKill: s, RestartFromExec: s, RestartStartup: s},
	}}
	var b strings.Builder
	if err := r.WriteOps(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"### etcd\n", "| leader first | 3 | 1 | 1 — met |",
		"### Kubernetes Lease\n", "| leader first | 3 | 2 | 1 — **missed** |",
		"Not measured (`/status` says `\"switchover\": false`): Redis.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "### etcd") > strings.Index(out, "### Kubernetes Lease") {
		t.Error("backends out of order")
	}
}
