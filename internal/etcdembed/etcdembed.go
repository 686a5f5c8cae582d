// Package etcdembed runs in-process etcd members on free loopback ports, for
// tests and the demo.
package etcdembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/leader-elector/leader-elector/internal/freeport"
)

const (
	// startAttempts bounds how often a cluster is started again with fresh
	// ports after another process took one of the ports picked for it.
	startAttempts = 5
	// startTimeout bounds start-up when the caller's context has no deadline.
	startTimeout = 30 * time.Second
	// pollInterval is how often RaftLeader looks at the members' Raft state.
	pollInterval = 10 * time.Millisecond
)

// Options configures StartCluster.
type Options struct {
	// Dir holds the members' data directories (Dir/member-N). Required; the
	// caller creates and removes it.
	Dir string
	// Members is the number of members; default 1.
	Members int
	// Logger receives etcd's error-level log entries; nil discards them.
	Logger *slog.Logger
}

// Cluster is a running set of in-process etcd members.
type Cluster struct {
	members []*Member
}

// Member is one etcd member. It can be stopped and restarted with the same
// data directory and ports.
type Member struct {
	index  int
	cfg    memberConfig
	logger *zap.Logger
	mute   atomic.Bool // silences the logger while the member stops
	mu     sync.Mutex
	etcd   *embed.Etcd // nil while stopped
}

type memberConfig struct {
	name           string
	dir            string
	clientURL      url.URL
	peerURL        url.URL
	initialCluster string
}

// StartCluster starts opts.Members members on free 127.0.0.1 ports and
// returns once every member serves client requests.
func StartCluster(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("etcdembed: Options.Dir is required")
	}
	n := opts.Members
	if n == 0 {
		n = 1
	}
	if n < 0 {
		return nil, fmt.Errorf("etcdembed: invalid member count %d", opts.Members)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	var lastErr error
	for range startAttempts {
		c, err := tryStart(ctx, opts.Dir, n, opts.Logger)
		if err == nil {
			return c, nil
		}
		lastErr = err
		// Only a port taken between picking and binding is worth a retry.
		if !isAddrInUse(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("etcdembed: start %d-member cluster: %w", n, lastErr)
}

// tryStart starts a cluster on freshly picked ports; on failure it stops
// whatever it started and removes the members' data directories.
func tryStart(ctx context.Context, dir string, n int, logger *slog.Logger) (*Cluster, error) {
	ports, err := freeport.Ports(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{members: make([]*Member, n)}
	peers := make([]string, n)
	for i := range n {
		m := &Member{index: i}
		m.logger = newZapLogger(logger, zapcore.ErrorLevel, &m.mute)
		m.cfg.name = fmt.Sprintf("member-%d", i)
		m.cfg.dir = filepath.Join(dir, m.cfg.name)
		m.cfg.clientURL = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[2*i])}
		m.cfg.peerURL = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])}
		peers[i] = m.cfg.name + "=" + m.cfg.peerURL.String()
		c.members[i] = m
	}
	for _, m := range c.members {
		m.cfg.initialCluster = strings.Join(peers, ",")
	}

	// Members of a new cluster look for each other while they start, so
	// they start side by side rather than one after another.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.members {
		wg.Go(func() { errs[i] = m.start() })
	}
	wg.Wait()
	err = errors.Join(errs...)
	if err == nil {
		for _, m := range c.members {
			if err = m.waitReady(ctx); err != nil {
				break
			}
		}
	}
	if err != nil {
		c.Close()
		for _, m := range c.members {
			_ = os.RemoveAll(m.cfg.dir)
		}
		return nil, err
	}
	return c, nil
}

// Len returns the number of members.
func (c *Cluster) Len() int { return len(c.members) }

// Member returns member i (0-based).
func (c *Cluster) Member(i int) *Member { return c.members[i] }

// ClientURLs returns every member's client URL, running or not.
func (c *Cluster) ClientURLs() []string {
	urls := make([]string, len(c.members))
	for i, m := range c.members {
		urls[i] = m.ClientURL()
	}
	return urls
}

