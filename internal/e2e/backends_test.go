package e2e

import (
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
)

// backendArgs returns a sidecar's backend flags (election e2e, --ttl
// ttlFlag) followed by extra.
type backendArgs func(extra ...string) []string

// onBackends runs fn as subtests on one etcd member ("etcd"), one Redis
// ("redis") and, with redlock, Redlock over three Redis masters
// ("redlock"); backend is the name /status gives.
func onBackends(t *testing.T, redlock bool, fn func(t *testing.T, backend string, args backendArgs)) {
	t.Helper()
	t.Run("etcd", func(t *testing.T) {
		cluster := etcdtest.Single(t)
		fn(t, "etcd", func(extra ...string) []string { return etcdArgs(cluster.ClientURLs(), extra...) })
	})
	layouts := []int{1}
	if redlock {
		layouts = append(layouts, 3)
	}
	for _, n := range layouts {
		name := "redis"
		if n > 1 {
			name = "redlock"
		}
		t.Run(name, func(t *testing.T) {
			var addrs []string
			for _, s := range redistest.StartN(t, n) {
				addrs = append(addrs, s.Addr())
				skipRedisWarmUp(t, s.Addr())
			}
			fn(t, "redis", func(extra ...string) []string { return redisArgs(addrs, extra...) })
		})
	}
}

// skipRedisWarmUp records on a fresh server that it has known election
// e2e for long, so it grants at once instead of after one TTL (the warm-up
// after data loss has its own tests, e.g. TestRedisRestartedEmpty).
func skipRedisWarmUp(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	// The sidecar scopes the election by the pod's namespace ("default"
	// when unknown).
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "default"
	}
	k := "leader-elector:" + ns + "/e2e:since"
	if err := c.Set(t.Context(), k, 0, 0).Err(); err != nil {
		t.Fatalf("SET %s on %s: %v", k, addr, err)
	}
}
