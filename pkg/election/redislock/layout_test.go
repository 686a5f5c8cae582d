package redislock

import (
	"testing"
)

// TestElectionKeysNeverCollide: with a Namespace, every (prefix, namespace,
// election) has keys no other one has, and unscoped (legacy) elections on
// the same prefix share none with scoped ones. Before namespaces scoped
// the keys, one election name in two namespaces was one lock.
func TestElectionKeysNeverCollide(t *testing.T) {
	prefixes := []string{DefaultKeyPrefix, "leader-elector:prod:", "app:", "a:b:"}
	namespaces := []string{"", "prod", "token", "b", "a"}
	names := []string{"web", "prod", "token", "events", "since", "line", "next", "b", "a.b"}
	type election struct{ prefix, ns, name string }
	owner := map[string]election{}
	for _, p := range prefixes {
		for _, ns := range namespaces {
			o := Options{Addrs: []string{"127.0.0.1:6379"}, KeyPrefix: p, Namespace: ns}
			if err := o.Validate(); err != nil {
				t.Fatalf("%+v: %v", o, err)
			}
			for _, n := range names {
				id := election{p, ns, n}
				base := o.ElectionKey(n)
				k := newKeys(base)
				for _, k := range []string{k.lock, k.counter, k.events, k.since, k.line, k.next} {
					// Only legacy elections on different prefixes may
					// meet (the old rules, documented).
					if prev, ok := owner[k]; ok && !(prev.ns == "" && ns == "" && prev.prefix != p) {
						t.Errorf("key %q belongs to %+v and %+v", k, prev, id)
					}
					owner[k] = id
				}
			}
		}
	}
}
