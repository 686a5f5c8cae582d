// Package metrics exposes the sidecar's Prometheus metrics on a dedicated
// registry and implements election.Metrics.
package metrics

import (
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/leader-elector/leader-elector/internal/lossy"
	"github.com/leader-elector/leader-elector/pkg/election"
)

const namespace = "leader_elector"

// Info describes the running binary for the build_info gauge.
type Info struct {
	Version string // the sidecar's version
	Backend string // the election backend's name
}

// Metrics is the Prometheus implementation of election.Metrics. It is safe
// for concurrent use.
type Metrics struct {
	registry *prometheus.Registry

	isLeader      prometheus.GaugeFunc
	leaderSource  atomic.Pointer[func() bool]
	state         *prometheus.GaugeVec
	transitions   prometheus.Counter
	takeover      *prometheus.HistogramVec
	steppedDown   *prometheus.CounterVec
	backendErrors *prometheus.CounterVec
	publishErrors *prometheus.CounterVec

	// mu guards leader, so that a transition is counted exactly once even
	// when SetLeader is called concurrently, and makes each SetState atomic.
	mu     sync.Mutex
	leader bool
}

var _ election.Metrics = (*Metrics)(nil)

// New creates the metrics and registers them, with the Go runtime and process
// collectors, on a fresh registry.
func New(info Info) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		// isLeader is set below: it reads the source at scrape time.
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "state",
			Help: "1 for the engine's current state, 0 for the others: stopped, campaigning, following, " +
				"leading, holding-off (after a resign), backing-off (after a backend failure) or standing-aside (the health gate is closed).",
		}, []string{"state"}),
		transitions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "leadership_transitions_total",
			Help:      "Number of times is_leader changed value.",
		}),
		takeover: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "takeover_seconds",
			Help: "Time from seeing the predecessor go to this candidate leading, by how it went: " +
				"handover (it resigned), failover (its lease or lock expired) or unknown.",
			// 1 ms (a graceful hand-over on loopback) to 30 s (a crash
			// failover with a long TTL).
			Buckets: []float64{
				0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
				1, 2.5, 5, 10, 20, 30,
			},
		}, []string{"kind"}),
		steppedDown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "stepped_down_total",
			Help:      "Number of times this candidate stopped leading, by reason.",
		}, []string{"reason"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "backend_errors_total",
			Help:      "Number of failed backend operations, by operation.",
		}, []string{"op"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "publish_errors_total",
			Help:      "Number of failures to publish the election status, by publisher.",
		}, []string{"publisher"}),
	}
	m.isLeader = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "is_leader",
		Help:      "1 while this candidate claims leadership, else 0.",
	}, m.leaderValue)
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "build_info",
		Help:      "Always 1; the labels describe the running sidecar.",
		ConstLabels: prometheus.Labels{
			"version":   info.Version,
			"goversion": runtime.Version(),
			"backend":   info.Backend,
		},
	})
	buildInfo.Set(1)

	// Create the label values the engine is documented to use, so that
	// their series exist (at zero) before the first event; rate() and
	// alerts on increase() then work from the start.
	for _, r := range election.StepDownReasons {
		m.steppedDown.WithLabelValues(string(r))
	}
	for _, s := range election.States {
		m.state.WithLabelValues(s.String())
	}
	m.state.WithLabelValues(election.StateStopped.String()).Set(1)
	for _, op := range election.BackendOps {
		m.backendErrors.WithLabelValues(op)
	}
	for _, k := range []string{election.Handover, election.Failover, unknownKind} {
		m.takeover.WithLabelValues(k)
	}

	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		m.isLeader,
		m.state,
		m.transitions,
		m.takeover,
		m.steppedDown,
		m.backendErrors,
		m.publishErrors,
	)
	return m
}

// Registry returns the registry holding every metric of the sidecar; other
// packages may register their own collectors on it.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// SetLeader records whether this candidate claims leadership and counts a
// transition when that changed.
func (m *Metrics) SetLeader(isLeader bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if isLeader == m.leader {
		return
	}
	m.leader = isLeader
	m.transitions.Inc()
}

// SetLeaderSource makes is_leader read fn at every scrape instead of the
// last SetLeader value. The sidecar passes the engine's own check (which
// re-reads the validity deadline), so a scrape after the deadline reads 0
// even if the engine's loop has not run since.
func (m *Metrics) SetLeaderSource(fn func() bool) { m.leaderSource.Store(&fn) }

func (m *Metrics) leaderValue() float64 {
	var leader bool
	if fn := m.leaderSource.Load(); fn != nil {
		leader = (*fn)()
	} else {
		m.mu.Lock()
		leader = m.leader
		m.mu.Unlock()
	}
	if leader {
		return 1
	}
	return 0
}

// AddOutput exports the counts of one of the sidecar's lossy outputs (the
// log, the history file): leader_elector_output_dropped_total and
// leader_elector_output_errors_total with output=name.
func (m *Metrics) AddOutput(name string, stats func() lossy.Stats) {
	labels := prometheus.Labels{"output": name}
	m.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "output_dropped_total", ConstLabels: labels,
			Help: "Records the output dropped because its destination did not keep up (a pipe nobody reads).",
		}, func() float64 { return float64(stats().Dropped) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "output_errors_total", ConstLabels: labels,
			Help: "Writes to the output that failed (a full disk, a closed pipe).",
		}, func() float64 { return float64(stats().Failed) }),
	)
}

// unknownKind labels takeovers whose predecessor's end the backend could not tell.
const unknownKind = "unknown"

// Takeover records how long it took this candidate to lead after its
// predecessor was gone, by how it went.
func (m *Metrics) Takeover(d time.Duration, kind string) {
	if kind == "" {
		kind = unknownKind
	}
	m.takeover.WithLabelValues(kind).Observe(d.Seconds())
}

// SteppedDown counts a loss of leadership by reason.
func (m *Metrics) SteppedDown(reason election.StepDownReason) {
	m.steppedDown.WithLabelValues(string(reason)).Inc()
}

// SetState sets the state gauge: 1 for s, 0 for every other state.
func (m *Metrics) SetState(s election.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range election.States {
		v := 0.0
		if o == s {
			v = 1
		}
		m.state.WithLabelValues(o.String()).Set(v)
	}
}

// BackendError counts a failed backend operation.
func (m *Metrics) BackendError(op string) { m.backendErrors.WithLabelValues(op).Inc() }

// PublishError counts a failure of a publisher (for example "labels" or
// "readiness-gate") to publish the status.
func (m *Metrics) PublishError(publisher string) {
	m.publishErrors.WithLabelValues(publisher).Inc()
}
