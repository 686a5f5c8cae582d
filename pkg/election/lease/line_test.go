package lease

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func lineObject(rv string, entries map[string]entry) *coordinationv1.Lease {
	ann := map[string]string{lineOfAnnotation: "e", "other": "x", CandidateKeyPrefix + "bad": "not json"}
	for nonce, e := range entries {
		ann[candidateKey(nonce)] = e.encode()
	}
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "e" + LineSuffix, ResourceVersion: rv, Annotations: ann}}
}

// An entry's first-seen instant survives re-reads of the same value, moves
// with a new value, and an older read never replaces a newer one.
func TestLineNoteJudgesEntriesOnOwnClock(t *testing.T) {
	ln := newLine(nil, "e", 2*time.Second, nil)
	a := entry{ID: "a", Seq: 1, TTL: 2}
	b := entry{ID: "b", Gen: 3, Seq: 2, TTL: 5}
	ln.noteLease(lineObject("10", map[string]entry{"aa": a, "bb": b}))
	v1, changed := ln.current()
	if len(v1.entries) != 2 || !v1.entries["aa"].Live || v1.entries["bb"].Generation != 3 {
		t.Fatalf("view %+v: want two live entries, malformed and foreign annotations ignored", v1.entries)
	}
	if d := v1.entries["bb"].Until.Sub(v1.entries["bb"].seen); d != 5*time.Second {
		t.Errorf("b is live for %v after it was seen, want its own ttl 5s", d)
	}

	// The same values again (another candidate's write bumped the object).
	ln.noteLease(lineObject("11", map[string]entry{"aa": a, "bb": b}))
	v2, _ := ln.current()
	if !v2.entries["aa"].seen.Equal(v1.entries["aa"].seen) {
		t.Error("re-reading an unchanged entry refreshed its first-seen instant")
	}
	select {
	case <-changed:
		t.Error("an unchanged line was reported as a change")
	default:
	}

	// a renews; b is unchanged.
	a.N++
	ln.noteLease(lineObject("12", map[string]entry{"aa": a, "bb": b}))
	v3, _ := ln.current()
	if !v3.entries["aa"].seen.After(v1.entries["aa"].seen) || !v3.entries["bb"].seen.Equal(v1.entries["bb"].seen) {
		t.Error("a renewal must move only the renewed entry's first-seen instant")
	}
	select {
	case <-changed:
	default:
		t.Error("a renewal was not reported as a change")
	}

	// A stale read (older resourceVersion) is ignored.
	ln.noteLease(lineObject("9", map[string]entry{}))
	if v4, _ := ln.current(); len(v4.entries) != 2 {
		t.Errorf("a stale read replaced the view: %+v", v4.entries)
	}

	// live: in join order, without the excluded nonce.
	if got := v3.live("bb"); len(got) != 1 || got[0].Identity != "a" {
		t.Errorf("live(excluding b) = %+v", got)
	}
	if got := v3.live(""); len(got) != 2 || got[0].Identity != "a" || got[1].Identity != "b" {
		t.Errorf("live() = %+v, want a then b (join order)", got)
	}
	// Deleted: nothing in line.
	ln.note(nil, "13")
	if v5, _ := ln.current(); len(v5.entries) != 0 {
		t.Errorf("after deletion: %+v", v5.entries)
	}
}

func TestJSONPointerEscapesTheKey(t *testing.T) {
	if got, want := jsonPointer("candidate.leader-elector.io/ab~c"), "/metadata/annotations/candidate.leader-elector.io~1ab~0c"; got != want {
		t.Errorf("jsonPointer = %q, want %q", got, want)
	}
}

// A reservation holds only for the released state it was written with.
func TestReservationMatchesItsReleasedState(t *testing.T) {
	l := &Lock{identity: "x", duration: 2 * time.Second}
	empty, tr := "", int32(4)
	now := metav1.NewMicroTime(time.Now().Truncate(time.Microsecond))
	lease := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: &empty, LeaseTransitions: &tr, RenewTime: &now}}
	lease.Annotations = map[string]string{SuccessorAnnotation: "s", successorOfAnnotation: stateMark(lease), successorSecondsAnnotation: "7"}
	at := time.Now()
	to, until, ok := l.reservation(observation{lease: lease, at: at})
	if !ok || to != "s" || !until.Equal(at.Add(7*time.Second)) {
		t.Fatalf("reservation = %q, %v, %v; want s for 7s", to, until.Sub(at), ok)
	}
	later := metav1.NewMicroTime(now.Add(time.Second))
	released := lease.DeepCopy()
	released.Spec.RenewTime = &later // someone else's release, annotations kept
	if _, _, ok := l.reservation(observation{lease: released, at: at}); ok {
		t.Error("a later release with the old annotations reads as a reservation")
	}
	held := lease.DeepCopy()
	h := "y"
	held.Spec.HolderIdentity = &h
	if _, _, ok := l.reservation(observation{lease: held, at: at}); ok {
		t.Error("a held Lease reads as reserved")
	}
}
