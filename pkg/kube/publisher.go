package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Metrics counts failed publishing. pkg/metrics' *Metrics implements it.
type Metrics interface {
	// PublishError counts one failed update by the named publisher.
	PublishError(publisher string)
}

// Publisher names passed to Metrics.PublishError.
const (
	PublisherLabels    = "kube-labels"
	PublisherReadiness = "kube-readiness"
	PublisherEvents    = "kube-events"
)

// Timing that is not worth a flag.
const (
	defaultRequestTimeout  = 5 * time.Second
	defaultShutdownTimeout = 3 * time.Second
	defaultMinBackoff      = 200 * time.Millisecond
	defaultMaxBackoff      = 10 * time.Second
)

// Publisher keeps its own pod's labels, readiness condition and events in
// line with the election status.
type Publisher struct {
	opts    Options
	client  kubernetes.Interface
	log     *slog.Logger
	metrics Metrics

	requestTimeout  time.Duration // bounds every API call
	shutdownTimeout time.Duration // bounds the final step-down on shutdown
	minBackoff      time.Duration
	maxBackoff      time.Duration

	// beforeFenced and afterFenced, when set (tests only), run around each
	// fenced write of a leader: what is "label" or "gate" (its own pod) or
	// "demote" (a peer).
	beforeFenced func(what string)
	afterFenced  func(what string, err error)
}

// New returns a publisher for the pod named in opts. opts must be Enabled and
// valid. logger and metrics may be nil.
func New(opts Options, client kubernetes.Interface, logger *slog.Logger, metrics Metrics) (*Publisher, error) {
	if !opts.Enabled() {
		return nil, errors.New("kube: no pod name, publishing is off")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("kube: nil client")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = nopMetrics{}
	}
	return &Publisher{
		opts:            opts,
		client:          client,
		log:             logger.With("pod", opts.PodNamespace+"/"+opts.PodName),
		metrics:         metrics,
		requestTimeout:  defaultRequestTimeout,
		shutdownTimeout: defaultShutdownTimeout,
		minBackoff:      defaultMinBackoff,
		maxBackoff:      defaultMaxBackoff,
	}, nil
}

// NewForConfig is New with a clientset built from cfg.
func NewForConfig(opts Options, cfg *rest.Config, logger *slog.Logger, metrics Metrics) (*Publisher, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = eventComponent
	}
	// client-go's default client-side limit (5 requests/s, burst 10) is
	// spent by start-up alone (informer list and watch, the follower label,
	// events), after which a takeover's few requests would queue for
	// hundreds of milliseconds. The sidecar's traffic is tiny and bursty;
	// the API server's own flow control still applies.
	if cfg.QPS == 0 && cfg.Burst == 0 && cfg.RateLimiter == nil {
		cfg.QPS, cfg.Burst = clientQPS, clientBurst
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: creating client: %w", err)
	}
	return New(opts, client, logger, metrics)
}

// Client-side rate limit of the publisher's API client.
const (
	clientQPS   = 20
	clientBurst = 50
)

type nopMetrics struct{}

func (nopMetrics) PublishError(string) {}

// run is the state of one Publish call; only its goroutine touches it.
type run struct {
	*Publisher
	src    election.Source
	events *events // nil when events are off
	pod    podRef

	leading bool  // what the last observed status said
	token   int64 // the fencing token of the term being led
	failing bool  // the last reconcile failed
}

var _ election.Publisher = (*Publisher)(nil)

