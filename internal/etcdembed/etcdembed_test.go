package etcdembed_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leader-elector/leader-elector/internal/etcdembed"
	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
)

func TestMain(m *testing.M) {
	etcdtest.VerifyTestMain(m)
}

// client returns a client talking to the given endpoints only.
func client(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func ctxWithTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitValue polls a serializable (member-local) read until it returns want.
func waitValue(ctx context.Context, t *testing.T, cli *clientv3.Client, key, want string) {
	t.Helper()
	var last string
	for {
		resp, err := cli.Get(ctx, key, clientv3.WithSerializable())
		if err == nil && len(resp.Kvs) == 1 {
			last = string(resp.Kvs[0].Value)
			if last == want {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("key %q: got %q (err %v), want %q", key, last, err, want)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestSingleMember(t *testing.T) {
	c := etcdtest.Single(t)
	if got := c.Len(); got != 1 {
		t.Fatalf("members: got %d, want 1", got)
	}
	ctx := ctxWithTimeout(t, 10*time.Second)
	cli := client(t, c.ClientURLs()...)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: got %v, want k=v", resp.Kvs)
	}
	if i, err := c.RaftLeader(ctx); err != nil || i != 0 {
		t.Fatalf("raft leader: got %d, %v; want 0", i, err)
	}
}

func TestClusterReplicatesToEveryMember(t *testing.T) {
	c := etcdtest.Cluster(t, 3)
	ctx := ctxWithTimeout(t, 20*time.Second)
	urls := c.ClientURLs()
	if len(urls) != 3 {
		t.Fatalf("client URLs: got %v, want 3", urls)
	}
	if _, err := client(t, urls[0]).Put(ctx, "k", "replicated"); err != nil {
		t.Fatalf("put: %v", err)
	}
	for i, u := range urls {
		t.Run(fmt.Sprintf("member-%d", i), func(t *testing.T) {
			waitValue(ctx, t, client(t, u), "k", "replicated")
		})
	}
}

func TestStoppingRaftLeaderLeavesWorkingCluster(t *testing.T) {
	c := etcdtest.Cluster(t, 3)
	ctx := ctxWithTimeout(t, 30*time.Second)
	old, err := c.RaftLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Member(old).Stop()
	if c.Member(old).Running() {
		t.Fatalf("member %d still running after Stop", old)
	}
	next, err := c.RaftLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next == old {
		t.Fatalf("raft leader is still the stopped member %d", old)
	}
	var survivors []string
	for i := range c.Len() {
		if i != old {
			survivors = append(survivors, c.Member(i).ClientURL())
		}
	}
	cli := client(t, survivors...)
	if _, err := cli.Put(ctx, "after", "leader-stop"); err != nil {
		t.Fatalf("put after leader stop: %v", err)
	}
	for _, u := range survivors {
		waitValue(ctx, t, client(t, u), "after", "leader-stop")
	}
}

func TestRestartedMemberCatchesUp(t *testing.T) {
	c := etcdtest.Cluster(t, 3)
	ctx := ctxWithTimeout(t, 30*time.Second)
	m := c.Member(2)
	m.Stop()
	cli := client(t, c.Member(0).ClientURL(), c.Member(1).ClientURL())
	for i := range 20 {
		if _, err := cli.Put(ctx, "while-down", fmt.Sprint(i)); err != nil {
			t.Fatalf("put while member is down: %v", err)
		}
	}
	if err := m.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if !m.Running() {
		t.Fatal("member not running after Restart")
	}
	if err := m.Restart(ctx); err == nil {
		t.Fatal("Restart of a running member: got nil error")
	}
	waitValue(ctx, t, client(t, m.ClientURL()), "while-down", "19")
}

func TestStartClusterNeedsDir(t *testing.T) {
	if _, err := etcdembed.StartCluster(t.Context(), etcdembed.Options{}); err == nil {
		t.Fatal("got nil error for empty Dir")
	}
	if _, err := etcdembed.StartCluster(t.Context(), etcdembed.Options{Dir: t.TempDir(), Members: -1}); err == nil {
		t.Fatal("got nil error for negative member count")
	}
}
