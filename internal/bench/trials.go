package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// contender is one candidate of one election, of any system: a sidecar
// process or an in-process client of a library.
type contender struct {
	id      string
	pid     int           // the candidate's process; 0 when it runs in-process
	led     chan struct{} // closed when it first leads
	ledAt   time.Time     // when it was seen leading; valid once led is closed
	waiting chan struct{} // closed when it has seen another leader, or failed to acquire
	done    chan struct{} // closed when it has stopped (released, exited)
	// stop ends the candidate: gracefully (a release, SIGTERM) or, if crash,
	// without releasing anything (SIGKILL). It does not wait for done.
	stop func(crash bool) error

	once     sync.Once
	waitOnce sync.Once
}

func newContender(id string) *contender {
	return &contender{id: id, led: make(chan struct{}), waiting: make(chan struct{}), done: make(chan struct{})}
}

// markLed records the first time the candidate leads.
func (c *contender) markLed(at time.Time) {
	c.once.Do(func() {
		c.ledAt = at
		close(c.led)
	})
}

// markWaiting records that the candidate is in line behind a leader.
func (c *contender) markWaiting() { c.waitOnce.Do(func() { close(c.waiting) }) }

// starter starts a candidate of an election.
type starter func(ctx context.Context, election, id string) (*contender, error)

// queuedCheck, if not nil, waits until the second of two candidates of an
// election is in line in the backend (its key exists, it is subscribed), so
// the trial does not measure a candidate that has not started waiting yet.
type queuedCheck func(ctx context.Context, election string) error

// trialSpec describes the trials of one system.
type trialSpec struct {
	start  starter
	queued queuedCheck
	crash  bool
	// sample, if set, turns a trial into its sample once next leads; by
	// default the sample is the time from stopping the leader (t0) until
	// next led.
	sample func(t0 time.Time, next *contender) (time.Duration, error)
	// phase, if positive, is the upper bound of a random wait between a
	// candidate getting in line and the leader being stopped. Without it the
	// leader would always stop just after the waiter's first poll, and a
	// polling waiter would always wait a whole interval; with it the stop
	// falls at a random point of the poll and renewal cycles, as in real use.
	phase time.Duration
	// ledTimeout bounds the wait for a new leader in one trial. Exceeding it
	// breaks the measurement.
	ledTimeout time.Duration
}

// waitChan waits for ch, ctx or the timeout.
func waitChan(ctx context.Context, ch <-chan struct{}, timeout time.Duration, what string) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	case <-t.C:
		return fmt.Errorf("%s: not within %v", what, timeout)
	}
}

// runElection runs trials on one election with two candidates: stop the
// leader, time until the other one leads, start a fresh candidate in line,
// repeat. It returns one sample per trial.
func runElection(ctx context.Context, spec trialSpec, election string, trials int) (samples []time.Duration, err error) {
	var all []*contender
	defer func() {
		for _, c := range all {
			_ = c.stop(false)
		}
		for _, c := range all {
			if werr := waitChan(context.WithoutCancel(ctx), c.done, time.Minute, c.id+" stops"); werr != nil && err == nil {
				err = werr
			}
		}
	}()
	next := 0
	start := func() (*contender, error) {
		id := fmt.Sprintf("%s-c%d", election, next)
		next++
		c, err := spec.start(ctx, election, id)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", id, err)
		}
		all = append(all, c)
		return c, nil
	}
	inLine := func(c *contender) error {
		if err := waitChan(ctx, c.waiting, time.Minute, c.id+" waits behind the leader"); err != nil {
			return err
		}
		if spec.queued != nil {
			qctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := spec.queued(qctx, election); err != nil {
				return fmt.Errorf("%s in line: %w", c.id, err)
			}
		}
		return nil
	}

	leader, err := start()
	if err != nil {
		return nil, err
	}
	if err := waitChan(ctx, leader.led, time.Minute, leader.id+" leads"); err != nil {
		return nil, err
	}
	follower, err := start()
	if err != nil {
		return nil, err
	}
	if err := inLine(follower); err != nil {
		return nil, err
	}
	for range trials {
		if spec.phase > 0 {
			if err := randomPause(ctx, spec.phase); err != nil {
				return samples, err
			}
		}
		t0 := time.Now()
		if err := leader.stop(spec.crash); err != nil {
			return samples, err
		}
		if err := waitChan(ctx, follower.led, spec.ledTimeout, "a new leader after "+leader.id+" stopped"); err != nil {
			return samples, err
		}
		sample := follower.ledAt.Sub(t0)
		if spec.sample != nil {
			if sample, err = spec.sample(t0, follower); err != nil {
				return samples, err
			}
		}
		samples = append(samples, sample)
		if err := waitChan(ctx, leader.done, time.Minute, leader.id+" stops"); err != nil {
			return samples, err
		}
		all = all[1:]
		leader = follower
		if follower, err = start(); err != nil {
			return samples, err
		}
		if err := inLine(follower); err != nil {
			return samples, err
		}
	}
	return samples, nil
}

// randomPause waits a uniformly random time in [0, limit). It sets the
// phase of the next trial; nothing waits on it for correctness.
func randomPause(ctx context.Context, limit time.Duration) error {
	t := time.NewTimer(rand.N(limit))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runParallel spreads trials over `parallel` independent elections named
// prefix-0, prefix-1, … that run at the same time, and returns all samples.
func runParallel(ctx context.Context, spec trialSpec, prefix string, trials, parallel int) ([]time.Duration, error) {
	parallel = max(1, min(parallel, trials))
	var (
		mu      sync.Mutex
		samples []time.Duration
		errs    []error
		wg      sync.WaitGroup
	)
	for k := range parallel {
		n := trials / parallel
		if k < trials%parallel {
			n++
		}
		wg.Go(func() {
			s, err := runElection(ctx, spec, fmt.Sprintf("%s-%d", prefix, k), n)
			mu.Lock()
			defer mu.Unlock()
			samples = append(samples, s...)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return samples, err
	}
	if len(samples) != trials {
		return samples, fmt.Errorf("%s: %d samples of %d trials", prefix, len(samples), trials)
	}
	return samples, nil
}
