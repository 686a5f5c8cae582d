// Package tcpproxy is a loopback TCP proxy whose faults (delay, partition,
// reset) can be switched while connections are open, for putting failures
// between a process and its backend in tests.
package tcpproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Mode is what the proxy does to traffic.
type Mode int

const (
	// Pass forwards bytes as they come.
	Pass Mode = iota
	// Delay forwards each chunk a fixed time after it was read.
	Delay
	// Blackhole forwards nothing in either direction and does not connect
	// new connections to the target, but keeps every connection open, like
	// a network partition. Held bytes flow again when the mode changes.
	Blackhole
	// Reset closes every connection and closes new ones as they arrive.
	Reset
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Delay:
		return "delay"
	case Blackhole:
		return "blackhole"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

const (
	chunkSize = 32 << 10
	// queueLen bounds how many read chunks wait for delivery per direction;
	// beyond it the proxy stops reading and TCP flow control pushes back.
	queueLen    = 16
	dialTimeout = 5 * time.Second
)

// Proxy listens on 127.0.0.1 and forwards connections to a target address.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu      sync.Mutex
	mode    Mode
	delay   time.Duration
	changed chan struct{} // closed and replaced on every mode change
	conns   map[*conn]struct{}
	closed  bool
}

// New starts a proxy in Pass mode on a free 127.0.0.1 port in front of
// target.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tcpproxy: listen: %w", err)
	}
	p := &Proxy{
		target:  target,
		ln:      ln,
		changed: make(chan struct{}),
		conns:   make(map[*conn]struct{}),
	}
	p.wg.Go(p.accept)
	return p, nil
}

// Start is New for tests: it fails the test on error and closes the proxy
// when the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's listening address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Pass forwards traffic unchanged, including bytes held by an earlier mode.
func (p *Proxy) Pass() { p.setMode(Pass, 0) }

// Delay forwards every chunk d after it was read, in both directions.
func (p *Proxy) Delay(d time.Duration) { p.setMode(Delay, d) }

// Blackhole stops all forwarding while keeping connections open.
func (p *Proxy) Blackhole() { p.setMode(Blackhole, 0) }

// Reset closes all current connections and every new one until the mode
// changes.
func (p *Proxy) Reset() {
	p.setMode(Reset, 0)
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.reset()
	}
}

func (p *Proxy) setMode(m Mode, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode, p.delay = m, d
	close(p.changed)
	p.changed = make(chan struct{})
}

// Close stops listening, closes every connection and waits for all of the
// proxy's goroutines to end.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range conns {
		c.close()
	}
	p.wg.Wait()
}

func (p *Proxy) accept() {
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			// Only Close makes a loopback listener fail.
			return
		}
		c := &conn{client: nc, done: make(chan struct{})}
		p.mu.Lock()
		refuse := p.closed || p.mode == Reset
		if !refuse {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		if refuse {
			c.reset()
			continue
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve connects c to the target once the mode allows it and forwards both
// directions until they end.
func (p *Proxy) serve(c *conn) {
	defer func() {
		c.close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	// A partitioned proxy never reaches the target: the connection waits.
	if !p.gate(c.done, time.Now()) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !c.onClose(cancel) {
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(ctx, "tcp", p.target)
	if err != nil {
		return
	}
	if !c.setServer(server) {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(c, c.client, server) })
	wg.Go(func() { p.pipe(c, server, c.client) })
	wg.Wait()
}

type chunk struct {
	data []byte
	read time.Time
}

// pipe forwards src to dst. A reader queues chunks so that a delay adds
// latency without limiting throughput to one chunk per delay.
func (p *Proxy) pipe(c *conn, src, dst net.Conn) {
	queue := make(chan chunk, queueLen)
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(queue)
		for {
			buf := make([]byte, chunkSize)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case queue <- chunk{data: buf[:n], read: time.Now()}:
				case <-c.done:
					return
				}
			}
			if err != nil {
				readErr = err
				return
			}
		}
	})
	defer wg.Wait()
	for ch := range queue {
		if !p.gate(c.done, ch.read) {
			c.close()
			return
		}
		if _, err := dst.Write(ch.data); err != nil {
			c.close()
			return
		}
	}
	wg.Wait()
	if !errors.Is(readErr, io.EOF) {
		c.close()
		return
	}
	// Pass the half-close on; the other direction may still have data.
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// gate blocks until a chunk read at read may be forwarded under the current
// mode. It reports false if done is closed first.
func (p *Proxy) gate(done <-chan struct{}, read time.Time) bool {
	for {
		p.mu.Lock()
		mode, delay, changed := p.mode, p.delay, p.changed
		p.mu.Unlock()
		var wait time.Duration
		switch mode {
		case Blackhole:
			wait = -1
		case Delay:
			wait = time.Until(read.Add(delay))
			if wait <= 0 {
				return true
			}
		default:
			return true
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-done:
			stopTimer(timer)
			return false
		case <-changed:
			stopTimer(timer)
		case <-fire:
			return true
		}
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// conn is one proxied connection.
type conn struct {
	client net.Conn
	done   chan struct{} // closed when the connection is closed

	mu         sync.Mutex
	server     net.Conn
	cancelDial func()
	closed     bool
}

// onClose makes close cancel a dial in progress; false means c was closed
// already.
func (c *conn) onClose(cancel func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelDial = cancel
	return !c.closed
}

// setServer records the target side; false means c was closed meanwhile.
func (c *conn) setServer(s net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = s.Close()
		return false
	}
	c.server = s
	return true
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	close(c.done)
	if c.cancelDial != nil {
		c.cancelDial()
	}
	_ = c.client.Close()
	if c.server != nil {
		_ = c.server.Close()
	}
}

// reset closes c with a TCP reset rather than an orderly close, as a
// crashed peer or middlebox would.
func (c *conn) reset() {
	c.mu.Lock()
	for _, nc := range []net.Conn{c.client, c.server} {
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	c.mu.Unlock()
	c.close()
}
