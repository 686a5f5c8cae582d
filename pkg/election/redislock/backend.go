package redislock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Client is the part of a go-redis client the backend needs: scripts for
// every lock operation and pub/sub to wake waiting candidates. *redis.Client
// implements it; tests wrap it to inject failures.
type Client interface {
	redis.Scripter
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
	// ConfigGet and Info read the server's maxmemory-policy (see checkNode).
	ConfigGet(ctx context.Context, parameter string) *redis.MapStringStringCmd
	Info(ctx context.Context, section ...string) *redis.StringCmd
	Close() error
}

// Config describes one election on already-built clients.
type Config struct {
	// Params names the election and candidate and gives the lock's TTL
	// (a leader renews about every TTL/3). The TTL must be whole
	// milliseconds (Redis' PX unit), at least MinTTL and at most MaxTTL.
	election.Params
	// KeyPrefix is prepended to every key and channel. Empty means
	// DefaultKeyPrefix.
	KeyPrefix string
	// Logger receives the backend's logs. Nil discards them.
	Logger *slog.Logger
	// AssumeNoEviction: see Options.AssumeNoEviction.
	AssumeNoEviction bool
}

// Limits of the lock's TTL.
const (
	// MinTTL leaves room, after Redlock's drift allowance and one request
	// timeout per node, for a renewal well inside the lock's validity.
	MinTTL = 10 * time.Millisecond
	// MaxTTL keeps the TTL in milliseconds far inside Redis' integer range
	// and the lock's life within what a person would ever configure (a day).
	MaxTTL = 24 * time.Hour
)

// ValidateTTL checks ttl against the backend's limits.
func ValidateTTL(ttl time.Duration) error {
	switch {
	case ttl < MinTTL:
		return election.Invalid("TTL", "%v is below the Redis backend's minimum of %v", ttl, MinTTL)
	case ttl > MaxTTL:
		return election.Invalid("TTL", "%v is above the Redis backend's maximum of %v", ttl, MaxTTL)
	case ttl%time.Millisecond != 0:
		return election.Invalid("TTL", "%v: Redis lock TTLs are whole milliseconds", ttl)
	}
	return nil
}

// keys are the names the election uses in Redis.
type keys struct {
	lock    string // holds the leader's lock value
	counter string // the fencing-token counter
	events  string // pub/sub channel for acquisitions and releases
	// since holds, on the server's clock, when the node was first seen
	// holding this election's state; a node that lost its data grants
	// nothing for one TTL after that (see acquire.lua).
	since string
	// line is a hash of the candidates waiting in line (acquire.lua).
	line string
	// next reserves the free lock for the successor a handover chose
	// (handoff.lua).
	next string
}

// newKeys returns the keys of the election whose lock key is base.
func newKeys(base string) keys {
	return keys{lock: base, counter: base + ":token", events: base + ":events", since: base + ":since",
		line: base + ":line", next: base + ":next"}
}

// Backend is a Redis lock election: one master, or Redlock over several
// independent masters.
type Backend struct {
	nodes    []Client
	names    []string // node addresses, for error messages
	quorum   int
	keys     keys
	identity string
	ttl      time.Duration // the lock's TTL as sent to Redis
	validity time.Duration // ttl minus Redlock's clock drift allowance
	// opTimeout bounds one request to one node, so a dead node cannot eat a
	// term's validity.
	opTimeout time.Duration
	// poll is the longest a waiting candidate or observer goes without
	// asking Redis, in case a pub/sub message was lost.
	poll    time.Duration
	scripts scripts
	logger  *slog.Logger
	prefix  string

	// assumeNoEviction accepts masters whose policy cannot be read.
	assumeNoEviction bool
	// verified[i]: when node i last passed checkNode (UnixNano), 0 if it
	// has failed a call since. A pass is trusted for recheck.
	verified []atomic.Int64
	recheck  time.Duration
	checkMu  sync.Mutex
	checkMsg []string // each node's last check result, to log changes only

	// seen is the highest fencing token read from any node. It is passed to
	// the acquire script so a node that lost its counter cannot issue an
	// old token again.
	seen atomic.Int64
}