// Publish publishes the status from src until ctx ends, then sets the pod back
// to follower (and the gate to False) within a short bounded time and
// returns nil. It returns an error only when it cannot start.
func (p *Publisher) Publish(ctx context.Context, src election.Source) error {
	st, changed := src.Status()
	if err := ValidateElection(st.Election); err != nil {
		return err
	}
	r := &run{Publisher: p, src: src, pod: podRef{namespace: p.opts.PodNamespace, name: p.opts.PodName}}
	if p.opts.Events {
		r.events = newEvents(p.client, p.requestTimeout, func() { p.metrics.PublishError(PublisherEvents) })
		defer r.events.close()
	}

	// A watch on the pod puts a hand-edited label or condition back without
	// waiting for the next resync.
	kick := make(chan struct{}, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopWatch()
		wg.Wait()
	}()
	informer, err := p.podInformer(kick)
	if err != nil {
		return err
	}
	wg.Go(func() { informer.RunWithContext(watchCtx) })

	resync := time.NewTicker(p.opts.Resync)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := p.minBackoff

	r.observe(st)
	for {
		// Every wake-up below reconciles: reads are cheap and patches are
		// sent only for differences.
		err := r.reconcileUntil(ctx, st, changed)
		switch {
		case ctx.Err() != nil || errors.Is(err, errSuperseded):
			// The select below picks up what happened.
		case err != nil:
			r.failed(err, backoff)
			retry.Reset(jitter(backoff))
			backoff = min(2*backoff, p.maxBackoff)
		default:
			r.succeeded()
			retry.Stop()
			backoff = p.minBackoff
		}
		select {
		case <-ctx.Done():
			r.shutdown(ctx, st)
			return nil
		case <-changed:
			st, changed = src.Status()
			r.observe(st)
		case <-kick:
		case <-resync.C:
		case <-retry.C:
		}
	}
}

var errSuperseded = errors.New("kube: status changed")

// reconcileUntil reconciles st, abandoning the attempt as soon as the status
// changes: a newer status matters more than finishing a stale update.
func (r *run) reconcileUntil(ctx context.Context, st election.Status, changed <-chan struct{}) error {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-changed:
			cancel(errSuperseded)
		case <-done:
		}
	}()
	err := r.reconcile(rctx, st)
	if err != nil && errors.Is(context.Cause(rctx), errSuperseded) {
		return errSuperseded
	}
	return err
}

func (r *run) failed(err error, backoff time.Duration) {
	if !r.failing {
		r.log.Warn("publishing to Kubernetes failed; retrying", "err", err)
	} else {
		r.log.Debug("publishing to Kubernetes failed again", "err", err, "retry_in", backoff)
	}
	r.failing = true
}

func (r *run) succeeded() {
	if r.failing {
		r.log.Info("publishing to Kubernetes recovered")
	}
	r.failing = false
}

// observe records events for leadership transitions in st.
func (r *run) observe(st election.Status) {
	wasLeading, oldToken := r.leading, r.token
	r.leading, r.token = st.IsLeader, st.FencingToken
	if wasLeading && (!st.IsLeader || st.FencingToken != oldToken) {
		r.event(ReasonSteppedDown, steppedDownMessage(st.Election, oldToken), false)
	}
	if st.IsLeader && (!wasLeading || st.FencingToken != oldToken) {
		r.event(ReasonBecameLeader, fmt.Sprintf("became leader of election %q with fencing token %d", st.Election, st.FencingToken), false)
	}
}

func steppedDownMessage(election string, token int64) string {
	return fmt.Sprintf("stepped down as leader of election %q (fencing token %d)", election, token)
}

func (r *run) event(reason, message string, wait bool) <-chan struct{} {
	r.log.Info(message, "reason", reason)
	if r.events == nil {
		return nil
	}
	return r.events.record(r.pod, reason, message, wait)
}

// shutdown takes the leader label and the gate off, within a bounded time,
// whether or not the API server answers.
func (r *run) shutdown(ctx context.Context, st election.Status) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.shutdownTimeout)
	defer cancel()
	var written <-chan struct{}
	if r.leading {
		written = r.event(ReasonSteppedDown, steppedDownMessage(st.Election, r.token), true)
		r.leading = false
	}
	final := st
	final.IsLeader = false
	if err := r.reconcile(sctx, final); err != nil {
		r.log.Warn("could not set follower on shutdown", "err", err)
	}
	if written != nil {
		select {
		case <-written:
		case <-sctx.Done():
			r.log.Warn("could not record the SteppedDown event on shutdown")
		}
	}
}

// podInformer watches only this pod and kicks the loop on every change.
func (p *Publisher) podInformer(kick chan<- struct{}) (cache.SharedIndexInformer, error) {
	pods := p.client.CoreV1().Pods(p.opts.PodNamespace)
	selector := fields.OneTermEqualSelector("metadata.name", p.opts.PodName).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return pods.Watch(ctx, o)
		},
	}
	informer := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	})
	if err != nil {
		return nil, fmt.Errorf("kube: watching pod: %w", err)
	}
	return informer, nil
}

// jitter spreads retries of many pods by up to +20%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}
