package etcd

import (
	"strings"
	"testing"
)

// TestNoElectionPrefixNestsAnother: with a Namespace, no election's key
// prefix lies under another's, whatever the valid prefixes, namespaces and
// names, and an unscoped (legacy) election on the same Prefix does not
// nest a scoped one either. Before, "/leader-elector/" with election "web"
// held every key of prefix "/leader-elector/web/", and its candidate saw
// that election's keys as predecessors.
func TestNoElectionPrefixNestsAnother(t *testing.T) {
	prefixes := []string{"/leader-elector/", "/leader-elector/web/", "/leader-elector/prod/", "/", "x/", "/a/b/"}
	namespaces := []string{"", "prod", "web", "prod-web", "a"}
	names := []string{"web", "prod", "web.prod", "a", "b", "prod-web", "x_y"}
	type election struct{ prefix, ns, name, keys string }
	var all []election
	for _, p := range prefixes {
		for _, ns := range namespaces {
			o := Options{Endpoints: []string{"127.0.0.1:2379"}, Prefix: p, Namespace: ns, DialTimeout: DefaultDialTimeout}
			if ns != "" {
				if err := o.Validate(); err != nil {
					t.Fatalf("%+v: %v", o, err)
				}
			}
			for _, n := range names {
				all = append(all, election{p, ns, n, o.ElectionPrefix(n)})
			}
		}
	}
	for _, a := range all {
		for _, b := range all {
			if a == b || !strings.HasPrefix(b.keys, a.keys) {
				continue
			}
			// Unscoped elections with different prefixes are the legacy
			// layout, which keeps the old rules (documented).
			if a.ns == "" && (b.ns == "" || a.prefix != b.prefix) {
				continue
			}
			t.Errorf("election %+v lies under %+v", b, a)
		}
	}
}

func TestLayoutRefusesNestingPrefixes(t *testing.T) {
	for _, tt := range []struct{ prefix, ns, want string }{
		{"/leader-elector", "prod", "must end with '/'"},
		{"/leader-elector/prod:web/", "prod", "must not contain ':'"},
		{"/leader-elector/", "Prod", `Namespace "Prod"`},
		{"/leader-elector/", "a:b", `Namespace "a:b"`},
	} {
		o := Options{Endpoints: []string{"127.0.0.1:2379"}, Prefix: tt.prefix, Namespace: tt.ns, DialTimeout: DefaultDialTimeout}
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("prefix %q namespace %q: %v, want %q", tt.prefix, tt.ns, err, tt.want)
		}
	}
}

func TestRedactUserinfo(t *testing.T) {
	for in, want := range map[string]string{
		"http://u:pw@h:2379":     "http://REDACTED@h:2379",
		"https://u:p@w@h:2379/x": "https://REDACTED@h:2379/x",
		"u:pw@h:2379":            "REDACTED@h:2379",
		"http://h:2379/a@b":      "",
		"h:2379":                 "",
	} {
		got, ok := redactUserinfo(in)
		if want == "" {
			if ok {
				t.Errorf("%q: redacted to %q, has no user info", in, got)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("%q: %q, %v, want %q", in, got, ok, want)
		}
	}
}
