package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// The line: which leader-elector candidates wait for the election's Lease.
//
// It lives in a second Lease object, named after the election's Lease with
// LineSuffix, whose spec is never used: each waiting candidate keeps one
// annotation on it, CandidateKeyPrefix + its process's nonce, holding a
// small JSON entry (identity, generation, join order, duration and a
// renewal counter). One object with a fixed name, rather than one object
// per candidate, is what lets RBAC keep naming every object the sidecar may
// touch (resourceNames), as it does for the election's Lease: per-candidate
// objects would need update and delete on every Lease of the namespace.
//
// Liveness is judged like the holder's: an entry is live while this process
// has seen its current value for less than the entry's duration, on its own
// monotonic clock. Its owner changes it (the counter) about every third of
// the duration while it waits, so a live candidate never looks dead; an
// entry first seen at start-up looks live for one duration.
//
// Writes, by their owner only except for clean-up:
//   - join: a merge patch carrying the object's resourceVersion (optimistic
//     concurrency) that adds the entry with the next join number;
//   - renew, publish a generation: a JSON patch that tests the entry's last
//     written value and replaces it, so candidates never conflict with each
//     other and a removed entry is noticed (the test fails);
//   - leave, reclaim, clean-up of entries dead for cleanupAfter durations:
//     a JSON patch that tests the value judged and removes it.

// Names on the line object and the election's Lease.
const (
	// LineSuffix is appended to the election Lease's name to name the line.
	LineSuffix = "-candidates"
	// CandidateKeyPrefix begins the annotation key of each waiting
	// candidate; the process's nonce follows.
	CandidateKeyPrefix = "candidate.leader-elector.io/"
	// lineOfAnnotation marks the line object with the election Lease's name.
	lineOfAnnotation = "leader-elector.io/candidates-of"
	// nextSeqAnnotation is the join number the next candidate gets.
	nextSeqAnnotation = "leader-elector.io/next-seq"
)

// cleanupAfter is how many of an entry's durations it must have looked
// dead (unchanged) before a live candidate removes it.
const cleanupAfter = 3

// maxLineWrites bounds a join's attempts when other candidates change the
// line object at the same time (contention, not failure: each round one of
// the candidates joining together wins). Between attempts a joiner waits a
// random few milliseconds, growing with the attempt, to spread them.
const maxLineWrites = 20

// entry is one candidate's annotation value.
type entry struct {
	ID  string `json:"id"`
	Gen int64  `json:"gen,omitempty"`
	Seq int64  `json:"seq"`
	TTL int32  `json:"ttl"` // seconds
	N   int64  `json:"n"`   // renewal counter: changes the value
}

func (e entry) encode() string {
	b, _ := json.Marshal(e) // a struct of strings and integers always encodes
	return string(b)
}

func decodeEntry(s string) (entry, bool) {
	var e entry
	if err := json.Unmarshal([]byte(s), &e); err != nil || e.ID == "" {
		return entry{}, false
	}
	return e, true
}

// Candidate is a waiting candidate as one observer judges it.
type Candidate struct {
	Nonce      string
	Identity   string
	Generation int64
	Seq        int64 // join order: lower joined earlier
	// Live: its entry changed less than its duration ago on this observer's
	// clock. Until is when it stops being live if it does not change.
	Live  bool
	Until time.Time
	value string
	seen  time.Time
}

// lineView is one observer's view of the line object.
type lineView struct {
	known   bool
	rv      string
	entries map[string]Candidate // by nonce
}

// line follows and writes the line object of one election.
type line struct {
	leases   coordinationv1client.LeaseInterface
	name     string // the line object's name
	of       string // the election Lease's name
	duration time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	view    lineView
	changed chan struct{}
}

func newLine(leases coordinationv1client.LeaseInterface, of string, duration time.Duration, log *slog.Logger) *line {
	return &line{
		leases: leases, name: of + LineSuffix, of: of, duration: duration, log: log,
		view: lineView{entries: map[string]Candidate{}}, changed: make(chan struct{}),
	}
}

// lineName returns the name of the line object of Lease name, and whether
// it is a valid object name.
func lineName(name string) (string, bool) {
	n := name + LineSuffix
	return n, len(n) <= 253
}

func candidateKey(nonce string) string { return CandidateKeyPrefix + nonce }

// jsonPointer is the JSON-patch path of annotation key.
func jsonPointer(key string) string {
	return "/metadata/annotations/" + strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}

// current returns a copy of the view and a channel closed when it changes.
func (ln *line) current() (lineView, <-chan struct{}) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	v := lineView{known: ln.view.known, rv: ln.view.rv, entries: make(map[string]Candidate, len(ln.view.entries))}
	now := time.Now()
	for k, c := range ln.view.entries {
		c.Live = now.Before(c.Until)
		v.entries[k] = c
	}
	return v, ln.changed
}

