package e2e

import (
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
	"github.com/leader-elector/leader-elector/pkg/history"
)

// A planned switchover over the control socket hands leadership to the
// named sidecar and to no other, in milliseconds, with increasing tokens;
// a name not in line is refused with JSON and leadership does not move.
// Before Redis implemented election.Handoff its sidecars said "switchover":
// false and answered 501.
func TestSwitchoverHandsOverToTheNamedSidecar(t *testing.T) {
	onBackends(t, true, switchover)
}

func switchover(t *testing.T, backend string, args backendArgs) {
	cs := startControlledOn(t, args, "a", "b", "c", "d")
	ps := processes(cs)
	bearer := map[string]string{"Authorization": "Bearer " + e2eToken}
	byID := map[string]controlled{}
	for _, c := range cs {
		byID[c.ID] = c
	}
	leaderP, st := agree(t, ps)
	leader := byID[leaderP.ID]
	if !st.Switchover {
		t.Errorf("/status of %s says \"switchover\": false on %s", leader.ID, backend)
	}

	// Refused: a name not in line, the leader itself, and a follower asked.
	for _, to := range []string{"nobody", leader.ID} {
		code, body := send(t, request{viaSocket: leader.socket, url: "http://localhost/resign?to=" + to, header: bearer})
		if msg, _ := body["error"].(string); code != http.StatusConflict || !strings.Contains(msg, to) {
			t.Errorf("switchover to %q: %d %v, want 409 with an error naming it", to, code, body)
		}
	}
	var follower controlled
	for _, c := range cs {
		if c.ID != leader.ID {
			follower = c
			break
		}
	}
	if code, body := send(t, request{viaSocket: follower.socket, url: "http://localhost/resign?to=" + leader.ID, header: bearer}); code != http.StatusConflict || body["error"] != "not leader" {
		t.Errorf("switchover asked of a follower: %d %v, want 409 not leader", code, body)
	}
	if now, err := leader.Status(t.Context()); err != nil || !now.IsLeader || now.FencingToken != st.FencingToken {
		t.Fatalf("after the refused switchovers %s reads %+v (%v), want still leading at token %d", leader.ID, now, err, st.FencingToken)
	}
	if len(leader.Intervals()) != 1 {
		t.Fatalf("%s's leadership was interrupted by a refused switchover: %+v", leader.ID, leader.Intervals())
	}

	// Hand over three times, each time to the candidate last in name order
	// among the followers, so others are usually ahead of it in line.
	want := []string{leader.ID}
	for round := range 3 {
		// The old leader holds off for a TTL after a switchover; wait until
		// every other sidecar is back in line.
		for _, c := range cs {
			c.WaitStatus("following "+leader.ID, generous, func(s sidecartest.Status) bool {
				return c.ID == leader.ID || (s.Ready && s.Name == leader.ID && s.State == "following")
			})
		}
		var ids []string
		for _, c := range cs {
			if c.ID != leader.ID {
				ids = append(ids, c.ID)
			}
		}
		sort.Strings(ids)
		to := byID[ids[len(ids)-1-round%len(ids)]]
		// "following" (it sees the leader) may come before its key is in
		// line; a 409 changes nothing, so ask again.
		var start time.Time
		for deadline := time.Now().Add(generous); ; {
			start = time.Now()
			code, body := send(t, request{viaSocket: leader.socket, url: "http://localhost/resign?to=" + to.ID, header: bearer})
			if code == http.StatusOK && body["is_leader"] == false {
				break
			}
			if code != http.StatusConflict || time.Now().After(deadline) {
				t.Fatalf("round %d: switchover %s → %s: %d %v", round, leader.ID, to.ID, code, body)
			}
			<-time.After(5 * time.Millisecond)
		}
		next := to.WaitStatus("leading after the switchover", generous, func(s sidecartest.Status) bool { return s.IsLeader })
		t.Logf("round %d: switchover %s → %s: %v from request to the successor's status", round, leader.ID, to.ID, time.Since(start))
		if next.FencingToken <= st.FencingToken {
			t.Errorf("round %d: token %d after %d: tokens must increase", round, next.FencingToken, st.FencingToken)
		}
		leader, st = to, next
		want = append(want, to.ID)
	}

	// The histories: exactly the chosen leaders, in order, never overlapping.
	assertNoOverlap(t, ps)
	var all []history.Interval
	for _, p := range ps {
		all = append(all, p.Intervals()...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Start < all[j].Start })
	var got []string
	for i, iv := range all {
		got = append(got, iv.Identity)
		if i > 0 && iv.Token <= all[i-1].Token {
			t.Errorf("term %d of %s has token %d after %d", i, iv.Identity, iv.Token, all[i-1].Token)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("leaders in the histories %v, want exactly the chosen ones %v", got, want)
	}
}
