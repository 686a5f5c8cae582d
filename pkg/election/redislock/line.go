package redislock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Redis has no queue, so candidates that wait register in a line: a hash
// per node (keys.line) in which every waiting candidacy has an entry with
// its identity, generation, order of arrival and an expiry on the server's
// clock, refreshed by each acquisition attempt (acquire.lua). A leader has
// no entry; a candidacy that ends removes its own (release.lua); a crashed
// one's expires within a TTL, or is removed by its restarted process
// (Reclaim). With Redlock each master keeps its own line; a candidate is
// in line where a majority of masters lists it.

// entry is one live candidacy in one node's line.
type entry struct {
	member   string
	seq      int64 // order of arrival on that node
	gen      int64
	identity string
}

// nodeLine is one node's view: the lock, a handover's reservation and the
// live entries, in order of arrival.
type nodeLine struct {
	lock     string
	reserved string
	entries  []entry
}

// own returns cand as this backend's candidacy.
func (b *Backend) own(cand election.Candidacy) (*candidacy, error) {
	c, ok := cand.(*candidacy)
	if !ok || c.b != b {
		return nil, errors.New("redis: a candidacy this backend did not create")
	}
	return c, nil
}

// readLine reads every node's line. It fails when fewer than a majority
// answered; lines[i] is nil for a node that did not.
func (b *Backend) readLine(ctx context.Context) ([]*nodeLine, error) {
	res := fanOut(ctx, b, func(ctx context.Context, _ int, c Client) (*nodeLine, error) {
		r, err := b.scripts.line.Run(ctx, c, []string{b.keys.lock, b.keys.line, b.keys.next}).StringSlice()
		if err != nil {
			return nil, err
		}
		return parseLine(r)
	})
	lines := make([]*nodeLine, len(res))
	answered := 0
	var firstErr error
	for i, r := range res {
		if r.err != nil {
			firstErr = keepFirst(firstErr, r.err)
			continue
		}
		lines[i] = r.val
		answered++
	}
	if answered < b.quorum {
		return nil, classify(fmt.Errorf("redis: read the line on %d of %d nodes, need %d: %w",
			answered, len(b.nodes), b.quorum, firstErr))
	}
	return lines, nil
}

// parseLine reads line.lua's reply.
func parseLine(r []string) (*nodeLine, error) {
	if len(r) < 2 || len(r)%2 != 0 {
		return nil, fmt.Errorf("line script returned %d values", len(r))
	}
	l := &nodeLine{lock: r[0], reserved: r[1]}
	for i := 2; i < len(r); i += 2 {
		e, err := parseEntry(r[i], r[i+1])
		if err != nil {
			return nil, err
		}
		l.entries = append(l.entries, e)
	}
	slices.SortFunc(l.entries, func(a, b entry) int { return int(a.seq - b.seq) })
	return l, nil
}

// parseEntry reads one entry: "<seq> <expires> <generation> <identity>".
func parseEntry(member, v string) (entry, error) {
	f := strings.SplitN(v, " ", 4)
	if len(f) != 4 {
		return entry{}, fmt.Errorf("line entry %q of %s is malformed", v, member)
	}
	seq, err1 := strconv.ParseInt(f[0], 10, 64)
	gen, err2 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return entry{}, fmt.Errorf("line entry %q of %s: %w", v, member, err)
	}
	return entry{member: member, seq: seq, gen: gen, identity: f[3]}, nil
}

// inLine is a candidacy as a majority of nodes lists it.
type inLine struct {
	entry     // as the first node that lists it has it
	nodes int // how many nodes list it
	first int // the first node that lists it
}

// merge returns the candidacies that lines list, other than skip, in line
// order: by the first answering node's order of arrival, then (for those
// that node does not list) by the next node's.
func merge(lines []*nodeLine, skip string) []inLine {
	idx := map[string]int{}
	var out []inLine
	for i, l := range lines {
		if l == nil {
			continue
		}
		for _, e := range l.entries {
			if e.member == skip {
				continue
			}
			if j, ok := idx[e.member]; ok {
				out[j].nodes++
				continue
			}
			idx[e.member] = len(out)
			out = append(out, inLine{entry: e, nodes: 1, first: i})
		}
	}
	return out
}
