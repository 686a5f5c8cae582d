// Package apphealth is the health gate of application-aware leadership: it
// checks an HTTP endpoint of the application on its own goroutine and tells
// the election engine (as an election.Gate) whether this candidate may
// stand.
//
// Consecutive results decide, so one slow answer does not cost a leader its
// leadership: the application is unhealthy after Failures consecutive
// failed checks and healthy again after Successes consecutive good ones.
// Before the first verdict its health is unknown and the candidate does not
// stand (a replica whose application never answered must not be chosen).
//
// A check never delays the election: it runs on the checker's goroutine,
// each request is bounded by Timeout, and the engine only reads the last
// verdict. What it does not guarantee: a verdict is as old as the last
// check (up to Interval + Timeout), and the application's health endpoint
// decides what "healthy" means.
package apphealth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Defaults, written once.
const (
	DefaultInterval  = 2 * time.Second
	DefaultTimeout   = time.Second
	DefaultFailures  = 3
	DefaultSuccesses = 1
)

// Health words, as Status.Health and /status show them.
const (
	Unknown   = "unknown"
	Healthy   = "healthy"
	Unhealthy = "unhealthy"
)

// Options configures a Checker. Zero durations and counts take the defaults.
type Options struct {
	// URL is fetched with GET; a 2xx answer is a good check, anything else
	// (another status, a timeout, a refused connection) a failed one.
	// Redirects are not followed. Required: http or https.
	URL string
	// Interval is the time between the starts of two checks. Default
	// DefaultInterval.
	Interval time.Duration
	// Timeout bounds one check. Default min(DefaultTimeout, Interval).
	Timeout time.Duration
	// Failures is how many consecutive failed checks make the application
	// unhealthy. Default DefaultFailures.
	Failures int
	// Successes is how many consecutive good checks make it healthy again
	// (and healthy the first time). Default DefaultSuccesses.
	Successes int
}

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout == 0 {
		o.Timeout = min(DefaultTimeout, o.Interval)
	}
	if o.Failures == 0 {
		o.Failures = DefaultFailures
	}
	if o.Successes == 0 {
		o.Successes = DefaultSuccesses
	}
	return o
}

// Validate checks o after defaults; errors are *election.ConfigError naming
// the field.
func (o Options) Validate() error {
	o = o.WithDefaults()
	u, err := url.Parse(o.URL)
	switch {
	case o.URL == "":
		return election.Invalid("URL", "is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return election.Invalid("URL", "%q: want an http:// or https:// URL with a host", o.URL)
	case o.Interval < 0:
		return election.Invalid("Interval", "%v must be positive", o.Interval)
	case o.Timeout < 0 || o.Timeout > o.Interval:
		return election.Invalid("Timeout", "%v must be positive and at most the interval %v", o.Timeout, o.Interval)
	case o.Failures < 0:
		return election.Invalid("Failures", "%d must be at least 1", o.Failures)
	case o.Successes < 0:
		return election.Invalid("Successes", "%d must be at least 1", o.Successes)
	}
	return nil
}

// Checker checks the application and implements election.Gate. Create it
// with New, run Run on a goroutine of its own.
type Checker struct {
	opts   Options
	log    *slog.Logger
	client *http.Client

	healthy prometheus.Gauge
	checks  *prometheus.CounterVec

	mu      sync.Mutex
	verdict election.Eligibility
	changed chan struct{}
	good    int // consecutive good checks
	bad     int // consecutive failed checks
}

var _ election.Gate = (*Checker)(nil)

// New validates opts and returns a checker whose verdict is unknown. If reg
// is not nil, the checker registers leader_elector_app_healthy (1 healthy,
// 0 unhealthy, -1 unknown) and leader_elector_app_health_checks_total
// (by result) on it. It contacts nothing.
func New(opts Options, reg prometheus.Registerer, log *slog.Logger) (*Checker, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Checker{
		opts: opts,
		log:  log.With("component", "app-health", "url", opts.URL),
		client: &http.Client{
			Timeout:   opts.Timeout,
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			// A redirect is not a 2xx: it is a failed check.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "leader_elector", Name: "app_healthy",
			Help: "The application's health as the health gate sees it: 1 healthy, 0 unhealthy (the candidate stands aside), -1 unknown (no verdict yet).",
		}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "leader_elector", Name: "app_health_checks_total",
			Help: "Health checks of the application, by result (success or failure).",
		}, []string{"result"}),
		verdict: election.Eligibility{Health: Unknown, Reason: "application health unknown: waiting for its first good health check"},
		changed: make(chan struct{}),
	}
	c.healthy.Set(-1)
	c.checks.WithLabelValues("success")
	c.checks.WithLabelValues("failure")
	if reg != nil {
		if err := reg.Register(c.healthy); err != nil {
			return nil, err
		}
		if err := reg.Register(c.checks); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Eligibility implements election.Gate: the last verdict, at once.
func (c *Checker) Eligibility() (election.Eligibility, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verdict, c.changed
}

// Run checks the application every Interval, the first time at once,
// until ctx ends.
func (c *Checker) Run(ctx context.Context) {
	defer c.client.CloseIdleConnections()
	tick := time.NewTicker(c.opts.Interval)
	defer tick.Stop()
	for {
		c.record(c.check(ctx))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// check runs one GET and returns nil for a 2xx answer.
func (c *Checker) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.opts.URL, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", c.opts.URL, resp.Status)
	}
	return nil
}

// record counts one result and moves the verdict when a threshold is met.
func (c *Checker) record(err error) {
	if err == nil {
		c.checks.WithLabelValues("success").Inc()
	} else {
		c.checks.WithLabelValues("failure").Inc()
	}
	c.mu.Lock()
	next := c.verdict
	if err == nil {
		c.good, c.bad = c.good+1, 0
		if c.good >= c.opts.Successes {
			next = election.Eligibility{Eligible: true, Health: Healthy}
		}
	} else {
		c.good, c.bad = 0, c.bad+1
		if c.bad >= c.opts.Failures {
			next = election.Eligibility{Health: Unhealthy,
				Reason: fmt.Sprintf("application unhealthy: %d consecutive failed health checks, the last: %v", c.bad, err)}
		}
	}
	moved := next.Health != c.verdict.Health
	if moved {
		c.verdict = next
		close(c.changed)
		c.changed = make(chan struct{})
	}
	c.mu.Unlock()
	if !moved {
		if err != nil {
			c.log.Debug("health check failed", "err", err)
		}
		return
	}
	switch next.Health {
	case Healthy:
		c.healthy.Set(1)
		c.log.Info("application healthy: standing for election", "checks", c.opts.Successes)
	case Unhealthy:
		c.healthy.Set(0)
		c.log.Warn("application unhealthy: not standing for election", "failures", c.bad, "err", err)
	}
}
