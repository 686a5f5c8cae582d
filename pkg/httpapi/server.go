// Package httpapi serves the sidecar's local HTTP API: the election status for
// the application next to it, probes and metrics on the pod network, and a
// separate control listener, reachable only from inside the pod, for
// requests that change leadership.
//
// Who can do what (the README's "Security model" has the full story):
//
//   - The pod-network listener (Config.Addr) serves read-only endpoints to
//     anyone who can reach the pod. It has no state-changing endpoint at all:
//     POST /resign there is refused whatever the peer address, because a
//     service mesh forwards outside traffic from a loopback address
//     (127.0.0.6), so a loopback peer proves nothing.
//   - The control listener (Config.Control) is off unless configured. It is a
//     Unix socket, which only processes that share its directory (an emptyDir
//     mounted into the pod's containers) can reach, and/or a loopback TCP
//     address that needs a bearer token read from a file. Every
//     state-changing request must also name a loopback Host and carry no
//     foreign Origin, which stops DNS rebinding and cross-origin pages.
//
// The API reports what the election engine believes. A status read over HTTP
// is already stale when it arrives; consumers that need safety compare the
// fencing token, not the leader's name.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Elector is the part of the election engine the API reads and drives.
type Elector interface {
	// Status returns the latest status and a channel closed on the next change.
	Status() (election.Status, <-chan struct{})
	// Resign gives up leadership now; it returns election.ErrNotLeader when
	// this candidate does not lead.
	Resign(ctx context.Context) error
	// Healthy reports whether the election loop is alive.
	Healthy() bool
}

// Config configures a Server. At least one of Addr, Control.Socket and
// Control.Addr must be set.
type Config struct {
	// Addr is the TCP address of the pod-network listener, which serves the
	// read-only endpoints, for example ":4040" or "127.0.0.1:0". Empty: off.
	Addr string
	// Control configures the listener for state-changing requests. Off
	// when empty.
	Control Control
	// Limits bounds each listener's connections and /watch streams.
	Limits Limits
	// Elector provides the status. Required.
	Elector Elector
	// Metrics is served on /metrics; when nil, /metrics answers 404.
	Metrics http.Handler
	// Degraded, if set, lists the sidecar's own outputs that are losing
	// data, one short sentence each (for example "history: 3 writes failed:
	// no space left on device"). /status and /watch show them as
	// "degraded", /readyz names them. It must not block.
	Degraded func() []string
	// Logger receives request errors and the server's own log. Default: discard.
	Logger *slog.Logger
	// KeepAlive is the interval of the comment lines /watch sends so that
	// proxies and clients see an idle stream is still alive. Default: 15 s.
	KeepAlive time.Duration
}

// Limits bound what clients can make a listener hold in memory. Each
// listener has its own, so a flood on the pod network never takes the
// control listener's streams. Zero fields take the defaults.
type Limits struct {
	// MaxConnections is the most connections a listener keeps open.
	// Default: DefaultMaxConnections.
	MaxConnections int
	// MaxConnectionsPerClient is the most connections one source IP may
	// hold on a listener. Default: DefaultMaxConnectionsPerClient.
	MaxConnectionsPerClient int
	// MaxWatchers is the most concurrent /watch streams on a listener; more
	// are answered 503 with Retry-After. Default: DefaultMaxWatchers.
	MaxWatchers int
}

// Defaults of Limits. With the defaults, a listener holds at most about
// 256 × 30 KiB of connection state (see docs/security.md for the
// measurement).
const (
	DefaultMaxConnections          = 256
	DefaultMaxConnectionsPerClient = 64
	DefaultMaxWatchers             = 64
)

// withDefaults fills zero fields.
func (l Limits) withDefaults() Limits {
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.MaxConnectionsPerClient == 0 {
		l.MaxConnectionsPerClient = min(DefaultMaxConnectionsPerClient, l.MaxConnections)
	}
	if l.MaxWatchers == 0 {
		l.MaxWatchers = min(DefaultMaxWatchers, l.MaxConnections)
	}
	return l
}

