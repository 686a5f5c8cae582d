package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// sidecarStatus is the part of GET /status (and of /watch events) we read.
type sidecarStatus struct {
	Name         string `json:"name"`
	Identity     string `json:"identity"`
	IsLeader     bool   `json:"is_leader"`
	FencingToken int64  `json:"fencing_token"`
	Ready        bool   `json:"ready"`
	State        string `json:"state"`
	Switchover   bool   `json:"switchover"`
}

// buildSidecar builds ./cmd/sidecar the way releases are built (static,
// stripped) into dir, and returns its path.
func buildSidecar(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "sidecar")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/sidecar")
	cmd.Dir = root
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/sidecar: %w\n%s", err, out)
	}
	return bin, nil
}

// sidecarProc is a running sidecar whose /watch stream is followed.
type sidecarProc struct {
	*proc
	URL string
}

// startSidecar runs the binary and waits until its HTTP API listens. If c is
// given, the process's /watch stream drives it: led when the process reports
// is_leader, waiting when it reports another leader.
func startSidecar(ctx context.Context, bin string, id string, args []string, c *contender) (*sidecarProc, error) {
	addr := make(chan string, 1)
	onLine := func(line string) {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "http api listening" {
			select {
			case addr <- rec.Addr:
			default:
			}
		}
	}
	// Info level: the listening line is needed, per-renewal debug lines
	// would only add cost to the measurements.
	full := append([]string{"--id", id, "--http", "127.0.0.1:0", "--log-format", "json", "--log-level", "info"}, args...)
	p, err := startProc(bin, full, onLine)
	if err != nil {
		return nil, err
	}
	s := &sidecarProc{proc: p}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case a := <-addr:
		s.URL = "http://" + a
	case <-p.done:
		return nil, fmt.Errorf("sidecar %s exited with %d before listening: %s", id, p.exit, p.output())
	case <-t.C:
		s.stop()
		return nil, fmt.Errorf("sidecar %s did not listen within 30s: %s", id, p.output())
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	if c != nil {
		go s.follow(ctx, c)
	}
	return s, nil
}

// follow reads the /watch stream and drives c until the process exits. The
// time of leading is when the event arrived here, so it includes the HTTP
// delivery, as an application watching the sidecar would see it.
func (s *sidecarProc) follow(ctx context.Context, c *contender) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/watch", nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		now := time.Now()
		var st sidecarStatus
		if json.Unmarshal([]byte(data), &st) != nil {
			continue
		}
		switch {
		case st.IsLeader:
			c.markLed(now)
		case st.Ready && st.Name != "" && st.Name != c.id:
			c.markWaiting()
		}
	}
}

// sidecarStarter starts sidecar processes with the flags args(election, id).
func sidecarStarter(bin string, args func(election, id string) []string) starter {
	return func(ctx context.Context, election, id string) (*contender, error) {
		c := newContender(id)
		p, err := startSidecar(ctx, bin, id, append([]string{"--election", election}, args(election, id)...), c)
		if err != nil {
			return nil, err
		}
		c.pid = p.Pid()
		c.stop = func(crash bool) error {
			if crash {
				return p.signal(syscall.SIGKILL)
			}
			return p.signal(syscall.SIGTERM)
		}
		go func() {
			<-p.done
			close(c.done)
		}()
		return c, nil
	}
}

// etcdQueued waits until the election has n keys: the leader's and those of
// the candidates waiting behind it.
func etcdQueued(cli *clientv3.Client, prefix string, n int64) queuedCheck {
	return func(ctx context.Context, election string) error {
		var last int64
		err := waitUntil(ctx, 2*time.Millisecond, func() bool {
			resp, err := cli.Get(ctx, prefix+election+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				return false
			}
			last = resp.Count
			return resp.Count == n
		})
		if err != nil {
			return fmt.Errorf("%d keys under %s%s/, want %d: %w", last, prefix, election, n, err)
		}
		return nil
	}
}

// redisQueued waits until the election's release channel has n subscribers
// (every candidate's observer plus the waiting candidate's campaign), so a
// release message reaches the waiting candidate.
func redisQueued(c *redis.Client, prefix string, n int64) queuedCheck {
	return func(ctx context.Context, election string) error {
		channel := prefix + election + ":events"
		var last int64
		err := waitUntil(ctx, 2*time.Millisecond, func() bool {
			m, err := c.PubSubNumSub(ctx, channel).Result()
			if err != nil {
				return false
			}
			last = m[channel]
			return last >= n
		})
		if err != nil {
			return fmt.Errorf("%d subscribers of %s, want %d: %w", last, channel, n, err)
		}
		return nil
	}
}
