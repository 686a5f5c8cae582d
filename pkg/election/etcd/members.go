package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// Why one client per member rather than one client for every endpoint:
// clientv3 spreads requests over its endpoints round-robin and keeps using
// a member whose process hangs (SIGSTOP, a stalled disk), because its TCP
// connection stays open; only a gRPC keepalive would drop it, and gRPC
// does not ping more often than every 10 s (etcd issue #10816). A
// request, or a watch, that lands on such a member waits for its deadline
// or forever. Here every request names the member it goes to, is bounded
// by a deadline derived from the TTL, and a member that leaves it
// unanswered is passed over by the next attempt and by later calls.

// Timings derived from the TTL.
const (
	// requestShare: each request, and each probe of a watch, gets TTL/6
	// (333 ms at etcd's minimum TTL of 2 s), so that a renewal, which the
	// engine bounds by TTL/3 and which takes two requests, still succeeds
	// on a healthy member after one attempt went unanswered.
	requestShare = 6
	// keepAliveMin is gRPC's floor for client keepalive pings
	// (grpc internal.KeepaliveMinPingTime); etcd's server refuses pings more
	// often than every 5 s by default (--grpc-keepalive-min-time).
	keepAliveMin = 10 * time.Second
)

// member is one etcd endpoint and the client that talks to it alone.
type member struct {
	endpoint string

	mu      sync.Mutex
	client  *clientv3.Client // nil until created
	pending chan struct{}    // closed when the creation under way ends
	err     error            // why the last creation failed
	closed  bool
}

// pool is the backend's members and which of them it prefers.
type pool struct {
	members    []*member
	connectAll sync.Once

	mu  sync.Mutex
	cur int // the member requests go to first
	// silent[i] is when member i last left a request unanswered; zero
	// once it answers. A silent member is tried only after every other.
	silent []time.Time
}

func newPool(endpoints []string) *pool {
	p := &pool{silent: make([]time.Time, len(endpoints))}
	for _, ep := range endpoints {
		p.members = append(p.members, &member{endpoint: ep})
	}
	return p
}

// order returns the members in the order a call tries them: the preferred
// one, then the others that have not gone silent within quarantine, then
// the silent ones, longest silent first.
func (p *pool) order(quarantine time.Duration) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.members)
	var ok, silent []int
	now := time.Now()
	for k := range n {
		i := (p.cur + k) % n
		if s := p.silent[i]; !s.IsZero() && now.Sub(s) < quarantine {
			silent = append(silent, i)
		} else {
			ok = append(ok, i)
		}
	}
	slices.SortStableFunc(silent, func(a, b int) int { return p.silent[a].Compare(p.silent[b]) })
	return append(ok, silent...)
}

// answered records that member i answered: it becomes the preferred one.
func (p *pool) answered(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur, p.silent[i] = i, time.Time{}
}

// faulted records that member i failed a request with err: the next call
// starts with the member after it, and a member that did not answer at all
// is marked silent.
func (p *pool) faulted(i int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == i {
		p.cur = (i + 1) % len(p.members)
	}
	if unanswered(err) {
		p.silent[i] = time.Now()
	}
}

// close closes every member's client. A client still being created is
// closed as soon as it is.
func (p *pool) close() error {
	var errs []error
	for _, m := range p.members {
		m.mu.Lock()
		m.closed = true
		if m.client != nil {
			if err := m.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, err)
			}
			m.client = nil
		}
		m.mu.Unlock()
	}
	return errors.Join(errs...)
}

var errClosed = errors.New("etcd backend closed")

