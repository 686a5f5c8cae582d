package httpapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// dialFrom opens a raw TCP connection to addr from the source IP src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		tick := time.NewTimer(5 * time.Millisecond)
		<-tick.C
	}
}

// refused reports whether c was refused: it either reads the 503 answer or
// sees the connection end.
func refused(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false // still open: admitted
	}
	return len(b) == 0 || strings.HasPrefix(string(b), "HTTP/1.1 503 ")
}

// getOn sends GET path on an already open connection and returns the status.
func getOn(t *testing.T, c net.Conn, path string) int {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestPerClientConnectionLimit(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0", Elector: newFake(leaderStatus()),
		Limits: Limits{MaxConnections: 10, MaxConnectionsPerClient: 3}})
	startServer(t, s)
	for range 3 {
		dialFrom(t, "127.0.0.2", s.Addr())
	}
	waitFor(t, "three admitted connections", func() bool { return s.openConns()[0] == 3 })
	if c := dialFrom(t, "127.0.0.2", s.Addr()); !refused(t, c) {
		t.Error("a fourth connection from one client was admitted")
	}
	// Another client is unaffected.
	if code := getOn(t, dialFrom(t, "127.0.0.3", s.Addr()), "/leader"); code != http.StatusOK {
		t.Errorf("GET /leader from another client = %d, want 200", code)
	}
}

// When the listener is full, a newcomer from a light client evicts the
// oldest connection of the heaviest one, so a flood from one source does not
// lock a probe out.
func TestFullListenerEvictsTheHeaviestClient(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0", Elector: newFake(leaderStatus()),
		Limits: Limits{MaxConnections: 4, MaxConnectionsPerClient: 4, MaxWatchers: 1}})
	startServer(t, s)
	var flood []net.Conn
	for range 4 {
		flood = append(flood, dialFrom(t, "127.0.0.2", s.Addr()))
	}
	waitFor(t, "a full listener", func() bool { return s.openConns()[0] == 4 })
	if c := dialFrom(t, "127.0.0.2", s.Addr()); !refused(t, c) {
		t.Error("the heaviest client got a fifth connection past the limit")
	}
	probe := dialFrom(t, "127.0.0.3", s.Addr())
	if code := getOn(t, probe, "/leader"); code != http.StatusOK {
		t.Errorf("GET /leader from a light client on a full listener = %d, want 200", code)
	}
	if !refused(t, flood[0]) {
		t.Error("the heaviest client's oldest connection is still open")
	}
	// Two clients at two connections each: nobody is heavier, nobody is
	// evicted any more.
	second := dialFrom(t, "127.0.0.3", s.Addr())
	if code := getOn(t, second, "/leader"); code != http.StatusOK {
		t.Errorf("second connection of the light client = %d, want 200", code)
	}
	if c := dialFrom(t, "127.0.0.3", s.Addr()); !refused(t, c) {
		t.Error("a client that is no lighter than the others evicted a connection")
	}
}

func TestWatchLimit(t *testing.T) {
	f := newFake(followerStatus())
	s := New(Config{Addr: "127.0.0.1:0", Elector: f, Limits: Limits{MaxWatchers: 2}})
	url, _ := startServer(t, s)
	c := newClient(t)
	first, r := openWatch(t, c, url)
	nextStatus(t, r)
	_, r2 := openWatch(t, c, url)
	nextStatus(t, r2)

	resp, err := c.Get(url + "/watch")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("third stream: status = %d, want 503", resp.StatusCode)
	}
	if got := resp.Header.Get("Retry-After"); got != "10" {
		t.Errorf("Retry-After = %q, want 10", got)
	}
	if msg := errorOf(t, resp); !strings.Contains(msg, "at most 2") {
		t.Errorf("error %q does not give the limit", msg)
	}
	resp.Body.Close()
	// /leader still answers, and a slot frees when a watcher leaves.
	if resp, err := c.Get(url + "/leader"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /leader while the streams are full: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	first.Body.Close()
	waitFor(t, "a free stream slot", func() bool { return len(s.public.watchers) == 1 })
	_, r3 := openWatch(t, c, url)
	nextStatus(t, r3)
}

// A client that stops reading is dropped once a write stalls for the write
// timeout, freeing its stream slot.
func TestWatchDropsClientThatStopsReading(t *testing.T) {
	f := newFake(followerStatus())
	s := New(Config{Addr: "127.0.0.1:0", Elector: f, Limits: Limits{MaxWatchers: 1}})
	s.timeouts.write = 200 * time.Millisecond
	startServer(t, s)

	// A small receive window: the client's side fills quickly.
	d := net.Dialer{ControlContext: func(_ context.Context, _, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	c, err := d.DialContext(t.Context(), "tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprint(c, "GET /watch HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream to start", func() bool { return len(s.public.watchers) == 1 })

	// Large statuses, never read: the socket buffers fill and a write stalls.
	big := strings.Repeat("x", 16<<10)
	for i := 0; len(s.public.watchers) == 1; i++ {
		if i > 10_000 {
			t.Fatal("the stream is still open after 10,000 unread events")
		}
		f.update(func(st *election.Status) { st.Caveats = fmt.Sprint(big, i) })
		tick := time.NewTimer(time.Millisecond)
		<-tick.C
	}
}

// Header and body sizes are bounded before any handler runs.
func TestOversizedRequestsAreRefused(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0", Elector: newFake(leaderStatus()),
		Control: Control{Socket: socketDir(t) + "/c.sock"}})
	url, _ := startServer(t, s)
	req, err := http.NewRequest(http.MethodGet, url+"/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header: status = %d, want 431", resp.StatusCode)
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		l    Limits
		want string
	}{
		{Limits{}, ""},
		{Limits{MaxConnections: 10}, ""}, // the other defaults shrink to fit
		{Limits{MaxConnections: -1}, "MaxConnections"},
		{Limits{MaxConnectionsPerClient: -1}, "MaxConnectionsPerClient"},
		{Limits{MaxWatchers: -1}, "MaxWatchers"},
		{Limits{MaxConnections: 10, MaxConnectionsPerClient: 11}, "exceeds"},
		{Limits{MaxConnections: 10, MaxWatchers: 11}, "exceeds"},
	} {
		err := tc.l.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.l, err, tc.want)
		}
	}
}

// Accepted connections get small fixed buffers and a dead-peer timeout, so
// an unread or vanished client holds little kernel memory and not for long.
func TestAcceptedConnectionSocketOptions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(ln, 4, 4, slog.New(slog.DiscardHandler))
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	dialFrom(t, "127.0.0.1", ln.Addr().String())
	c, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer c.Close()
	rc, err := c.(*limitedConn).Conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var userTimeout, sndbuf int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		userTimeout, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		if gerr == nil {
			sndbuf, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		}
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if userTimeout != int(deadPeerTimeout.Milliseconds()) {
		t.Errorf("TCP_USER_TIMEOUT = %d ms, want %d", userTimeout, deadPeerTimeout.Milliseconds())
	}
	// Linux doubles the value set.
	if sndbuf != 2*socketBuffer {
		t.Errorf("SO_SNDBUF = %d, want %d", sndbuf, 2*socketBuffer)
	}
}
