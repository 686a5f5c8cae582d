package tcpproxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer echoes every connection back and counts the connections it
// accepted.
type echoServer struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Go(func() {
				_, _ = io.Copy(c, c)
				_ = c.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes msg and reads the echo within timeout.
func roundTrip(c net.Conn, msg string, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	return expectRead(c, msg, timeout)
}

func expectRead(c net.Conn, msg string, timeout time.Duration) error {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if !bytes.Equal(buf, []byte(msg)) {
		return errors.New("echo mismatch: got " + string(buf) + ", want " + msg)
	}
	return nil
}

// expectSilence checks that nothing arrives on c for d.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	n, err := c.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read during blackhole: got %d bytes, err %v; want a timeout", n, err)
	}
}

// expectClosed checks that c is closed by the other side within timeout.
func expectClosed(t *testing.T, c net.Conn, timeout time.Duration) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: got err %v, want the connection closed", err)
	}
}

// expectResetOnConnect checks that a new connection to addr is closed by the
// other side. A peer that accepts and resets at once can make the dial itself
// fail: the reset may arrive before the dialer reads the socket's connect
// result (SO_ERROR), so "connection reset by peer" from connect is the same
// outcome as a read that fails right after a successful dial.
func expectResetOnConnect(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial: %v; want a connection that is reset", err)
		}
		return
	}
	t.Cleanup(func() { _ = c.Close() })
	expectClosed(t, c, timeout)
}

func TestPassEchoes(t *testing.T) {
	echo := startEcho(t)
	p := tcpproxy.Start(t, echo.addr())
	c := dial(t, p.Addr())
	for _, msg := range []string{"hello", "world"} {
		if err := roundTrip(c, msg, 5*time.Second); err != nil {
			t.Fatalf("round trip %q: %v", msg, err)
		}
	}
	// A large write crosses many chunks.
	big := string(bytes.Repeat([]byte("0123456789"), 100_000))
	if err := roundTrip(c, big, 10*time.Second); err != nil {
		t.Fatalf("round trip of %d bytes: %v", len(big), err)
	}
	if got := echo.accepted.Load(); got != 1 {
		t.Fatalf("target accepted %d connections, want 1", got)
	}
}

func TestDelayAddsLatencyBothWays(t *testing.T) {
	echo := startEcho(t)
	p := tcpproxy.Start(t, echo.addr())
	c := dial(t, p.Addr())
	if err := roundTrip(c, "warm", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	const d = 150 * time.Millisecond
	p.Delay(d)
	if got := p.Mode(); got != tcpproxy.Delay {
		t.Fatalf("mode: got %v, want delay", got)
	}
	start := time.Now()
	if err := roundTrip(c, "slow", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The request and the echo are each held for d; less is impossible.
	if got := time.Since(start); got < 2*d {
		t.Fatalf("round trip took %v, want at least %v", got, 2*d)
	}
	p.Pass()
	if err := roundTrip(c, "fast", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestBlackholeHoldsTrafficUntilPass(t *testing.T) {
	echo := startEcho(t)
	p := tcpproxy.Start(t, echo.addr())
	old := dial(t, p.Addr())
	if err := roundTrip(old, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	p.Blackhole()
	if _, err := old.Write([]byte("held")); err != nil {
		t.Fatalf("write on a blackholed connection: %v", err)
	}
	expectSilence(t, old, 300*time.Millisecond)

	// A new connection is accepted but never reaches the target.
	fresh := dial(t, p.Addr())
	if _, err := fresh.Write([]byte("lost")); err != nil {
		t.Fatalf("write on a new blackholed connection: %v", err)
	}
	expectSilence(t, fresh, 300*time.Millisecond)
	if got := echo.accepted.Load(); got != 1 {
		t.Fatalf("target accepted %d connections during the blackhole, want 1", got)
	}

	p.Pass()
	// Like a healed partition, held bytes are delivered.
	if err := expectRead(old, "held", 5*time.Second); err != nil {
		t.Fatalf("held bytes on the old connection: %v", err)
	}
	if err := roundTrip(dial(t, p.Addr()), "after", 5*time.Second); err != nil {
		t.Fatalf("new connection after Pass: %v", err)
	}
}

func TestResetClosesConnections(t *testing.T) {
	echo := startEcho(t)
	p := tcpproxy.Start(t, echo.addr())
	c := dial(t, p.Addr())
	if err := roundTrip(c, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	pending := dial(t, p.Addr()) // accepted, never connected to the target

	p.Reset()
	expectClosed(t, c, 5*time.Second)
	expectClosed(t, pending, 5*time.Second)
	expectResetOnConnect(t, p.Addr(), 5*time.Second)

	p.Pass()
	if err := roundTrip(dial(t, p.Addr()), "after", 5*time.Second); err != nil {
		t.Fatalf("new connection after Pass: %v", err)
	}
}

func TestTargetDownClosesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	_ = ln.Close()
	p := tcpproxy.Start(t, target)
	expectClosed(t, dial(t, p.Addr()), 5*time.Second)
}

func TestCloseEndsEverything(t *testing.T) {
	echo := startEcho(t)
	before := goleak.IgnoreCurrent()
	p, err := tcpproxy.New(echo.addr())
	if err != nil {
		t.Fatal(err)
	}
	active := dial(t, p.Addr())
	if err := roundTrip(active, "x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Delay(time.Hour)
	if _, err := active.Write([]byte("stuck in delay")); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	pending := dial(t, p.Addr())

	p.Close()
	expectClosed(t, active, 5*time.Second)
	expectClosed(t, pending, 5*time.Second)
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		_ = c.Close()
		t.Fatal("dial after Close succeeded")
	}
	// The echo server's handler for the proxied connection ends too, as the
	// proxy closed its side.
	goleak.VerifyNone(t, before)
}