// client returns member i's client, creating it on first use. With auth
// enabled, creating it fetches a token from that member, which can take up
// to the dial timeout (bcrypt on a loaded member, or a member that does
// not answer): the creation goes on in the background, bounded by the dial
// timeout, while the caller waits only until ctx ends. The first use of
// any member starts creating every member's client, so that a member
// failed over to later is usually connected already.
func (b *Backend) client(ctx context.Context, i int) (*clientv3.Client, error) {
	b.pool.connectAll.Do(func() {
		for j := range b.pool.members {
			b.pool.members[j].start(b)
		}
	})
	m := b.pool.members[i]
	done, c, err := m.start(b)
	if done == nil {
		return c, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("connecting to etcd at %s: %w", m.endpoint, ctx.Err())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client == nil {
		return nil, m.err
	}
	return m.client, nil
}

// start returns the member's client if it has one; else it starts creating
// one, unless a creation is under way, and returns the channel closed when
// that creation ends.
func (m *member) start(b *Backend) (<-chan struct{}, *clientv3.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.client != nil:
		return nil, m.client, nil
	case m.closed:
		return nil, nil, errClosed
	case m.pending != nil:
		return m.pending, nil, nil
	}
	done := make(chan struct{})
	m.pending = done
	go func() {
		defer close(done)
		c, err := b.newClient(m.endpoint)
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.closed && c != nil {
			_ = c.Close()
			c, err = nil, errClosed
		}
		m.client, m.err, m.pending = c, err, nil
	}()
	return done, nil, nil
}

// newClient connects to one endpoint.
func (b *Backend) newClient(endpoint string) (*clientv3.Client, error) {
	tlsCfg, err := b.opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint},
		// Bounds fetching the auth token.
		DialTimeout: b.opts.DialTimeout,
		// A backstop that closes connections to a member that stopped
		// answering while nothing else uses them; requests and watch probes
		// find such a member much sooner.
		DialKeepAliveTime:    max(keepAliveMin, b.ttl/2),
		DialKeepAliveTimeout: b.requestTimeout,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			// A hung member accepts TCP connections but never completes
			// the HTTP/2 handshake: give up on it after the dial timeout.
			MinConnectTimeout: b.opts.DialTimeout,
			// Reconnect to a restarted member within about a TTL, not
			// gRPC's default of up to two minutes.
			Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: max(b.ttl/2, time.Second)},
		})},
		TLS:      tlsCfg,
		Username: b.opts.Username,
		Password: b.opts.Password,
		Logger:   zap.NewNop(),
	})
	if err != nil {
		// Classified (a refused password is election.ErrDenied) and named.
		return nil, b.failed(context.Background(), "connecting to etcd at "+endpoint, err)
	}
	return c, nil
}

// errEveryMember marks a call that failed on every member with a member
// fault (no answer, no Raft leader, connection refused).
var errEveryMember = errors.New("no etcd member could serve the request")

// memberErrors is what every member answered, one line.
type memberErrors []error

func (e memberErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e memberErrors) Unwrap() []error { return e }