// Validate checks the limits; errors name the field.
func (l Limits) Validate() error {
	switch {
	case l.MaxConnections < 0:
		return fmt.Errorf("httpapi: MaxConnections %d is negative", l.MaxConnections)
	case l.MaxConnectionsPerClient < 0:
		return fmt.Errorf("httpapi: MaxConnectionsPerClient %d is negative", l.MaxConnectionsPerClient)
	case l.MaxWatchers < 0:
		return fmt.Errorf("httpapi: MaxWatchers %d is negative", l.MaxWatchers)
	}
	d := l.withDefaults()
	if d.MaxConnectionsPerClient > d.MaxConnections {
		return fmt.Errorf("httpapi: MaxConnectionsPerClient %d exceeds MaxConnections %d", d.MaxConnectionsPerClient, d.MaxConnections)
	}
	if d.MaxWatchers > d.MaxConnections {
		return fmt.Errorf("httpapi: MaxWatchers %d exceeds MaxConnections %d", d.MaxWatchers, d.MaxConnections)
	}
	return nil
}

const defaultKeepAlive = 15 * time.Second

// timeouts bound the HTTP server. They are fields rather than constants so
// tests can shorten them.
type timeouts struct {
	readHeader time.Duration
	read       time.Duration
	write      time.Duration // also the deadline of each write on /watch
	idle       time.Duration
	shutdown   time.Duration
	resign     time.Duration
}

func defaultTimeouts() timeouts {
	return timeouts{
		readHeader: 5 * time.Second,
		read:       10 * time.Second,
		write:      10 * time.Second,
		idle:       60 * time.Second,
		shutdown:   5 * time.Second,
		resign:     5 * time.Second,
	}
}

// maxHeaderBytes is ample for a local API that takes no request headers of
// interest besides Host, Origin and Authorization. (net/http allows 4 KiB
// more than this before answering 431.)
const maxHeaderBytes = 8 << 10

// Server is the HTTP API. Serve it once.
type Server struct {
	cfg       Config
	elector   Elector
	metrics   http.Handler
	degraded  func() []string
	log       *slog.Logger
	keepAlive time.Duration
	limits    Limits
	timeouts  timeouts
	public    *endpoint
	control   *endpoint

	listening     chan struct{} // closed once Serve has bound its addresses or failed to
	listeningOnce sync.Once
	mu            sync.Mutex
	boundAddr     string
	controlAddr   string
	listenErr     error
	limiters      []*limitListener
}

// endpoint is what one listener serves, with its own /watch slots.
type endpoint struct {
	name     string
	handler  http.Handler
	watchers chan struct{} // a slot per running /watch stream
}

// New creates a Server. cfg.Elector must not be nil; Serve checks the rest
// of cfg (Config.Validate).
func New(cfg Config) *Server {
	s := &Server{
		cfg:       cfg,
		elector:   cfg.Elector,
		metrics:   cfg.Metrics,
		degraded:  cfg.Degraded,
		log:       cfg.Logger,
		keepAlive: cfg.KeepAlive,
		limits:    cfg.Limits.withDefaults(),
		timeouts:  defaultTimeouts(),
		listening: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.keepAlive <= 0 {
		s.keepAlive = defaultKeepAlive
	}
	s.public = &endpoint{name: "pod-network", watchers: make(chan struct{}, s.limits.MaxWatchers)}
	s.public.handler = s.publicRoutes(s.public)
	s.control = &endpoint{name: "control", watchers: make(chan struct{}, s.limits.MaxWatchers)}
	s.control.handler = s.controlRoutes(s.control)
	return s
}

// Validate checks cfg without binding anything. Errors name the field.
func (cfg Config) Validate() error {
	if cfg.Elector == nil {
		return errors.New("httpapi: Elector is required")
	}
	if cfg.Addr == "" && cfg.Control.Socket == "" && cfg.Control.Addr == "" {
		return errors.New("httpapi: no listener configured (Addr, Control.Socket and Control.Addr are empty)")
	}
	if err := cfg.Limits.Validate(); err != nil {
		return err
	}
	return cfg.Control.Validate()
}

// Handler returns the pod-network listener's handler, for tests and for
// embedding in another server. Streams on /watch served this way end only
// when the client leaves.
func (s *Server) Handler() http.Handler { return s.public.handler }

// ControlHandler returns the control listener's handler, for tests. It
// applies every check of the control listener except the peer's transport:
// whoever can call it is trusted to be inside the pod.
func (s *Server) ControlHandler() http.Handler { return s.control.handler }

// Listening returns a channel closed once Serve has bound its addresses, or
// has failed to.
func (s *Server) Listening() <-chan struct{} { return s.listening }

// ListenError returns why Serve could not bind its listeners, once
// Listening is closed; nil when they are bound.
func (s *Server) ListenError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listenErr
}

// Addr returns the address the pod-network listener is bound to (useful with
// port 0), or "" before it is bound, when binding failed or when it is off.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.boundAddr
}