// note records the line object as read, written or watched (nil: absent).
// An entry whose value is unchanged keeps its first-seen time, so a
// re-read never makes a silent candidate look alive.
func (ln *line) note(obj *coordinationv1.Lease, rv string) {
	now := time.Now()
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.view.known && ln.view.rv != "" && rv != "" {
		if c, err := resourceversion.CompareResourceVersion(rv, ln.view.rv); err == nil && c < 0 {
			return
		}
	}
	next := map[string]Candidate{}
	if obj != nil {
		for k, v := range obj.Annotations {
			nonce, ok := strings.CutPrefix(k, CandidateKeyPrefix)
			if !ok {
				continue
			}
			e, ok := decodeEntry(v)
			if !ok {
				continue
			}
			c := Candidate{Nonce: nonce, Identity: e.ID, Generation: e.Gen, Seq: e.Seq, value: v, seen: now}
			if prev, ok := ln.view.entries[nonce]; ok && prev.value == v {
				c.seen = prev.seen
			}
			d := time.Duration(e.TTL) * time.Second
			if d <= 0 {
				d = ln.duration
			}
			c.Until = c.seen.Add(d)
			next[nonce] = c
		}
	}
	changed := !ln.view.known || len(next) != len(ln.view.entries)
	for k, c := range next {
		if p, ok := ln.view.entries[k]; !ok || p.value != c.value {
			changed = true
		}
	}
	ln.view = lineView{known: true, rv: rv, entries: next}
	if changed {
		close(ln.changed)
		ln.changed = make(chan struct{})
	}
}

func (ln *line) noteLease(obj *coordinationv1.Lease) { ln.note(obj, obj.ResourceVersion) }

// get reads the line object and records it; nil when absent.
func (ln *line) get(ctx context.Context) (*coordinationv1.Lease, error) {
	rctx, cancel := context.WithTimeout(ctx, ln.duration)
	defer cancel()
	obj, err := ln.leases.Get(rctx, ln.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		ln.note(nil, "")
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading the candidates' Lease %s: %w", ln.name, err)
	}
	ln.noteLease(obj)
	return obj, nil
}

// follow lists and watches the line object until ctx ends, starting over
// after a failure, so the view stays current for as long as the backend
// lives. A failure only ages the view: entries then look dead, which makes
// a switchover refuse and older generations stop deferring, never more.
func (ln *line) follow(ctx context.Context) {
	wait := ln.duration / 4
	for ctx.Err() == nil {
		err := ln.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		ln.log.Debug("following the candidates' Lease failed; retrying", "lease", ln.name, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// stream lists the line object by name and watches it from the list.
func (ln *line) stream(ctx context.Context) error {
	return streamLease(ctx, ln.leases, ln.name, "the candidates' Lease "+ln.name, ln.duration, ln.note, nil)
}

// errEntryGone means a candidate's entry is no longer the value it wrote.
var errEntryGone = errors.New("the entry changed or was removed")

// join adds an entry for nonce with the next join number and returns its
// written value. It creates the line object when absent.
func (ln *line) join(ctx context.Context, nonce string, e entry) (string, error) {
	var last error
	for attempt := range maxLineWrites {
		obj, err := ln.get(ctx)
		if err != nil {
			return "", err
		}
		if obj == nil {
			e.Seq = 1
			v := e.encode()
			created, err := ln.create(ctx, map[string]string{
				lineOfAnnotation: ln.of, nextSeqAnnotation: "2", candidateKey(nonce): v,
			})
			if err == nil {
				ln.noteLease(created)
				return v, nil
			}
			if !apierrors.IsAlreadyExists(err) {
				return "", err
			}
			last = err
			continue
		}
		seq, _ := strconv.ParseInt(obj.Annotations[nextSeqAnnotation], 10, 64)
		seq = max(seq, 1)
		for _, c := range ln.entriesOf(obj) {
			seq = max(seq, c.Seq+1)
		}
		e.Seq = seq
		v := e.encode()
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
			"resourceVersion": obj.ResourceVersion,
			"annotations": map[string]string{
				lineOfAnnotation: ln.of, nextSeqAnnotation: strconv.FormatInt(seq+1, 10), candidateKey(nonce): v,
			},
		}})
		res, err := ln.patch(ctx, types.MergePatchType, patch)
		if err == nil {
			ln.noteLease(res)
			return v, nil
		}
		if !apierrors.IsConflict(err) {
			return "", fmt.Errorf("joining the candidates' Lease %s: %w", ln.name, err)
		}
		last = err
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Duration(rand.Int64N(int64(attempt+1) * int64(5*time.Millisecond)))):
		}
	}
	return "", fmt.Errorf("joining the candidates' Lease %s: it kept changing (%d attempts): %w", ln.name, maxLineWrites, last)
}