var _ election.Backend = (*Backend)(nil)

// New validates opts and p (errors are *election.ConfigError naming the
// field), builds clients for the Redis servers in opts and returns the
// backend for the candidate p. It contacts nothing. The backend owns the
// clients; Close releases them.
func New(opts Options, p election.Params, logger *slog.Logger) (*Backend, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := ValidateTTL(p.TTL); err != nil {
		return nil, err
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	copts, err := opts.clientOptions(opTimeout(p.TTL))
	if err != nil {
		return nil, err
	}
	clients := make([]Client, len(copts))
	for i, o := range copts {
		clients[i] = redis.NewClient(o)
	}
	b, err := NewWithClients(clients, Config{Params: p, KeyPrefix: opts.keyPrefix(), Logger: logger,
		AssumeNoEviction: opts.AssumeNoEviction})
	if err != nil {
		for _, c := range clients {
			_ = c.Close()
		}
		return nil, err
	}
	return b, nil
}

// NewWithClients returns the backend for one election on the given clients,
// one per independent master: one client means plain single-node locking,
// an odd number of three or more means Redlock. Close closes the clients.
func NewWithClients(clients []Client, cfg Config) (*Backend, error) {
	switch n := len(clients); {
	case n == 0:
		return nil, errors.New("redis: no clients")
	case n > 1 && (n%2 == 0 || n < 3):
		return nil, fmt.Errorf("redis: Redlock needs an odd number (3 or more) of masters, got %d", n)
	}
	if err := cfg.Params.Validate(); err != nil {
		return nil, err
	}
	if err := ValidateTTL(cfg.TTL); err != nil {
		return nil, err
	}
	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ttl := cfg.TTL
	base := prefix + cfg.Election
	names := make([]string, len(clients))
	for i, c := range clients {
		names[i] = fmt.Sprintf("node %d", i)
		if o, ok := c.(interface{ Options() *redis.Options }); ok {
			names[i] = o.Options().Addr
		}
	}
	return &Backend{
		nodes:     clients,
		names:     names,
		quorum:    len(clients)/2 + 1,
		keys:      newKeys(base),
		identity:  cfg.Identity,
		ttl:       ttl,
		validity:  ttl - drift(ttl),
		opTimeout: opTimeout(ttl),
		poll:      min(max(ttl/4, 10*time.Millisecond), time.Second),
		scripts:   newScripts(),
		logger:    logger.With("backend", "redis", "election", cfg.Election),
		prefix:    prefix,

		assumeNoEviction: cfg.AssumeNoEviction,
		verified:         make([]atomic.Int64, len(clients)),
		recheck:          recheckInterval(ttl),
		checkMsg:         make([]string, len(clients)),
	}, nil
}

// drift is Redlock's allowance for the servers' clocks running fast.
func drift(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

func opTimeout(ttl time.Duration) time.Duration {
	return min(max(ttl/10, 50*time.Millisecond), time.Second)
}

// Name implements election.Backend.
func (b *Backend) Name() string { return "redis" }

// Candidate implements election.Backend. Redis holds nothing for a
// candidate until it wins, so the returned Validity is zero. It checks
// every master that answers (checkNode: no eviction policy that could
// delete the lock, every needed command allowed) and fails with the first
// problem, naming the master; then it reads the lock on every node, so
// that an unreachable Redis is an error here.
func (b *Backend) Candidate(ctx context.Context) (election.Candidacy, election.Validity, error) {
	if err := b.checkAll(ctx); err != nil {
		return nil, election.Validity{}, err
	}
	if _, _, err := b.read(ctx); err != nil {
		return nil, election.Validity{}, err
	}
	member, err := newMember()
	if err != nil {
		return nil, election.Validity{}, err
	}
	return &candidacy{b: b, member: member}, election.Validity{}, nil
}

// Close closes every client.
func (b *Backend) Close() error {
	var errs []error
	for _, c := range b.nodes {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// noteToken raises seen to t.
func (b *Backend) noteToken(t int64) {
	for {
		cur := b.seen.Load()
		if t <= cur || b.seen.CompareAndSwap(cur, t) {
			return
		}
	}
}

// Observe implements election.Backend. It reads the lock at start, on every
// pub/sub event, when the current lock is due to expire, and at least every
// poll interval, and calls fn on every change. The first failed read ends
// it with that error: the engine decides what an outage means.
func (b *Backend) Observe(ctx context.Context, fn func(election.Leader)) error {
	wake, stop := b.subscribe(ctx, func(string) bool { return true })
	defer stop()
	var (
		last     election.Leader
		reported bool
	)
	for {
		leader, expires, err := b.read(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return err
		}
		if !reported || leader != last {
			fn(leader)
			last, reported = leader, true
		}
		wait := b.poll
		if expires > 0 {
			// Notice an expired lock (which publishes nothing) at once.
			wait = min(wait, expires+time.Millisecond)
		}
		if err := waitFor(ctx, wait, wake); err != nil {
			return err
		}
	}
}

// read returns the leader as a majority of nodes sees it, and how long until
// the earliest lock copy expires (0 when no node holds one).
func (b *Backend) read(ctx context.Context) (election.Leader, time.Duration, error) {
	type state struct {
		value   string
		counter int64
		pttl    time.Duration
	}
	res := fanOut(ctx, b, func(ctx context.Context, _ int, c Client) (state, error) {
		r, err := b.scripts.read.Run(ctx, c, []string{b.keys.lock, b.keys.counter}).Slice()
		if err != nil {
			return state{}, err
		}
		if len(r) != 3 {
			return state{}, fmt.Errorf("read script returned %d values", len(r))
		}
		value, _ := r[0].(string)
		counter, _ := r[1].(int64)
		pttl, _ := r[2].(int64)
		return state{value, counter, time.Duration(pttl) * time.Millisecond}, nil
	})
	var (
		answered int
		firstErr error
		holders  = map[string]int{}
		tokens   = map[string]int64{}
		expires  time.Duration
	)
	for _, r := range res {
		if r.err != nil {
			firstErr = keepFirst(firstErr, r.err)
			continue
		}
		answered++
		b.noteToken(r.val.counter)
		if r.val.value == "" {
			continue
		}
		holders[r.val.value]++
		tokens[r.val.value] = max(tokens[r.val.value], r.val.counter)
		if r.val.pttl > 0 && (expires == 0 || r.val.pttl < expires) {
			expires = r.val.pttl
		}
	}
	if answered < b.quorum {
		return election.Leader{}, 0, classify(fmt.Errorf("redis: read the lock on %d of %d nodes, need %d: %w",
			answered, len(b.nodes), b.quorum, firstErr))
	}
	for value, n := range holders {
		if n < b.quorum {
			continue
		}
		id, err := parseValue(value)
		if err != nil {
			// Someone else wrote the key; still, somebody holds it.
			b.logger.Warn("lock key holds a foreign value", "key", b.keys.lock, "err", err)
			id = value
		}
		return election.Leader{ID: id, Token: tokens[value]}, expires, nil
	}
	return election.Leader{}, expires, nil
}

// release deletes value's lock on every node; it returns how many nodes
// answered and the first error. announce publishes the release, waking
// waiting candidates; a round that never reached a majority withdraws
// without it, or every failed round would wake every waiter (a retry storm
// while a restarted master lets each waiter take it alone).
//
// member, when not empty, is the candidacy that ends: it also leaves the
// line.
func (b *Backend) release(ctx context.Context, value string, announce bool, member string) (int, error) {
	flag := "0"
	if announce {
		flag = "1"
	}
	res := fanOut(ctx, b, func(ctx context.Context, _ int, c Client) (int64, error) {
		return b.scripts.release.Run(ctx, c, []string{b.keys.lock, b.keys.events, b.keys.line},
			value, flag, member).Int64()
	})
	answered := 0
	var firstErr error
	for _, r := range res {
		if r.err != nil {
			firstErr = keepFirst(firstErr, r.err)
			continue
		}
		answered++
	}
	return answered, firstErr
}

// releaseDetached releases value even if ctx was cancelled: a lock this
// process grabbed but will not use must not block others until it expires.
func (b *Backend) releaseDetached(ctx context.Context, value string, announce bool) {
	if _, err := b.release(context.WithoutCancel(ctx), value, announce, ""); err != nil {
		b.logger.Debug("release of an unused lock failed; it expires on its own", "err", err)
	}
}

// result is one node's answer.
type result[T any] struct {
	val T
	err error
}

// fanOut calls fn on every node at once, each call bounded by opTimeout, and
// waits for all of them. fn must be idempotent: it is tried again once when
// it met a connection that had died while idle.
func fanOut[T any](ctx context.Context, b *Backend, fn func(ctx context.Context, i int, c Client) (T, error)) []result[T] {
	ctx, cancel := context.WithTimeout(ctx, b.opTimeout)
	defer cancel()
	res := make([]result[T], len(b.nodes))
	call := func(i int, c Client) {
		v, err := fn(ctx, i, c)
		if staleConn(err) && ctx.Err() == nil {
			// A pooled connection that died while idle (the server
			// restarted, a proxy reset it) fails its first use; the
			// scripts are idempotent, so one try on a fresh connection
			// tells a dead connection from a dead node.
			b.verified[i].Store(0)
			v, err = fn(ctx, i, c)
		}
		var reply redis.Error
		if err != nil && !errors.As(err, &reply) {
			// No answer: the node may come back as another server (a
			// restart, a failover), to be checked again before use.
			b.verified[i].Store(0)
		}
		res[i] = result[T]{v, b.nodeErr(i, err)}
	}
	if len(b.nodes) == 1 {
		call(0, b.nodes[0])
		return res
	}
	var wg sync.WaitGroup
	for i, c := range b.nodes {
		wg.Go(func() { call(i, c) })
	}
	wg.Wait()
	return res
}

// staleConn reports whether err is what a connection closed by the peer
// gives on its next use.
func staleConn(err error) bool {
	return err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed))
}

// ensureChecked runs checkNode on node i unless it passed less than one
// re-check interval ago and has not failed a call since.
func (b *Backend) ensureChecked(ctx context.Context, i int, c Client) error {
	if at := b.verified[i].Load(); at != 0 && time.Since(time.Unix(0, at)) < b.recheck {
		return nil
	}
	return b.checkNode(ctx, i, c)
}

// recheckInterval is how long a master's check is trusted while its
// connection stays up: a maxmemory-policy or ACL changed at runtime is
// noticed within it (two TTLs: two commands per master per interval).
func recheckInterval(ttl time.Duration) time.Duration { return 2 * ttl }

// nodeErr names the node an error came from.
func (b *Backend) nodeErr(i int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", b.names[i], err)
}

// keepFirst keeps the first non-nil error.
func keepFirst(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Caveats implements election.Caveats: what this backend, unlike etcd,
// cannot guarantee (see the package doc).
func (b *Backend) Caveats() string {
	s := "lock expiry follows the Redis server's wall clock (so does a switchover's reservation for the chosen successor, one TTL); a failover to an asynchronously replicated replica can lose the lock"
	if len(b.nodes) > 1 {
		return s + "; Redlock assumes bounded clock drift, and fencing tokens can repeat only if masters lose their data so that no node of a later majority remembers an earlier token"
	}
	return s + "; fencing tokens can repeat only if the server loses its data and the winner never saw the higher token"
}
