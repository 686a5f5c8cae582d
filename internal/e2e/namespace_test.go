package e2e

import (
	"strings"
	"testing"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

// namespaceBackends are the key-value backends whose elections the pod's
// namespace scopes, each with the key its start log must name for the
// election "e2e" in namespace "prod".
func namespaceBackends(t *testing.T) []struct {
	name     string
	args     []string
	prodKeys string
} {
	cluster := etcdtest.Single(t)
	srv := redistest.Start(t)
	return []struct {
		name     string
		args     []string
		prodKeys string
	}{
		{"etcd", etcdArgs(cluster.ClientURLs()), "/leader-elector/prod:e2e/"},
		{"redis", redisArgs([]string{srv.Addr()}), "leader-elector:prod/e2e"},
	}
}

// TestSameElectionInTwoNamespacesIsTwoElections: two namespaces that use
// one etcd or Redis and the same --election each get their own leader.
// Before elections were scoped by namespace, the two formed one election
// and the staging leader kept every production replica a follower.
func TestSameElectionInTwoNamespacesIsTwoElections(t *testing.T) {
	for _, be := range namespaceBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			groups := map[string][]*sidecartest.Process{}
			for _, ns := range []string{"prod", "staging"} {
				for _, id := range []string{ns + "-a", ns + "-b"} {
					groups[ns] = append(groups[ns], sidecartest.Start(t, bin, sidecartest.Options{
						ID: id, Args: be.args, Env: []string{"POD_NAMESPACE=" + ns}}))
				}
			}
			for ns, ps := range groups {
				leader, _ := agree(t, ps)
				if !strings.HasPrefix(leader.ID, ns+"-") {
					t.Errorf("namespace %s is led by %s", ns, leader.ID)
				}
			}
			if log := groups["prod"][0].Log(); !strings.Contains(log, `"keys":"`+be.prodKeys+`"`) {
				t.Errorf("the start log does not name the keys %s:\n%s", be.prodKeys, log)
			}
		})
	}
}

// TestLegacyKeyLayoutIsOneElectionAcrossNamespaces: --legacy-key-layout
// keeps the unscoped layout of earlier versions (for a rolling upgrade),
// so the same --election in two namespaces is one election again.
func TestLegacyKeyLayoutIsOneElectionAcrossNamespaces(t *testing.T) {
	for _, be := range namespaceBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			var ps []*sidecartest.Process
			for _, ns := range []string{"prod", "staging"} {
				ps = append(ps, sidecartest.Start(t, bin, sidecartest.Options{ID: ns,
					Args: append(be.args, "--legacy-key-layout"), Env: []string{"POD_NAMESPACE=" + ns}}))
			}
			agree(t, ps)
			want := strings.Replace(be.prodKeys, "prod:", "", 1)
			want = strings.Replace(want, "prod/", "", 1)
			if log := ps[0].Log(); !strings.Contains(log, `"keys":"`+want+`"`) {
				t.Errorf("the start log does not name the legacy keys %s:\n%s", want, log)
			}
		})
	}
}
