package etcd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/etcd"
)

// TestPermissionDeniedIsReported: an etcd user without permission on the
// election's prefix gets election.ErrDenied from the backend, and the
// engine shows "permission denied" in its status and stays not ready.
func TestPermissionDeniedIsReported(t *testing.T) {
	cluster := etcdtest.Single(t)
	admin := newClient(t, cluster.ClientURLs())
	ctx := t.Context()
	for _, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "elsewhere"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "elsewhere", "/other/", clientv3.GetPrefixRangeEnd("/other/"),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "app", "apppw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "app", "elsewhere"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("setting up auth: %v", err)
		}
	}
	p := election.Params{Election: "test", Identity: "a", TTL: 2 * time.Second}
	b, err := etcd.New(etcd.Options{Endpoints: cluster.ClientURLs(), Prefix: etcd.DefaultPrefix,
		// Authenticating checks a bcrypt hash, slow under the race detector.
		DialTimeout: 10 * time.Second, Username: "app", Password: "apppw"}, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx2, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.Observe(ctx2, func(election.Leader) {}); !errors.Is(err, election.ErrDenied) {
		t.Fatalf("Observe = %v, want election.ErrDenied", err)
	}

	e, err := election.New(election.Config{Election: p.Election, Identity: p.Identity, TTL: p.TTL, Backend: b,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(runCtx)
	}()
	defer func() { stop(); <-done }()
	deadline := time.After(20 * time.Second)
	for {
		st, changed := e.Status()
		if st.Problem == election.ProblemDenied {
			if st.Ready || st.IsLeader {
				t.Fatalf("status %+v: denied, yet ready or leading", st)
			}
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for the permission problem; status %+v", st)
		}
	}
}
