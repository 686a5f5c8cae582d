package kubetest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
)

// Proxy forwards TCP connections to the API server and can cut them off, so
// a test can take the API server away from one client and bring it back
// without restarting it (a restart would mint new certificates).
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  proxyMode
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

type proxyMode int

const (
	modeUp        proxyMode = iota
	modeDown                // refuse: connections are closed at once
	modeBlackhole           // accept, then never answer
)

// Proxy starts a proxy on a free 127.0.0.1 port in front of the API server;
// the test's end stops it.
func (e *Env) Proxy(t testing.TB) *Proxy {
	t.Helper()
	u, err := url.Parse(e.Config.Host)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	p := &Proxy{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// Config returns a copy of cfg that reaches the API server through the
// proxy. The serving certificate is valid for 127.0.0.1, so TLS still
// verifies.
func (p *Proxy) Config(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Host = "https://" + p.ln.Addr().String()
	return c
}

// Down cuts every open connection and closes new ones at once, like a
// stopped server.
func (p *Proxy) Down() { p.set(modeDown) }

// Blackhole cuts every open connection and leaves new ones unanswered, like
// a network partition.
func (p *Proxy) Blackhole() { p.set(modeBlackhole) }

// Up forwards connections again.
func (p *Proxy) Up() { p.set(modeUp) }

func (p *Proxy) set(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m == p.mode {
		return
	}
	// Every open connection belongs to the old mode: forwarded ones must
	// break on the way down, held ones must break on the way up so clients
	// dial again.
	p.mode = m
	for c := range p.conns {
		c.Close()
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		mode := p.mode
		if mode != modeDown {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		switch mode {
		case modeDown:
			c.Close()
		case modeBlackhole:
			// Held open (and tracked) until Up, Down or close.
		case modeUp:
			p.wg.Go(func() { p.forward(c) })
		}
	}
}

func (p *Proxy) forward(c net.Conn) {
	defer p.drop(c)
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.mode != modeUp {
		p.mu.Unlock()
		up.Close()
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	defer p.drop(up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, c)
		// Pass the client's half-close on, then let the other copy finish.
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	up.Close()
	<-done
}

func (p *Proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.mode = modeDown
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
