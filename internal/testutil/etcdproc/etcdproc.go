// Package etcdproc runs etcd clusters as separate ./bin/etcd processes, for
// tests that must freeze a member (SIGSTOP: a stalled disk or a hung
// process keeps its connections open and answers nothing) or kill it,
// which an in-process member (internal/etcdembed) cannot model. The binary
// is built by `make test-deps`; a test fails when it is missing.
package etcdproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leader-elector/leader-elector/internal/freeport"
	"github.com/leader-elector/leader-elector/internal/testutil/repo"
)

const (
	// startAttempts bounds how often a cluster is started again on fresh
	// ports after another process took one of the ports picked for it.
	startAttempts = 3
	// readyTimeout bounds waiting for a started member to serve a
	// linearizable read (two loaded cores can make a cold start slow).
	readyTimeout = time.Minute
	// statusTimeout bounds one member's answer to a status request: a member
	// that takes longer is treated as not answering.
	statusTimeout = 500 * time.Millisecond
	// pollInterval is how often RaftLeader asks the members.
	pollInterval = 20 * time.Millisecond
)

// Cluster is a running set of etcd member processes on 127.0.0.1.
type Cluster struct {
	members []*Member
}

// Member is one etcd process. It can be frozen and continued, killed and
// restarted with the same data directory and ports.
type Member struct {
	name      string
	bin       string
	args      []string
	clientURL string
	admin     *clientv3.Client // talks to this member only

	mu     sync.Mutex
	cmd    *exec.Cmd // nil while stopped
	done   chan struct{}
	paused bool
	log    bytes.Buffer // stderr of every run
}

// Binary returns the path of ./bin/etcd, failing t when it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "etcd")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("etcdproc: %s is missing; run `make test-deps`: %v", bin, err)
	}
	return bin
}

// Start starts an n-member cluster and returns once every member serves a
// linearizable read. Every process is killed when the test ends; on failure
// the members' logs go to the test log.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := Binary(t)
	var lastErr error
	for range startAttempts {
		c, err := tryStart(t, bin, n)
		if err == nil {
			t.Cleanup(func() {
				if t.Failed() {
					for _, m := range c.members {
						t.Logf("log of etcd %s:\n%s", m.name, m.Log())
					}
				}
			})
			return c
		}
		lastErr = err
	}
	t.Fatalf("etcdproc: start %d members: %v", n, lastErr)
	return nil
}

