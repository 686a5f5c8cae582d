package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
	etcdbackend "github.com/leader-elector/leader-elector/pkg/election/etcd"
)

// engineStarter runs the sidecar's engine in-process on the etcd backend,
// each candidate with its own etcd client as separate sidecars would have.
func engineStarter(endpoints []string, prefix string, ttl time.Duration) starter {
	return func(ctx context.Context, name, id string) (*contender, error) {
		b, err := etcdbackend.New(etcdbackend.Options{
			Endpoints:   endpoints,
			Prefix:      prefix,
			DialTimeout: etcdbackend.DefaultDialTimeout,
		}, election.Params{Election: name, Identity: id, TTL: ttl}, nil)
		if err != nil {
			return nil, fmt.Errorf("etcd backend: %w", err)
		}
		e, err := election.New(election.Config{Election: name, Identity: id, Backend: b, TTL: ttl})
		if err != nil {
			_ = b.Close()
			return nil, fmt.Errorf("engine: %w", err)
		}
		c := newContender(id)
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c.stop = func(bool) error { cancel(); return nil }
		go func() {
			defer close(c.done)
			defer b.Close()
			_ = e.Run(runCtx)
		}()
		go func() {
			for {
				st, changed := e.Status()
				switch {
				case st.IsLeader:
					c.markLed(time.Now())
				case st.Ready && st.Leader != "" && st.Leader != id:
					c.markWaiting()
				}
				select {
				case <-changed:
				case <-c.done:
					return
				}
			}
		}()
		return c, nil
	}
}