// RaftLeader waits until a running member leads etcd's own Raft group, with
// every other running member agreeing, and returns its index.
func (c *Cluster) RaftLeader(ctx context.Context) (int, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if i, ok := c.raftLeader(); ok {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("etcdembed: no raft leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Cluster) raftLeader() (int, bool) {
	leader := -1
	var leaderID uint64
	var seen []uint64
	for i, m := range c.members {
		e := m.running()
		if e == nil {
			continue
		}
		lead := uint64(e.Server.Leader())
		if lead == 0 {
			return -1, false
		}
		seen = append(seen, lead)
		if lead == uint64(e.Server.MemberID()) {
			leader, leaderID = i, lead
		}
	}
	if leader < 0 {
		return -1, false
	}
	for _, id := range seen {
		if id != leaderID {
			return -1, false
		}
	}
	return leader, true
}

// Close stops every member. The data directories stay for the caller to
// remove.
func (c *Cluster) Close() {
	// A stopping Raft leader first hands leadership to a connected follower,
	// and waits seconds for it if that follower is stopping too. Stopping the
	// followers together and the leader last avoids the hand-over.
	leader, ok := c.raftLeader()
	var wg sync.WaitGroup
	for i, m := range c.members {
		if !ok || i != leader {
			wg.Go(m.Stop)
		}
	}
	wg.Wait()
	if ok {
		c.members[leader].Stop()
	}
}

// Name returns the member's etcd name.
func (m *Member) Name() string { return m.cfg.name }

// ClientURL returns the member's client URL.
func (m *Member) ClientURL() string { return m.cfg.clientURL.String() }

// Running reports whether the member is started.
func (m *Member) Running() bool { return m.running() != nil }

func (m *Member) running() *embed.Etcd {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd
}

// Stop stops the member, keeping its data directory and ports for Restart.
// Stopping a stopped member does nothing.
func (m *Member) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd == nil {
		return
	}
	m.mute.Store(true)
	m.etcd.Close()
	m.etcd = nil
}

// Restart starts a stopped member again with its data directory and ports,
// and waits until it serves client requests. Another process may hold one of
// its ports for a moment, so binding is retried until ctx ends.
func (m *Member) Restart(ctx context.Context) error {
	if m.Running() {
		return fmt.Errorf("etcdembed: %s is running", m.cfg.name)
	}
	for {
		err := m.start()
		if err == nil {
			break
		}
		if !isAddrInUse(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcdembed: restart %s: %w (last error: %w)", m.cfg.name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := m.waitReady(ctx); err != nil {
		m.Stop()
		return err
	}
	return nil
}

// start launches the member; it does not wait for it to be ready.
func (m *Member) start() error {
	cfg := embed.NewConfig()
	cfg.Name = m.cfg.name
	cfg.Dir = m.cfg.dir
	cfg.ListenClientUrls = []url.URL{m.cfg.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{m.cfg.clientURL}
	cfg.ListenPeerUrls = []url.URL{m.cfg.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{m.cfg.peerURL}
	cfg.InitialCluster = m.cfg.initialCluster
	cfg.InitialClusterToken = "etcdembed"
	// The data is thrown away with the process; fsync only costs time.
	cfg.UnsafeNoFsync = true
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(m.logger)
	m.mute.Store(false)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcdembed: start %s: %w", m.cfg.name, err)
	}
	m.mu.Lock()
	m.etcd = e
	m.mu.Unlock()
	return nil
}

// waitReady waits until the member has joined the cluster and answered a
// read through its own client URL.
func (m *Member) waitReady(ctx context.Context) error {
	e := m.running()
	if e == nil {
		return fmt.Errorf("etcdembed: %s is not running", m.cfg.name)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return fmt.Errorf("etcdembed: %s failed: %w", m.cfg.name, err)
	case <-ctx.Done():
		return fmt.Errorf("etcdembed: wait for %s: %w", m.cfg.name, ctx.Err())
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{m.ClientURL()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("etcdembed: client for %s: %w", m.cfg.name, err)
	}
	defer cli.Close()
	if _, err := cli.Get(ctx, "etcdembed-ready"); err != nil {
		return fmt.Errorf("etcdembed: read through %s: %w", m.cfg.name, err)
	}
	return nil
}

func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}