func tryStart(t testing.TB, bin string, n int) (*Cluster, error) {
	ports, err := freeport.Ports(2 * n)
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	c := &Cluster{}
	peers := make([]string, n)
	for i := range n {
		peers[i] = fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1])
	}
	for i := range n {
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		m := &Member{
			name:      fmt.Sprintf("m%d", i),
			bin:       bin,
			clientURL: client,
			args: []string{
				"--name", fmt.Sprintf("m%d", i),
				"--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i)),
				"--listen-client-urls", client, "--advertise-client-urls", client,
				"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
				"--initial-cluster", strings.Join(peers, ","),
				"--initial-cluster-token", "etcdproc", "--initial-cluster-state", "new",
				// The data is thrown away with the test; fsync only costs time.
				"--unsafe-no-fsync", "--log-level", "warn",
			},
		}
		admin, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			c.close()
			return nil, err
		}
		m.admin = admin
		c.members = append(c.members, m)
	}
	t.Cleanup(c.close)
	for _, m := range c.members {
		if err := m.start(); err != nil {
			c.close()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, m := range c.members {
		if err := m.waitReady(ctx); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

// close kills every member and closes the admin clients. A frozen process
// dies of SIGKILL too.
func (c *Cluster) close() {
	for _, m := range c.members {
		m.Stop()
		if m.admin != nil {
			_ = m.admin.Close()
			m.admin = nil
		}
	}
}

// Len returns the number of members.
func (c *Cluster) Len() int { return len(c.members) }

// Member returns member i (0-based).
func (c *Cluster) Member(i int) *Member { return c.members[i] }

// ClientURLs returns every member's client URL, running or not.
func (c *Cluster) ClientURLs() []string {
	urls := make([]string, len(c.members))
	for i, m := range c.members {
		urls[i] = m.clientURL
	}
	return urls
}

// RaftLeader waits until a running, unfrozen member leads etcd's Raft group
// with every other running, unfrozen member agreeing, and returns its index.
func (c *Cluster) RaftLeader(ctx context.Context) (int, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if i, ok := c.raftLeader(ctx); ok {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("etcdproc: no raft leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Cluster) raftLeader(ctx context.Context) (int, bool) {
	leader := -1
	var lead uint64
	for i, m := range c.members {
		if !m.Running() || m.Paused() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, statusTimeout)
		st, err := m.admin.Status(sctx, m.clientURL)
		cancel()
		if err != nil || st.Leader == 0 || (lead != 0 && st.Leader != lead) {
			return -1, false
		}
		lead = st.Leader
		if st.Leader == st.Header.MemberId {
			leader = i
		}
	}
	return leader, leader >= 0
}

// Name returns the member's etcd name.
func (m *Member) Name() string { return m.name }

// ClientURL returns the member's client URL.
func (m *Member) ClientURL() string { return m.clientURL }

// Running reports whether the member's process is alive (frozen or not).
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// Paused reports whether the member is frozen.
func (m *Member) Paused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paused
}

// Log returns what the member's processes wrote to stderr.
func (m *Member) Log() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.log.String()
}

// Pause freezes the process with SIGSTOP: its sockets stay open and the
// kernel still accepts connections, but it answers nothing, as a member
// whose disk stalled.
func (m *Member) Pause() error { return m.signal(syscall.SIGSTOP, true) }

// Resume continues a frozen process (SIGCONT).
func (m *Member) Resume() error { return m.signal(syscall.SIGCONT, false) }

func (m *Member) signal(sig syscall.Signal, paused bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return fmt.Errorf("etcdproc: %s is not running", m.name)
	}
	if m.paused == paused {
		return nil
	}
	if err := m.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("etcdproc: signal %s: %w", m.name, err)
	}
	m.paused = paused
	return nil
}

// Stop kills the process (SIGKILL, frozen or not) and waits for it to
// exit, keeping its data directory and ports for Restart. Stopping a
// stopped member does nothing.
func (m *Member) Stop() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
	m.mu.Lock()
	m.cmd, m.paused = nil, false
	m.mu.Unlock()
}

// Restart starts a stopped member again with its data directory and ports
// and waits until it serves a linearizable read.
func (m *Member) Restart(ctx context.Context) error {
	if m.Running() {
		return fmt.Errorf("etcdproc: %s is running", m.name)
	}
	if err := m.start(); err != nil {
		return err
	}
	return m.waitReady(ctx)
}

func (m *Member) start() error {
	cmd := exec.Command(m.bin, m.args...)
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd.Stdout = &lockedWriter{m}
	cmd.Stderr = &lockedWriter{m}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdproc: start %s: %w", m.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	m.cmd, m.done, m.paused = cmd, done, false
	return nil
}

// lockedWriter appends to the member's log under its lock.
type lockedWriter struct{ m *Member }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	return w.m.log.Write(p)
}

// waitReady waits until the member answers a linearizable read through its
// own client URL, which needs a Raft leader. A process that exits meanwhile
// (its port was taken) is an error at once.
func (m *Member) waitReady(ctx context.Context) error {
	m.mu.Lock()
	done := m.done
	m.mu.Unlock()
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := m.admin.Get(rctx, "etcdproc-ready")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			m.mu.Lock()
			m.cmd = nil
			m.mu.Unlock()
			return fmt.Errorf("etcdproc: %s exited: %s", m.name, lastLines(m.Log(), 5))
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("etcdproc: %s not ready: %w", m.name, ctx.Err()), err)
		case <-time.After(pollInterval):
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
