package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/leader-elector/leader-elector/internal/freeport"
)

// startTimeout bounds how long a server may take to start.
const startTimeout = 2 * time.Minute

// proc is a child process whose output is kept (the last lines) for errors.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	exit int

	mu    sync.Mutex
	lines []string
	// onLine, if set, sees every output line (before done closes).
	onLine func(string)
}

const keepLines = 200

// startProc starts name with args; stdout and stderr are both read.
func startProc(name string, args []string, onLine func(string)) (*proc, error) {
	p := &proc{cmd: exec.Command(name, args...), done: make(chan struct{}), onLine: onLine}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", name, err)
	}
	go p.read(out)
	return p, nil
}

func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.lines = append(p.lines, line)
		if len(p.lines) > keepLines {
			p.lines = p.lines[len(p.lines)-keepLines:]
		}
		p.mu.Unlock()
		if p.onLine != nil {
			p.onLine(line)
		}
	}
	_ = p.cmd.Wait()
	p.exit = p.cmd.ProcessState.ExitCode()
	close(p.done)
}

// Pid returns the process ID.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

// output returns the last lines the process wrote.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig; a process that already exited is not an error.
func (p *proc) signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.Pid(), err)
	}
	return nil
}

// wait waits for the exit and returns the exit code (-1 when killed).
func (p *proc) wait(timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.exit, nil
	case <-t.C:
		return 0, fmt.Errorf("pid %d did not exit within %v", p.Pid(), timeout)
	}
}

// stop asks the process to exit with SIGTERM, and kills it if it has not
// within a few seconds.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.signal(syscall.SIGTERM)
	if _, err := p.wait(10 * time.Second); err != nil {
		_ = p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// waitUntil polls cond every interval until it returns true or ctx ends.
func waitUntil(ctx context.Context, interval time.Duration, cond func() bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// etcdServer is an etcd process (the repository's bin/etcd), so its CPU and
// memory can be measured apart from the candidates'.
type etcdServer struct {
	*proc
	URL string
	dir string
}

func startEtcd(ctx context.Context, bin, dir string) (*etcdServer, error) {
	var lastErr error
	for range 3 {
		ports, err := freeport.Ports(2)
		if err != nil {
			return nil, err
		}
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		data, err := os.MkdirTemp(dir, "etcd-")
		if err != nil {
			return nil, err
		}
		p, err := startProc(bin, []string{
			"--name", "bench", "--data-dir", data,
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", "bench=" + peer,
			"--unsafe-no-fsync", "--log-level", "error",
		}, nil)
		if err != nil {
			return nil, err
		}
		s := &etcdServer{proc: p, URL: client, dir: data}
		if lastErr = s.waitHealthy(ctx); lastErr == nil {
			return s, nil
		}
		s.close()
	}
	return nil, fmt.Errorf("start etcd: %w", lastErr)
}

func (s *etcdServer) waitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	err := waitUntil(ctx, 20*time.Millisecond, func() bool {
		if s.exited() {
			return true
		}
		resp, err := c.Get(s.URL + "/health")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), `"health":"true"`)
	})
	if s.exited() {
		return fmt.Errorf("etcd exited: %s", s.output())
	}
	if err != nil {
		return fmt.Errorf("etcd not healthy: %w: %s", err, s.output())
	}
	return nil
}

func (s *etcdServer) close() {
	s.stop()
	_ = os.RemoveAll(s.dir)
}

// redisServer is a redis-server process.
type redisServer struct {
	*proc
	Addr string
	dir  string
}

func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (make test-deps installs it): %w", err)
	}
	var lastErr error
	for range 3 {
		ports, err := freeport.Ports(1)
		if err != nil {
			return nil, err
		}
		data, err := os.MkdirTemp(dir, "redis-")
		if err != nil {
			return nil, err
		}
		p, err := startProc(bin, []string{"--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", data, "--logfile", ""}, nil)
		if err != nil {
			return nil, err
		}
		s := &redisServer{proc: p, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), dir: data}
		if lastErr = s.waitReady(ctx); lastErr == nil {
			return s, nil
		}
		s.close()
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

func (s *redisServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	err := waitUntil(ctx, 20*time.Millisecond, func() bool {
		return s.exited() || c.Ping(ctx).Err() == nil
	})
	if s.exited() {
		return fmt.Errorf("redis-server exited: %s", s.output())
	}
	if err != nil {
		return fmt.Errorf("redis-server not ready: %w: %s", err, s.output())
	}
	return nil
}

func (s *redisServer) close() {
	s.stop()
	_ = os.RemoveAll(s.dir)
}

// commandCalls returns the total number of commands Redis has run, apart
// from INFO itself, from INFO commandstats.
func commandCalls(ctx context.Context, c *redis.Client) (int64, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO commandstats: %w", err)
	}
	var total int64
	for line := range strings.SplitSeq(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" {
			continue
		}
		for field := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("INFO commandstats: %q: %w", line, err)
				}
				total += n
			}
		}
	}
	return total, nil
}

// kubeServer is an envtest control plane: the repository's bin/kube-apiserver
// and bin/etcd.
type kubeServer struct {
	env    *envtest.Environment
	Config *rest.Config
	Client kubernetes.Interface
}

func startKube(binDir string) (*kubeServer, error) {
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return nil, fmt.Errorf("%s is missing (make test-deps builds it): %w", b, err)
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    binDir,
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  time.Minute,
	}
	// Like the election's etcd, the apiserver's skips fsync, so publish
	// latency measures the publisher and the apiserver, not this disk.
	env.ControlPlane.Etcd = &envtest.Etcd{}
	env.ControlPlane.Etcd.Configure().Set("unsafe-no-fsync", "true")
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("start envtest control plane: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("kube client: %w", err)
	}
	return &kubeServer{env: env, Config: cfg, Client: client}, nil
}

func (k *kubeServer) close() error { return k.env.Stop() }