// call runs op on one member after another, each attempt bounded by the
// request timeout, until a member answers, op fails with an error that is
// not a member's fault (it is returned), or every member was tried once.
// This is failover among the members of one cluster, not a retry: the same
// call on a single-member cluster makes one attempt. With requireLeader a
// member without a Raft leader answers at once rather than holding the
// request until one is elected (clientv3.WithRequireLeader).
func (b *Backend) call(ctx context.Context, what string, requireLeader bool,
	op func(ctx context.Context, i int, cli *clientv3.Client) error) error {
	var errs memberErrors
	for _, i := range b.pool.order(b.ttl) {
		err := b.attempt(ctx, i, requireLeader, op)
		if err == nil {
			return nil
		}
		if !memberFault(err) {
			return b.failed(ctx, what, err)
		}
		// Also when the caller's deadline cut the attempt short: the
		// member did not answer in the time there was.
		b.pool.faulted(i, err)
		if ctx.Err() != nil {
			return b.failed(ctx, what, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", b.pool.members[i].endpoint, err))
	}
	return b.failed(ctx, what, fmt.Errorf("%w: %w", errEveryMember, errs))
}

// attempt runs op once on member i.
func (b *Backend) attempt(ctx context.Context, i int, requireLeader bool,
	op func(ctx context.Context, i int, cli *clientv3.Client) error) error {
	// Connecting is bounded by the dial timeout, not the request timeout:
	// authenticating can take longer than a request.
	cli, err := b.client(ctx, i)
	if err != nil {
		return err
	}
	if conn := cli.ActiveConnection(); conn != nil && conn.GetState() == connectivity.TransientFailure {
		// It failed to connect a moment ago; a request would only wait
		// for its deadline.
		return fmt.Errorf("%w: %w", errNotConnected, status.Error(codes.Unavailable, "connection failed"))
	}
	rctx, cancel := b.request(ctx, requireLeader)
	defer cancel()
	if err := op(rctx, i, cli); err != nil {
		return err
	}
	b.pool.answered(i)
	return nil
}

var errNotConnected = errors.New("not connected")

// request bounds one request by the request timeout.
func (b *Backend) request(ctx context.Context, requireLeader bool) (context.Context, context.CancelFunc) {
	if requireLeader {
		ctx = clientv3.WithRequireLeader(ctx)
	}
	return context.WithTimeout(ctx, b.requestTimeout)
}

// errWatchClosed is a watch channel closed while its context is alive.
var errWatchClosed = errors.New("watch closed")

// memberFault reports whether err says the member could not serve the
// request (it did not answer in time, has no Raft leader, lost the
// request in a leader change, cannot be reached), so another member may:
// as opposed to an answer about the request itself (lease not found,
// permission denied).
func memberFault(err error) bool {
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound), errors.Is(err, rpctypes.ErrPermissionDenied),
		errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrInvalidAuthToken),
		errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrCompacted):
		return false
	case errors.Is(err, errEveryMember), errors.Is(err, errWatchClosed), errors.Is(err, errNotConnected),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	switch code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal:
		return true
	}
	// A watch cancelled by the server carries its reason as text
	// ("etcdserver: no leader") under another code.
	return strings.Contains(err.Error(), rpctypes.ErrNoLeader.Error())
}

// code is the gRPC code of err, which clientv3 returns either as a gRPC
// status or converted to an rpctypes.EtcdError.
func code(err error) codes.Code {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code()
	}
	return status.Code(err)
}

// unanswered reports whether err means the member did not answer at all
// (as opposed to answering that it cannot serve).
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || code(err) == codes.DeadlineExceeded ||
		errors.Is(err, errNotConnected) || errors.Is(err, errWatchClosed)
}

// follow watches key from rev+1 on member i and calls onEvents with each
// batch of events until it reports done, ctx ends, or the member fails:
// the watch ends with an error, or the member does not answer check, which
// runs every request timeout on the same member (a hung member keeps a
// watch open and silent). It returns nil when done, else the error.
func (b *Backend) follow(ctx context.Context, i int, cli *clientv3.Client, key string, rev int64, opts []clientv3.OpOption,
	check func(ctx context.Context) (bool, error), onEvents func(ctx context.Context, evs []*clientv3.Event) (bool, error)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := cli.Watch(wctx, key, append(opts, clientv3.WithRev(rev+1))...)
	tick := time.NewTicker(b.requestTimeout)
	defer tick.Stop()
	run := func(fn func(ctx context.Context) (bool, error)) (bool, error) {
		rctx, rcancel := b.request(ctx, true)
		defer rcancel()
		done, err := fn(rctx)
		if err == nil {
			b.pool.answered(i)
		}
		return done, err
	}
	for {
		var (
			done bool
			err  error
		)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case wr, ok := <-wch:
			switch {
			case !ok && ctx.Err() != nil:
				return ctx.Err()
			case !ok:
				return errWatchClosed
			case wr.Err() != nil:
				return wr.Err()
			case len(wr.Events) == 0:
				continue
			}
			done, err = run(func(ctx context.Context) (bool, error) { return onEvents(ctx, wr.Events) })
		case <-tick.C:
			done, err = run(check)
		}
		if done || err != nil {
			return err
		}
	}
}
