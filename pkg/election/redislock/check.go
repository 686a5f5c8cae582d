package redislock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// ErrEvicting means a master's maxmemory-policy lets Redis evict the lock
// under memory pressure (volatile-* evicts keys with a TTL, which the lock
// always has; allkeys-* any key): a waiter would then take a lock whose
// holder still leads. It wraps election.ErrMisconfigured.
var ErrEvicting = fmt.Errorf("redis: maxmemory-policy can evict the lock: %w", election.ErrMisconfigured)

// safePolicy is the only maxmemory-policy under which Redis never deletes
// a key before it expires (writes fail instead when memory is full).
const safePolicy = "noeviction"

// checkNode verifies what node i must allow before it takes part: its
// eviction policy, and every command the scripts and subscriptions use. A
// pass is trusted for recheckInterval, and any call to the node that gets
// no answer clears it (see fanOut), so a restarted, failed-over or
// reconfigured server is checked again before the lock is written there.
func (b *Backend) checkNode(ctx context.Context, i int, c Client) error {
	if err := b.checkPolicy(ctx, c); err != nil {
		b.verified[i].Store(0)
		b.noteCheck(i, err)
		return err
	}
	if err := b.checkACL(ctx, c); err != nil {
		b.verified[i].Store(0)
		b.noteCheck(i, err)
		return err
	}
	b.verified[i].Store(time.Now().UnixNano())
	b.noteCheck(i, nil)
	return nil
}

// checkAll runs checkNode on every node; it fails if any node that answered
// fails a check, and otherwise if too few nodes answered.
func (b *Backend) checkAll(ctx context.Context) error {
	res := fanOut(ctx, b, func(ctx context.Context, i int, c Client) (struct{}, error) {
		return struct{}{}, b.checkNode(ctx, i, c)
	})
	answered := 0
	var firstErr error
	for _, r := range res {
		switch {
		case r.err == nil:
			answered++
		case errors.Is(r.err, election.ErrDenied) || errors.Is(r.err, election.ErrMisconfigured):
			return r.err
		default:
			firstErr = keepFirst(firstErr, r.err)
		}
	}
	if answered < b.quorum {
		return classify(fmt.Errorf("redis: checked %d of %d nodes, need %d: %w", answered, len(b.nodes), b.quorum, firstErr))
	}
	return nil
}

// checkPolicy reads maxmemory-policy with CONFIG GET or, where the ACL
// denies that (managed services often do), from INFO memory. If both are
// denied it refuses unless the operator vouched for the policy
// (Options.AssumeNoEviction).
func (b *Backend) checkPolicy(ctx context.Context, c Client) error {
	policy, err := readPolicy(ctx, c)
	if err != nil {
		if asAuthError(err) == nil {
			return err
		}
		if b.assumeNoEviction {
			return nil
		}
		return fmt.Errorf("%w: cannot read maxmemory-policy (CONFIG GET and INFO are denied: %v); allow the user "+
			"+config|get or +info, or, if every master runs maxmemory-policy %s, say so with "+
			"AssumeNoEviction (flag --redis-assume-noeviction)", ErrAuth, err, safePolicy)
	}
	if policy != safePolicy {
		return fmt.Errorf("%w: maxmemory-policy is %q; set it to %q on every master the election uses",
			ErrEvicting, policy, safePolicy)
	}
	return nil
}

func readPolicy(ctx context.Context, c Client) (string, error) {
	m, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err == nil {
		if p, ok := m["maxmemory-policy"]; ok {
			return p, nil
		}
		return "", errors.New("CONFIG GET maxmemory-policy returned nothing")
	}
	if asAuthError(err) == nil {
		return "", err
	}
	info, ierr := c.Info(ctx, "memory").Result()
	if ierr != nil {
		return "", fmt.Errorf("%w; %w", err, ierr)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok {
			return p, nil
		}
	}
	return "", errors.New("INFO memory has no maxmemory_policy")
}

// checkACL asks the server whether the user may run every command the
// election needs on its keys and channel (check.lua), and names those it
// may not. A server older than 7.0 cannot answer; a missing permission
// then shows when the command is first used, and the scripts write the
// lock last so that such a failure leaves no lock behind.
func (b *Backend) checkACL(ctx context.Context, c Client) error {
	denied, err := b.scripts.check.Run(ctx, c, []string{b.keys.lock, b.keys.counter, b.keys.events, b.keys.since, b.keys.line, b.keys.next}).StringSlice()
	if err != nil {
		if a := asAuthError(err); a != nil {
			return a
		}
		var re redis.Error
		if errors.As(err, &re) && strings.Contains(err.Error(), "acl_check_cmd") {
			return nil // before Redis 7.0: no way to check without running
		}
		return err
	}
	if len(denied) > 0 {
		return fmt.Errorf("%w: the user may not run %s on the election's keys (prefix %q)",
			ErrAuth, strings.Join(denied, ", "), b.prefix)
	}
	return nil
}

// noteCheck logs a node's check result when it changes.
func (b *Backend) noteCheck(i int, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	b.checkMu.Lock()
	changed := b.checkMsg[i] != msg
	b.checkMsg[i] = msg
	b.checkMu.Unlock()
	switch {
	case !changed:
	case err != nil:
		b.logger.Warn("a master fails the election's checks; it takes no part until fixed", "node", b.names[i], "err", err)
	default:
		b.logger.Debug("master checked", "node", b.names[i])
	}
}