// ControlAddr returns the address the control TCP listener is bound to, or
// "" as Addr does.
func (s *Server) ControlAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.controlAddr
}

// boundListener is a bound listener and what it serves.
type boundListener struct {
	ln net.Listener
	ep *endpoint
}

// listen binds every configured listener, or none.
func (s *Server) listen(ctx context.Context) ([]boundListener, error) {
	if err := s.cfg.Validate(); err != nil {
		return nil, err
	}
	var bound []boundListener
	fail := func(err error) ([]boundListener, error) {
		for _, b := range bound {
			_ = b.ln.Close()
		}
		return nil, err
	}
	var lc net.ListenConfig
	if s.cfg.Addr != "" {
		ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
		if err != nil {
			return fail(fmt.Errorf("httpapi: listen on %q: %w", s.cfg.Addr, err))
		}
		bound = append(bound, boundListener{ln, s.public})
	}
	if s.cfg.Control.Socket != "" {
		ln, err := listenUnix(ctx, s.cfg.Control.Socket)
		if err != nil {
			return fail(err)
		}
		bound = append(bound, boundListener{ln, s.control})
	}
	if s.cfg.Control.Addr != "" {
		ln, err := lc.Listen(ctx, "tcp", s.cfg.Control.Addr)
		if err != nil {
			return fail(fmt.Errorf("httpapi: control listener: listen on %q: %w", s.cfg.Control.Addr, err))
		}
		bound = append(bound, boundListener{ln, s.control})
	}
	return bound, nil
}

// Serve binds the configured listeners and serves until ctx ends, then shuts
// down gracefully within a bounded time. It returns nil after a clean
// shutdown and an error when cfg is invalid or it could not listen or serve.
func (s *Server) Serve(ctx context.Context) error {
	bound, err := s.listen(ctx)
	if err != nil {
		s.mu.Lock()
		s.listenErr = err
		s.mu.Unlock()
		s.listeningOnce.Do(func() { close(s.listening) })
		return err
	}
	s.mu.Lock()
	for i, b := range bound {
		lim := newLimitListener(b.ln, s.limits.MaxConnections, s.limits.MaxConnectionsPerClient, s.log)
		s.limiters = append(s.limiters, lim)
		bound[i].ln = lim
		switch {
		case b.ep == s.public:
			s.boundAddr = b.ln.Addr().String()
		case b.ln.Addr().Network() == "tcp":
			s.controlAddr = b.ln.Addr().String()
		}
	}
	s.mu.Unlock()
	s.listeningOnce.Do(func() { close(s.listening) })

	// Requests run under base, which Shutdown cancels: that ends /watch
	// streams, which would otherwise keep Shutdown waiting until its timeout.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	served := make(chan error, len(bound))
	var servers []*http.Server
	for _, b := range bound {
		srv := &http.Server{
			Handler:           b.ep.handler,
			ReadHeaderTimeout: s.timeouts.readHeader,
			ReadTimeout:       s.timeouts.read,
			WriteTimeout:      s.timeouts.write,
			IdleTimeout:       s.timeouts.idle,
			MaxHeaderBytes:    maxHeaderBytes,
			BaseContext:       func(net.Listener) context.Context { return base },
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		srv.RegisterOnShutdown(cancelBase)
		servers = append(servers, srv)
		s.log.Info("http api listening", "listener", b.ep.name, "addr", b.ln.Addr().String(),
			"network", b.ln.Addr().Network())
		go func() { served <- srv.Serve(b.ln) }()
	}

	var errs []error
	pending := len(servers)
	select {
	case err := <-served:
		pending--
		errs = append(errs, fmt.Errorf("httpapi: serve: %w", err))
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeouts.shutdown)
	defer cancel()
	var wg sync.WaitGroup
	var shutMu sync.Mutex
	for _, srv := range servers {
		wg.Go(func() {
			if err := srv.Shutdown(shutdownCtx); err != nil {
				// Connections that outlived the timeout are cut off.
				shutMu.Lock()
				errs = append(errs, fmt.Errorf("httpapi: shutdown: %w", err), srv.Close())
				shutMu.Unlock()
			}
		})
	}
	wg.Wait()
	for range pending {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("httpapi: serve: %w", err))
		}
	}
	return errors.Join(errs...)
}

// openConns returns the open connections of each bound listener, in the
// order Serve bound them (for tests).
func (s *Server) openConns() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n []int
	for _, l := range s.limiters {
		n = append(n, l.openConns())
	}
	return n
}