func (ln *line) entriesOf(obj *coordinationv1.Lease) []entry {
	var out []entry
	for k, v := range obj.Annotations {
		if strings.HasPrefix(k, CandidateKeyPrefix) {
			if e, ok := decodeEntry(v); ok {
				out = append(out, e)
			}
		}
	}
	return out
}

func (ln *line) create(ctx context.Context, ann map[string]string) (*coordinationv1.Lease, error) {
	rctx, cancel := context.WithTimeout(ctx, ln.duration)
	defer cancel()
	obj := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: ln.name, Annotations: ann}}
	res, err := ln.leases.Create(rctx, obj, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating the candidates' Lease %s: %w", ln.name, err)
	}
	return res, nil
}

func (ln *line) patch(ctx context.Context, pt types.PatchType, data []byte) (*coordinationv1.Lease, error) {
	rctx, cancel := context.WithTimeout(ctx, ln.duration)
	defer cancel()
	return ln.leases.Patch(rctx, ln.name, pt, data, metav1.PatchOptions{})
}

type jsonOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// replace changes nonce's entry from old to next, if it is still old. It
// returns an error wrapping errEntryGone when it is not.
func (ln *line) replace(ctx context.Context, nonce, old, next string) error {
	p := jsonPointer(candidateKey(nonce))
	data, _ := json.Marshal([]jsonOp{{Op: "test", Path: p, Value: old}, {Op: "replace", Path: p, Value: next}})
	res, err := ln.patch(ctx, types.JSONPatchType, data)
	if err == nil {
		ln.noteLease(res)
		return nil
	}
	return ln.explain(ctx, nonce, old, err)
}

// remove removes nonce's entry if its value is still old. An entry that is
// gone or changed is left alone and reported as errEntryGone.
func (ln *line) remove(ctx context.Context, nonce, old string) error {
	p := jsonPointer(candidateKey(nonce))
	data, _ := json.Marshal([]jsonOp{{Op: "test", Path: p, Value: old}, {Op: "remove", Path: p}})
	res, err := ln.patch(ctx, types.JSONPatchType, data)
	if err == nil {
		ln.noteLease(res)
		return nil
	}
	return ln.explain(ctx, nonce, old, err)
}

// explain turns a failed test-and-set into errEntryGone when the entry is
// really no longer old (a failed test is answered 422, as are other invalid
// patches, so it reads the object to tell them apart).
func (ln *line) explain(ctx context.Context, nonce, old string, err error) error {
	if apierrors.IsNotFound(err) {
		ln.note(nil, "")
		return fmt.Errorf("the candidates' Lease %s was deleted: %w", ln.name, errEntryGone)
	}
	if !apierrors.IsInvalid(err) {
		return fmt.Errorf("writing the candidates' Lease %s: %w", ln.name, err)
	}
	obj, gerr := ln.get(ctx)
	if gerr != nil {
		return gerr
	}
	if obj == nil || obj.Annotations[candidateKey(nonce)] != old {
		return fmt.Errorf("entry %s on the candidates' Lease %s: %w", nonce, ln.name, errEntryGone)
	}
	return fmt.Errorf("writing the candidates' Lease %s: %w", ln.name, err)
}

// cleanup removes entries other than keep's that have looked dead for
// cleanupAfter of their durations, testing each value it judged. It stops
// at the first failure; clean-up is best effort.
func (ln *line) cleanup(ctx context.Context, keep string) {
	ln.mu.Lock()
	var dead []Candidate
	now := time.Now()
	for k, c := range ln.view.entries {
		if k != keep && now.After(c.seen.Add(cleanupAfter*c.Until.Sub(c.seen))) {
			dead = append(dead, c)
		}
	}
	ln.mu.Unlock()
	for _, c := range dead {
		err := ln.remove(ctx, c.Nonce, c.value)
		if err != nil && !errors.Is(err, errEntryGone) {
			ln.log.Debug("removing a dead candidate's entry failed", "nonce", c.Nonce, "identity", c.Identity, "err", err)
			return
		}
		if err == nil {
			ln.log.Info("removed a dead candidate's entry from the line", "nonce", c.Nonce, "identity", c.Identity)
		}
	}
}

// live returns the live entries other than exclude's, in join order.
func (v lineView) live(exclude string) []Candidate {
	var out []Candidate
	for k, c := range v.entries {
		if k != exclude && c.Live {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Seq != out[j].Seq {
			return out[i].Seq < out[j].Seq
		}
		return out[i].Nonce < out[j].Nonce
	})
	return out
}
