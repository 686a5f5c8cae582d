package lease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Planned operations on the Lease backend: switchover (election.Handoff),
// release of a crashed process's candidacy (election.Reclaimer) and
// generation-ordered rollouts (election.Generations). Each binds
// leader-elector candidates only: a client-go elector on the same Lease
// ignores the line and the annotations.

var (
	_ election.Handoff     = (*Backend)(nil)
	_ election.Reclaimer   = (*Backend)(nil)
	_ election.Generations = (*Backend)(nil)
)

func (b *Backend) own(cand election.Candidacy) (*candidacy, error) {
	c, ok := cand.(*candidacy)
	if !ok || c.b != b {
		return nil, errors.New("lease: a candidacy this backend did not create")
	}
	return c, nil
}

// hold is the candidacy's Hold while it waits: a candidate that published
// a generation does not take the Lease while a live candidate of a newer
// generation is in line, until that one's entry goes or looks dead.
func (c *candidacy) hold() (bool, time.Time, <-chan struct{}) {
	v, changed := c.b.line.current()
	gen := c.gen.Load()
	if gen <= 0 {
		return false, time.Time{}, changed
	}
	var until time.Time
	for _, o := range v.live(c.b.nonce) {
		if o.Generation > gen && (until.IsZero() || o.Until.Before(until)) {
			until = o.Until
		}
	}
	return !until.IsZero(), until, changed
}

// successor finds the one live candidate named to in line, other than
// cand, from a fresh read of the line.
func (b *Backend) successor(ctx context.Context, to string) error {
	if _, err := b.line.get(ctx); apierrors.IsForbidden(err) {
		return fmt.Errorf("%w: %q: reading the candidates' Lease %s is forbidden, so nobody is seen in line: %w",
			election.ErrNotInLine, to, b.line.name, err)
	} else if err != nil {
		return classify(err)
	}
	v, _ := b.line.current()
	found := 0
	for _, o := range v.live(b.nonce) {
		if o.Identity == to {
			found++
		}
	}
	switch {
	case found == 1:
		return nil
	case found > 1:
		return fmt.Errorf("%w: %d candidates are named %q in the line of Lease %s; refusing to choose one",
			election.ErrNotInLine, found, to, b.lock.Describe())
	case b.denied.Load():
		return fmt.Errorf("%w: %q: the candidates' Lease %s is forbidden to this candidate, so it sees nobody in line",
			election.ErrNotInLine, to, b.line.name)
	}
	return fmt.Errorf("%w: no live candidate named %q is in line for Lease %s (%d others are)",
		election.ErrNotInLine, to, b.lock.Describe(), len(v.live(b.nonce)))
}

// CheckSuccessor implements election.Handoff.
func (b *Backend) CheckSuccessor(ctx context.Context, cand election.Candidacy, to string) error {
	c, err := b.own(cand)
	if err != nil {
		return err
	}
	if c.current() == nil {
		return fmt.Errorf("lease: not holding Lease %s: %w", b.lock.Describe(), election.ErrNotLeader)
	}
	return b.successor(ctx, to)
}

// HandOver implements election.Handoff: after checking that to is in line,
// one conditional update of the election's Lease releases it and reserves
// it for to for one lease duration (Lock.HandOver). Among leader-elector
// candidates, only to can take it then, with the next token; if to never
// comes, the others take it after that duration. A client-go elector takes
// a released Lease at once and is not held back.
func (b *Backend) HandOver(ctx context.Context, cand election.Candidacy, to string) error {
	c, err := b.own(cand)
	if err != nil {
		return err
	}
	t := c.current()
	if t == nil {
		return fmt.Errorf("lease: not holding Lease %s: %w", b.lock.Describe(), election.ErrNotLeader)
	}
	if err := b.successor(ctx, to); err != nil {
		return err
	}
	if err := b.lock.HandOver(ctx, t, to, b.lock.duration); err != nil {
		return classify(err)
	}
	b.log.Info("handed over", "to", to, "token", t.Token)
	c.finish(ctx)
	return nil
}

// Handle implements election.Reclaimer: "<nonce>:<identity>", the nonce of
// this process, which its terms carry in IncarnationAnnotation and its line
// entry in its key.
func (b *Backend) Handle(cand election.Candidacy) string {
	if _, err := b.own(cand); err != nil {
		return ""
	}
	return b.nonce + ":" + b.identity
}

// Reclaim implements election.Reclaimer: it releases the election's Lease
// if its holder is this identity and the term was taken by the process
// named by handle (its nonce), and removes that process's line entry if
// it still names this identity. A term or entry of any other process, a
// live twin started with the same identity included, carries another
// nonce and is never touched.
func (b *Backend) Reclaim(ctx context.Context, handle string) error {
	nonce, id, ok := strings.Cut(handle, ":")
	switch {
	case !ok || nonce == "" || strings.Trim(nonce, "0123456789abcdef") != "":
		return fmt.Errorf("lease: reclaim: handle %q is not <nonce>:<identity>", handle)
	case id != b.identity:
		return fmt.Errorf("lease: reclaim: handle %q names identity %q, not this candidate's %q; leaving it", handle, id, b.identity)
	case nonce == b.nonce:
		return fmt.Errorf("lease: reclaim: handle %q names this very process", handle)
	}
	released, err := b.lock.ReleaseOf(ctx, nonce)
	if err != nil {
		return classify(err)
	}
	if released {
		b.log.Info("released the term of an earlier process", "nonce", nonce)
	}
	obj, err := b.line.get(ctx)
	if err != nil || obj == nil {
		return classify(err)
	}
	v, has := obj.Annotations[candidateKey(nonce)]
	if !has {
		return nil
	}
	if e, ok := decodeEntry(v); !ok || e.ID != b.identity {
		return fmt.Errorf("lease: reclaim: the line entry of %s does not name identity %q; leaving it", nonce, b.identity)
	}
	if err := b.line.remove(ctx, nonce, v); err != nil && !errors.Is(err, errEntryGone) {
		return classify(err)
	}
	return nil
}

// WaitNewer implements election.Generations: it publishes gen on the
// candidacy's line entry and calls queued. It then blocks until ctx ends:
// on this backend a candidate never needs to queue again, since Campaign
// itself does not take the Lease while a live newer generation is in line.
// Without a place in line (the line object forbidden) it calls queued, so
// readiness does not wait for what cannot come, and returns an error.
func (b *Backend) WaitNewer(ctx context.Context, cand election.Candidacy, gen int64, queued func()) error {
	c, err := b.own(cand)
	if err != nil {
		return err
	}
	if !c.inLine() {
		queued()
		return fmt.Errorf("lease: generations off: candidacy not in line (the candidates' Lease %s is forbidden or was lost)", b.line.name)
	}
	if err := c.update(ctx, func(e *entry) { e.Gen = gen; e.N++ }); err != nil {
		return classify(err)
	}
	c.gen.Store(gen)
	queued()
	<-ctx.Done()
	return ctx.Err()
}

// NewerSuccessor implements election.Generations: the first to join among
// the live candidates in line with the greatest generation above gen.
func (b *Backend) NewerSuccessor(ctx context.Context, cand election.Candidacy, gen int64) (string, error) {
	if _, err := b.own(cand); err != nil {
		return "", err
	}
	if _, err := b.line.get(ctx); apierrors.IsForbidden(err) {
		return "", nil // nobody can be in line
	} else if err != nil {
		return "", classify(err)
	}
	v, _ := b.line.current()
	best, id := gen, ""
	for _, o := range v.live(b.nonce) { // in join order
		if o.Generation > best {
			best, id = o.Generation, o.Identity
		}
	}
	return id, nil
}
