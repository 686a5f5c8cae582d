package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ScaleResult describes many elections with two in-process engines each on
// one etcd process.
type ScaleResult struct {
	Elections  int
	Candidates int
	TTL        time.Duration
	Window     time.Duration
	Startup    time.Duration // from the first start until every election had a leader and a waiting candidate
	// Steady state over Window.
	EtcdCPU        time.Duration // etcd's CPU time per second
	EtcdRSS        int64
	EnginesCPU     time.Duration // CPU time per second of the process running every engine
	EnginesRSS     int64
	RequestsPerSec float64 // gRPC messages etcd received per second, all candidates
	// Handover while the others keep running.
	Handover Summary
}

// runScale starts elections×2 engines against etcd, measures the steady
// state over window, then hands over in `trials` randomly chosen elections.
func runScale(ctx context.Context, etcd *etcdServer, cli *clientv3.Client, elections, trials int, ttl, window time.Duration) (ScaleResult, error) {
	res := ScaleResult{Elections: elections, Candidates: 2 * elections, TTL: ttl}
	const prefix = "/bench-scale/"
	start := engineStarter([]string{etcd.URL}, prefix, ttl)
	queued := etcdQueued(cli, prefix, 2)
	name := func(i int) string { return fmt.Sprintf("scale-%d", i) }

	type pair struct{ leader, follower *contender }
	pairs := make([]pair, elections)
	var all []*contender
	var allMu sync.Mutex
	defer func() {
		for _, c := range all {
			_ = c.stop(false)
		}
		for _, c := range all {
			_ = waitChan(context.WithoutCancel(ctx), c.done, time.Minute, c.id+" stops")
		}
	}()
	gen := 0
	newID := func(i int) string {
		allMu.Lock()
		defer allMu.Unlock()
		gen++
		return fmt.Sprintf("%s-c%d", name(i), gen)
	}
	track := func(c *contender) {
		allMu.Lock()
		all = append(all, c)
		allMu.Unlock()
	}

	// Start in batches so start-up does not measure a thundering herd.
	t0 := time.Now()
	const batch = 50
	for lo := 0; lo < elections; lo += batch {
		hi := min(lo+batch, elections)
		errs := make([]error, hi-lo)
		var wg sync.WaitGroup
		for i := lo; i < hi; i++ {
			wg.Go(func() {
				errs[i-lo] = func() error {
					l, err := start(ctx, name(i), newID(i))
					if err != nil {
						return err
					}
					track(l)
					if err := waitChan(ctx, l.led, 2*time.Minute, l.id+" leads"); err != nil {
						return err
					}
					f, err := start(ctx, name(i), newID(i))
					if err != nil {
						return err
					}
					track(f)
					if err := waitChan(ctx, f.waiting, 2*time.Minute, f.id+" waits"); err != nil {
						return err
					}
					pairs[i] = pair{l, f}
					return nil
				}()
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return res, fmt.Errorf("scale start-up: %w", err)
			}
		}
	}
	res.Startup = time.Since(t0)

	// Steady state.
	before, err := etcdReceived(ctx, etcd.URL)
	if err != nil {
		return res, err
	}
	e0, err := readUsage(etcd.Pid())
	if err != nil {
		return res, err
	}
	s0, err := readUsage(os.Getpid())
	if err != nil {
		return res, err
	}
	timer := time.NewTimer(window)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
		return res, ctx.Err()
	}
	e1, err := readUsage(etcd.Pid())
	if err != nil {
		return res, err
	}
	s1, err := readUsage(os.Getpid())
	if err != nil {
		return res, err
	}
	after, err := etcdReceived(ctx, etcd.URL)
	if err != nil {
		return res, err
	}
	res.Window = e1.At.Sub(e0.At)
	res.EtcdCPU, res.EtcdRSS = cpuPerSecond(e0, e1), e1.RSS
	res.EnginesCPU, res.EnginesRSS = cpuPerSecond(s0, s1), s1.RSS
	res.RequestsPerSec = (after - before) / res.Window.Seconds()

	// Handovers while everything else keeps renewing.
	var samples []time.Duration
	for range trials {
		i := rand.IntN(elections)
		p := pairs[i]
		if err := queued(ctx, name(i)); err != nil {
			return res, err
		}
		// A random phase, capped so that 200 trials at a 10 s TTL stay short.
		if err := randomPause(ctx, min(ttl/3, 500*time.Millisecond)); err != nil {
			return res, err
		}
		t := time.Now()
		if err := p.leader.stop(false); err != nil {
			return res, err
		}
		if err := waitChan(ctx, p.follower.led, time.Minute, "a new leader of "+name(i)); err != nil {
			return res, err
		}
		samples = append(samples, p.follower.ledAt.Sub(t))
		if err := waitChan(ctx, p.leader.done, time.Minute, p.leader.id+" stops"); err != nil {
			return res, err
		}
		f, err := start(ctx, name(i), newID(i))
		if err != nil {
			return res, err
		}
		track(f)
		if err := waitChan(ctx, f.waiting, time.Minute, f.id+" waits"); err != nil {
			return res, err
		}
		pairs[i] = pair{p.follower, f}
	}
	if res.Handover, err = Summarize(samples); err != nil {
		return res, fmt.Errorf("scale handover: %w", err)
	}
	return res, nil
}
