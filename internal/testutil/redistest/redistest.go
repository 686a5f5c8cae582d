// Package redistest runs real redis-server processes on free loopback ports
// for tests, and stops them when the test ends.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/freeport"
)

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 20 * time.Second

// Option changes how servers are started.
type Option func(*config)

type config struct {
	args []string
	acl  []string
}

// WithPassword starts the server with --requirepass, which protects the
// default user.
func WithPassword(password string) Option {
	return func(c *config) { c.args = append(c.args, "--requirepass", password) }
}

// WithACL writes the given lines (e.g. "user app on >pw ~app:* +get") to an
// ACL file and starts the server with --aclfile. Include a line for the
// "default" user if tests need it.
func WithACL(lines ...string) Option {
	return func(c *config) { c.acl = append(c.acl, lines...) }
}

// WithArgs appends raw redis-server arguments.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is one redis-server process. Its address stays the same across
// Restart, so clients reconnect to it.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	args []string
	port int

	mu   sync.Mutex
	proc *process
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its output is drained
	out  *output
}

// output keeps the server's log for error messages.
type output struct {
	mu    sync.Mutex
	lines []string
}

func (o *output) add(line string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lines = append(o.lines, line)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.lines, "\n")
}

// Start starts one server and registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return StartN(t, 1, opts...)[0]
}

// StartN starts n independent servers with the same options.
func StartN(t testing.TB, n int, opts ...Option) []*Server {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
		if _, statErr := os.Stat(bin); statErr != nil {
			t.Fatalf("redis-server not found (run `make test-deps`): %v", err)
		}
	}
	servers := make([]*Server, n)
	for i := range servers {
		s := &Server{t: t, bin: bin, dir: t.TempDir()}
		s.args = append(s.args, cfg.args...)
		if len(cfg.acl) > 0 {
			path := filepath.Join(s.dir, "users.acl")
			if err := os.WriteFile(path, []byte(strings.Join(cfg.acl, "\n")+"\n"), 0o600); err != nil {
				t.Fatalf("write ACL file: %v", err)
			}
			s.args = append(s.args, "--aclfile", path)
		}
		s.startOnFreePort()
		t.Cleanup(s.Stop)
		servers[i] = s
	}
	return servers
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Addrs returns the addresses of servers.
func Addrs(servers []*Server) []string {
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Stop kills the server (like a crash: no shutdown save) and waits for it to
// exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.cmd.Process.Kill()
	<-s.proc.done
	s.proc = nil
}

// Restart stops the server if it runs and starts it again, empty, on the same
// port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	// The port was ours a moment ago; another process grabbing it in between
	// is possible but rare, so a few attempts are enough.
	var err error
	for range 5 {
		if err = s.start(); err == nil {
			return
		}
	}
	s.t.Fatalf("restart redis-server on port %d: %v", s.port, err)
}

func (s *Server) startOnFreePort() {
	s.t.Helper()
	var err error
	for range 5 {
		var ports []int
		ports, err = freeport.Ports(1)
		if err == nil {
			s.port = ports[0]
		}
		if err != nil {
			continue
		}
		if err = s.start(); err == nil {
			return
		}
	}
	s.t.Fatalf("start redis-server: %v", err)
}

// start runs redis-server on s.port and returns once it answers PING.
func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", "",
	}
	args = append(args, s.args...)
	cmd := exec.Command(s.bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), out: &output{}}
	ready := make(chan struct{})
	go p.drain(stdout, ready)

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-ready:
	case <-p.done:
		return fmt.Errorf("redis-server exited before accepting connections: %s", p.out)
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("redis-server not ready after %s: %s", startTimeout, p.out)
	}
	if err := ping(s.Addr()); err != nil {
		_ = cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("redis-server logged ready but PING failed: %w", err)
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// drain copies the server's log, signals when it is ready, and reaps the
// process once its output ends.
func (p *process) drain(r io.Reader, ready chan<- struct{}) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	signalled := false
	for sc.Scan() {
		line := sc.Text()
		p.out.add(line)
		if !signalled && strings.Contains(line, "Ready to accept connections") {
			close(ready)
			signalled = true
		}
	}
	_ = p.cmd.Wait()
}

// ping sends an inline PING and accepts any reply: a server that requires a
// password answers -NOAUTH, which still proves it is serving.
func ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+") && !strings.HasPrefix(line, "-") {
		return errors.New("unexpected reply " + strconv.Quote(line))
	}
	return nil
}
