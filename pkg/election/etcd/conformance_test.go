package etcd_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/electiontest"
	"github.com/leader-elector/leader-elector/pkg/election/etcd"
)

// TestConformance runs the backend conformance suite on an embedded etcd
// reached through a proxy, which the suite's outage resets.
func TestConformance(t *testing.T) {
	cluster := etcdtest.Single(t)
	proxy := tcpproxy.Start(t, hostPort(t, cluster.ClientURLs()[0]))
	admin, err := clientv3.New(clientv3.Config{Endpoints: cluster.ClientURLs(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	electiontest.Run(t, electiontest.Harness{
		TTL: etcd.MinTTL,
		New: func(t *testing.T, p election.Params) election.Backend {
			b, err := etcd.New(etcd.Options{Endpoints: []string{proxy.Addr()}, Prefix: etcd.DefaultPrefix, DialTimeout: time.Second}, p, nil)
			if err != nil {
				t.Fatalf("etcd.New: %v", err)
			}
			return b
		},
		Outage: func(t *testing.T) func() {
			proxy.Reset()
			return proxy.Pass
		},
		Delete: func(t *testing.T, p election.Params) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			prefix := etcd.DefaultPrefix + p.Election + "/"
			resp, err := admin.Get(ctx, prefix, clientv3.WithPrefix())
			if err != nil {
				t.Fatalf("list %s: %v", prefix, err)
			}
			for _, kv := range resp.Kvs {
				if string(kv.Value) == p.Identity {
					if _, err := admin.Delete(ctx, string(kv.Key)); err != nil {
						t.Fatalf("delete %s: %v", kv.Key, err)
					}
				}
			}
		},
	})
}

// hostPort strips the scheme of a client URL.
func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse %q: %v", rawURL, err)
	}
	return u.Host
}
