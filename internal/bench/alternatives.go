package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// leaseTimings are client-go's LeaderElectionConfig durations.
type leaseTimings struct {
	Lease, Renew, Retry time.Duration
}

// clientGoDefaults are the values client-go's documentation and most
// controllers use.
var clientGoDefaults = leaseTimings{Lease: 15 * time.Second, Renew: 10 * time.Second, Retry: 2 * time.Second}

// matchedTimings scales client-go's defaults (15 s, 10 s, 2 s) to a lease of
// ttl, keeping their proportions.
func matchedTimings(ttl time.Duration) leaseTimings {
	return leaseTimings{Lease: ttl, Renew: ttl * 2 / 3, Retry: ttl * 2 / 15}
}

// countingTransport counts the requests that pass through it.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// clientGoStarter runs client-go leader electors with a LeaseLock in
// namespace ns, each with its own clientset as separate pods would have,
// with ReleaseOnCancel. Every request any of them sends is counted in n.
func clientGoStarter(cfg *rest.Config, ns string, tm leaseTimings, n *atomic.Int64) starter {
	return func(ctx context.Context, election, id string) (*contender, error) {
		rc := rest.CopyConfig(cfg)
		rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{next: rt, n: n} })
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, err
		}
		c := newContender(id)
		lock := &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: election, Namespace: ns},
			Client:     cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: id},
		}
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   tm.Lease,
			RenewDeadline:   tm.Renew,
			RetryPeriod:     tm.Retry,
			ReleaseOnCancel: true,
			Name:            election,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { c.markLed(time.Now()) },
				OnStoppedLeading: func() {},
				OnNewLeader: func(identity string) {
					if identity != id {
						c.markWaiting()
					}
				},
			},
		})
		if err != nil {
			return nil, err
		}
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c.stop = func(bool) error { cancel(); return nil }
		go func() {
			defer close(c.done)
			le.Run(runCtx)
		}()
		return c, nil
	}
}

// redsyncStarter runs candidates that take a redsync mutex and extend it
// every ttl/3. A waiter retries after redsync's default random delay of
// 50–250 ms (re-stated here only to notice the first retry).
func redsyncStarter(client *redis.Client, ttl time.Duration) starter {
	rs := redsync.New(goredis.NewPool(client))
	return func(ctx context.Context, election, id string) (*contender, error) {
		c := newContender(id)
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c.stop = func(bool) error { cancel(); return nil }
		m := rs.NewMutex("redsync:"+election,
			redsync.WithExpiry(ttl),
			redsync.WithTries(1<<30),
			redsync.WithRetryDelayFunc(func(int) time.Duration {
				c.markWaiting()
				return time.Duration(50+rand.IntN(200)) * time.Millisecond
			}))
		go func() {
			defer close(c.done)
			if err := m.LockContext(runCtx); err != nil {
				return
			}
			c.markLed(time.Now())
			t := time.NewTicker(ttl / 3)
			defer t.Stop()
			for {
				select {
				case <-runCtx.Done():
					_, _ = m.UnlockContext(context.Background())
					return
				case <-t.C:
					_, _ = m.ExtendContext(runCtx)
				}
			}
		}()
		return c, nil
	}
}

// notingRetry is a redislock retry strategy that notes the first retry.
type notingRetry struct {
	redislock.RetryStrategy
	first func()
}

func (r notingRetry) NextBackoff() time.Duration {
	r.first()
	return r.RetryStrategy.NextBackoff()
}

// redislockStarter runs candidates that obtain a bsm/redislock lock with the
// linear 100 ms retry of its documentation, and refresh it every ttl/3.
func redislockStarter(client *redis.Client, ttl time.Duration) starter {
	rl := redislock.New(client)
	return func(ctx context.Context, election, id string) (*contender, error) {
		c := newContender(id)
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c.stop = func(bool) error { cancel(); return nil }
		opts := &redislock.Options{RetryStrategy: notingRetry{RetryStrategy: redislock.LinearBackoff(100 * time.Millisecond), first: c.markWaiting}}
		go func() {
			defer close(c.done)
			var lock *redislock.Lock
			for lock == nil {
				// Without a deadline Obtain gives up after one TTL; try again.
				l, err := rl.Obtain(runCtx, "redislock:"+election, ttl, opts)
				switch {
				case err == nil:
					lock = l
				case runCtx.Err() != nil:
					return
				case errors.Is(err, redislock.ErrNotObtained), errors.Is(err, context.DeadlineExceeded):
				default:
					// A transient error: wait as long as one retry.
					select {
					case <-runCtx.Done():
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
			c.markLed(time.Now())
			t := time.NewTicker(ttl / 3)
			defer t.Stop()
			for {
				select {
				case <-runCtx.Done():
					_ = lock.Release(context.Background())
					return
				case <-t.C:
					_ = lock.Refresh(runCtx, ttl, nil)
				}
			}
		}()
		return c, nil
	}
}
