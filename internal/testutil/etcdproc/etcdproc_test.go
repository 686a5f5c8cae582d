package etcdproc_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A frozen Raft leader is replaced by the other two, answers nothing while
// frozen, and rejoins when continued; a killed member restarts with its
// data.
func TestFreezeKillAndRestart(t *testing.T) {
	c := etcdproc.Start(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	raft, err := c.RaftLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	frozen := c.Member(raft)
	if err := frozen.Pause(); err != nil {
		t.Fatal(err)
	}
	if !frozen.Paused() || !frozen.Running() {
		t.Fatalf("after Pause: paused %v, running %v", frozen.Paused(), frozen.Running())
	}
	next, err := c.RaftLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next == raft {
		t.Fatalf("member %d still leads while frozen", raft)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{frozen.ClientURL()}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = cli.Get(rctx, "k", clientv3.WithSerializable())
	rcancel()
	if err == nil {
		t.Fatal("a frozen member answered a read")
	}
	if err := frozen.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("write through the continued member: %v", err)
	}

	killed := c.Member(next)
	killed.Stop()
	if killed.Running() {
		t.Fatal("a killed member reads as running")
	}
	if err := killed.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	kcli, err := clientv3.New(clientv3.Config{Endpoints: []string{killed.ClientURL()}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer kcli.Close()
	resp, err := kcli.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("read through the restarted member: %v, %v", resp, err)
	}
}
