package chaos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

// handover makes leader give its term up as h says, then waits for the
// next agreed term and a register write in it. It returns the new leader,
// and false for ok when no new term was agreed on within settleTimeout.
func (tr *trial) handover(h Handover, leader *slot, st sidecartest.Status) (*slot, sidecartest.Status, HandoverRecord, bool) {
	hr := HandoverRecord{Kind: h, From: leader.run(), Start: monoNow()}
	began := time.Now()
	switch h {
	case HandoverResign:
		tr.resign(leader, "")
	case HandoverSwitchover:
		// The first follower after the leader, in slot order, that is in
		// line (a candidate holding off after its own resignation is not).
		to := tr.inLine(leader)
		if to == nil || !tr.resign(leader, to.id) {
			// Nobody in line, or a backend that cannot hand over to a
			// chosen candidate: a plain resign.
			tr.resign(leader, "")
		}
	case HandoverRestart:
		leader.client.setURL("")
		leader.proc().Signal(syscall.SIGTERM)
		leader.proc().Wait(setupTimeout)
		tr.event("sigterm", leader.run(), "")
		leader.procs = append(leader.procs, tr.start(leader))
		leader.client.setURL(leader.proc().URL)
		tr.event("restart", leader.run(), "")
	default:
		tr.t.Fatalf("unknown handover %q", h)
	}
	old := st.FencingToken
	next, nst, ok := tr.waitAgreed(settleTimeout, func(s sidecartest.Status) bool { return s.FencingToken != old })
	hr.Took = -1
	if ok {
		hr.Took = time.Since(began)
		tr.waitWrite(nst.FencingToken)
	}
	return next, nst, hr, ok
}

// resign sends POST /resign (?to=<to> when to is set) to s's control
// socket and reports whether the sidecar answered 2xx. A sidecar that lost
// its term meanwhile answers 409; the caller waits for the next term
// either way.
func (tr *trial) resign(s *slot, to string) bool {
	u := "http://localhost/resign"
	if to != "" {
		u += "?to=" + to
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		tr.t.Fatal(err)
	}
	detail := ""
	resp, err := s.control.Do(req)
	ok := false
	if err != nil {
		detail = err.Error()
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ok = resp.StatusCode/100 == 2
		detail = fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	action := "resign"
	if to != "" {
		action = "switchover to " + to
	}
	tr.event(action, s.run(), detail)
	return ok
}

// inLine returns the first live follower after leader, in slot order, whose
// /status says it is in line (following), or nil.
func (tr *trial) inLine(leader *slot) *slot {
	at := 0
	for i, s := range tr.slots {
		if s == leader {
			at = i
		}
	}
	for i := 1; i < len(tr.slots); i++ {
		s := tr.slots[(at+i)%len(tr.slots)]
		if s.killed || s.paused || s.proc().Exited() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := s.proc().Status(ctx)
		cancel()
		if err == nil && st.State == "following" {
			return s
		}
	}
	return nil
}
