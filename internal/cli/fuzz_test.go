package cli

import (
	"strings"
	"testing"
)

// FuzzParseConfig feeds the configuration parser arbitrary arguments (one
// per line) and environment (KEY=VALUE lines). It must never panic; a
// refusal is one line; the password from the environment is never echoed;
// and an accepted configuration parses the same way again and still
// validates. The seeds run as a regular test in every `go test`.
func FuzzParseConfig(f *testing.F) {
	const password = "fz-Pa55w0rd-never-printed"
	for _, seed := range []struct{ args, env string }{
		{"--election\ne\n--etcd-endpoints\n127.0.0.1:2379", ""},
		{"-election=e\n-etcd-endpoints=http://127.0.0.1:2379", "POD_NAMESPACE=prod"},
		{"--election\ne\n--etcd-endpoints\nhttp://u:p@127.0.0.1:2379", ""},
		{"--election\ne\n--etcd-endpoints\netcd:2379\n--etcd-username\nu", "LEADER_ELECTOR_ETCD_PASSWORD=" + password},
		{"--election\ne\n--etcd-endpoints\nhttp://etcd:2379\n--etcd-cacert\n/x", ""},
		{"--backend\nredis\n--election\ne\n--redis-addr\nlocalhost:1,127.0.0.1:1,[::1]:1", ""},
		{"--backend\nredis\n--election\ne\n--redis-addr\nredis:6379", "LEADER_ELECTOR_REDIS_PASSWORD=" + password},
		{"--election\ne\n--etcd-endpoints\n127.0.0.1:2379\n--http\n:99999\n--ttl\n9000000001s", ""},
		{"--election\ne\n--etcd-endpoints\n127.0.0.1:2379\n--etcd-prefix\n/a:b", "LEADER_ELECTOR_LEGACY_KEY_LAYOUT=true"},
		{"--election\ne\n--etcd-endpoints\n127.0.0.1:2379\n--pod-name\np\n--pod-namespace\nns", "LEADER_ELECTOR_TTL=soon"},
	} {
		f.Add(seed.args, seed.env)
	}
	f.Fuzz(func(t *testing.T, args, environ string) {
		vars := map[string]string{}
		for _, kv := range strings.Split(environ, "\n") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				vars[k] = v
			}
		}
		// The password variables always hold the password, so that an
		// echo of it would show.
		for _, k := range []string{"LEADER_ELECTOR_ETCD_PASSWORD", "LEADER_ELECTOR_REDIS_PASSWORD"} {
			if vars[k] == "" {
				vars[k] = password
			}
		}
		argv := strings.Split(args, "\n")
		cfg, err := parseConfig(argv, env(vars))
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("the refusal is more than one line: %q", msg)
			}
			if strings.Contains(msg, password) {
				t.Errorf("the refusal prints the password: %q", msg)
			}
			return
		}
		if err := cfg.validate(); err != nil {
			t.Errorf("an accepted configuration no longer validates: %v", err)
		}
		again, err := parseConfig(argv, env(vars))
		if err != nil {
			t.Fatalf("accepted once, refused the second time: %v", err)
		}
		if again.Etcd.ElectionPrefix(again.Election) != cfg.Etcd.ElectionPrefix(cfg.Election) ||
			again.Redis.ElectionKey(again.Election) != cfg.Redis.ElectionKey(cfg.Election) {
			t.Errorf("the same input gave two key layouts")
		}
	})
}
