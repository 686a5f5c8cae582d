// Package httpapi serves the sidecar's local HTTP API: the election status for
// the application next to it, probes, metrics and a loopback-only resign.
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

// Config configures a Server.
type Config struct {
	// Addr is the TCP address to listen on, for example ":8080" or
	// "127.0.0.1:0".
	Addr string
	// Elector provides the status. Required.
	Elector Elector
	// Metrics is served on /metrics; when nil, /metrics answers 404.
	Metrics http.Handler
	// Logger receives request errors and the server's own log. Default: discard.
	Logger *slog.Logger
	// KeepAlive is the interval of the comment lines /watch sends so that
	// proxies and clients see an idle stream is still alive. Default: 15 s.
	KeepAlive time.Duration
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
		idle:       2 * time.Minute,
		shutdown:   5 * time.Second,
		resign:     5 * time.Second,
	}
}

// maxHeaderBytes is ample for a local API that takes no request headers of
// interest.
const maxHeaderBytes = 16 << 10

// Server is the HTTP API. Serve it once.
type Server struct {
	addr      string
	elector   Elector
	metrics   http.Handler
	log       *slog.Logger
	keepAlive time.Duration
	timeouts  timeouts
	handler   http.Handler

	listening     chan struct{} // closed once Serve has bound its address or failed to
	listeningOnce sync.Once
	mu            sync.Mutex
	boundAddr     string
}

// New creates a Server. cfg.Elector must not be nil.
func New(cfg Config) *Server {
	s := &Server{
		addr:      cfg.Addr,
		elector:   cfg.Elector,
		metrics:   cfg.Metrics,
		log:       cfg.Logger,
		keepAlive: cfg.KeepAlive,
		timeouts:  defaultTimeouts(),
		listening: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.keepAlive <= 0 {
		s.keepAlive = defaultKeepAlive
	}
	s.handler = s.routes()
	return s
}

// Handler returns the API's handler, for tests and for embedding in another
// server. Streams on /watch served this way end only when the client leaves.
func (s *Server) Handler() http.Handler { return s.handler }

// Listening returns a channel closed once Serve has bound its address, or
// has failed to.
func (s *Server) Listening() <-chan struct{} { return s.listening }

// Addr returns the address Serve is bound to (useful with port 0), or ""
// before it is bound or when binding failed.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.boundAddr
}

// Serve listens on the configured address and serves until ctx ends, then
// shuts down gracefully within a bounded time. It returns nil after a clean
// shutdown and an error when it could not listen or serve.
func (s *Server) Serve(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		s.listeningOnce.Do(func() { close(s.listening) })
		return fmt.Errorf("httpapi: listen on %q: %w", s.addr, err)
	}
	s.mu.Lock()
	s.boundAddr = ln.Addr().String()
	s.mu.Unlock()
	s.listeningOnce.Do(func() { close(s.listening) })

	// Requests run under base, which Shutdown cancels: that ends /watch
	// streams, which would otherwise keep Shutdown waiting until its timeout.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.timeouts.readHeader,
		ReadTimeout:       s.timeouts.read,
		WriteTimeout:      s.timeouts.write,
		IdleTimeout:       s.timeouts.idle,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(cancelBase)

	s.log.Info("http api listening", "addr", ln.Addr().String())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("httpapi: serve: %w", err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeouts.shutdown)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Connections that outlived the timeout are cut off.
		closeErr := srv.Close()
		<-served
		return errors.Join(fmt.Errorf("httpapi: shutdown: %w", err), closeErr)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("httpapi: serve: %w", err)
	}
	return nil
}
