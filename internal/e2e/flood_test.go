package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/repo"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

// The documented bounds (docs/security.md) on a sidecar with the default
// HTTP limits, whatever the pod network throws at it: its anonymous memory
// (heap, stacks: what a flood can grow) and its whole resident set, which
// also counts the binary's pages. The chart's memory limit is 128 MiB.
// Without the limits this flood took the sidecar to 90 MiB anonymous,
// 133 MiB resident.
const (
	floodAnonBound = 32 << 20
	floodRSSBound  = 96 << 20
)

// Flood sizes: thousands of connections from many source addresses, so
// the per-client cap alone does not stop them.
const (
	floodWatchers = 2000 // GET /watch streams that are never read
	floodSlow     = 2000 // connections that send half a request header and stall
	floodSources  = 40   // attacking source IPs, 127.0.1.1 onwards
)

// buildPlain compiles the sidecar without the race detector, whose shadow
// memory would swamp what is being measured.
func buildPlain(t *testing.T) string {
	t.Helper()
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "sidecar")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/sidecar")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// memory reads a process's resident set and its anonymous part, in bytes.
func memory(pid int) (rss, anon int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "RssAnon:":
			anon = kb << 10
		}
	}
	return rss, anon, nil
}

// peakMemory samples a process's memory until stop is closed.
type peakMemory struct {
	mu        sync.Mutex
	rss, anon int64
	err       error
}

func (p *peakMemory) sample(pid int, stop <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		rss, anon, err := memory(pid)
		if err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		p.rss, p.anon = max(p.rss, rss), max(p.anon, anon)
		p.mu.Unlock()
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

func (p *peakMemory) get() (rss, anon int64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rss, p.anon, p.err
}

// flood opens n connections to addr from the attacking sources and writes
// payload on each; it returns them open. Refused connections are kept too:
// the attacker does not care.
func flood(t *testing.T, addr string, n int, payload string) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for i := range n {
		src := net.IPv4(127, 0, 1, byte(1+i%floodSources))
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
		c, err := d.DialContext(t.Context(), "tcp", addr)
		if err != nil {
			continue // the backlog overflowed: that costs the sidecar nothing
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte(payload))
		conns = append(conns, c)
	}
	return conns
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Thousands of never-read /watch streams and stalled half-requests from
// many sources: the sidecar's memory stays under the documented bound, its
// /leader keeps answering a client from another address, and the election
// goes on (a resign over the control socket hands over).
func TestHTTPFloodStaysBounded(t *testing.T) {
	plain := buildPlain(t)
	cluster := etcdtest.Single(t)
	dir, err := os.MkdirTemp("", "le-flood-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "a.sock")
	a := sidecartest.Start(t, plain, sidecartest.Options{ID: "a", Args: etcdArgs(cluster.ClientURLs(),
		"--control-socket", socket, "--log-level", "info")})
	a.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader && s.Ready })
	b := sidecartest.Start(t, bin, sidecartest.Options{ID: "b", Args: etcdArgs(cluster.ClientURLs())})
	b.WaitStatus("following a", generous, func(s sidecartest.Status) bool { return s.Name == "a" && s.Ready })
	addr := strings.TrimPrefix(a.URL, "http://")
	idleRSS, idleAnon, err := memory(a.PID())
	if err != nil {
		t.Fatal(err)
	}

	var peak peakMemory
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() { defer close(sampled); peak.sample(a.PID(), stopSampling) }()
	defer func() { close(stopSampling); <-sampled }()

	// A probe from an address the attacker does not use, on a fresh
	// connection each time, as a kubelet or scraper would come.
	probe := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 200)}}).DialContext,
	}}
	var probes, failures int
	var worst time.Duration
	probeLeader := func() {
		start := time.Now()
		resp, err := probe.Get(a.URL + "/leader")
		took := time.Since(start)
		probes++
		worst = max(worst, took)
		if err != nil {
			failures++
			t.Logf("GET /leader during the flood: %v", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failures++
			t.Logf("GET /leader during the flood: %d", resp.StatusCode)
		}
	}

	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	const batch = 250
	for i := 0; i < floodWatchers; i += batch {
		conns = append(conns, flood(t, addr, batch, "GET /watch HTTP/1.1\r\nHost: a\r\n\r\n")...)
		probeLeader()
	}
	for i := 0; i < floodSlow; i += batch {
		conns = append(conns, flood(t, addr, batch, "GET /status HTTP/1.1\r\nHost: a\r\nX-Slow: ")...)
		probeLeader()
	}
	// Hold the flood past the header timeout (5 s), probing all along.
	hold := time.Now().Add(7 * time.Second)
	for time.Now().Before(hold) {
		probeLeader()
		tick := time.NewTimer(100 * time.Millisecond)
		<-tick.C
	}
	if failures > 0 {
		t.Errorf("%d of %d GET /leader probes failed during the flood", failures, probes)
	}
	if st, err := a.Status(t.Context()); err != nil || !st.IsLeader {
		t.Errorf("a lost leadership under the flood: %+v %v", st, err)
	}

	// The election goes on: the in-pod resign over the socket hands over.
	code, body := send(t, request{viaSocket: socket, url: "http://localhost/resign"})
	if code != http.StatusOK {
		t.Fatalf("resign over the control socket during the flood: %d %v", code, body)
	}
	b.WaitStatus("taking over", generous, func(s sidecartest.Status) bool { return s.IsLeader })

	rss, anon, err := peak.get()
	if err != nil {
		t.Fatalf("sampling the memory of a: %v", err)
	}
	t.Logf("flood of %d /watch + %d stalled connections from %d sources, %d opened: idle RSS %s (anon %s), peak RSS %s (anon %s); %d /leader probes, worst %v",
		floodWatchers, floodSlow, floodSources, len(conns), mib(idleRSS), mib(idleAnon), mib(rss), mib(anon), probes, worst)
	if anon > floodAnonBound {
		t.Errorf("peak anonymous memory %s exceeds the documented bound %s", mib(anon), mib(floodAnonBound))
	}
	if rss > floodRSSBound {
		t.Errorf("peak RSS %s exceeds the documented bound %s", mib(rss), mib(floodRSSBound))
	}
	if len(conns) < (floodWatchers+floodSlow)/2 {
		t.Errorf("only %d of %d flood connections opened: the test did not flood", len(conns), floodWatchers+floodSlow)
	}
}
