package chaos

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Register is a toy store fenced by token: it rejects a write whose token
// is lower than the highest it has accepted, and logs every attempt.
type Register struct {
	mu      sync.Mutex
	highest int64
	log     []Write
}

// Write decides on w, stamps it, logs it and reports whether it was accepted.
func (r *Register) Write(w Write) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.At = monoNow()
	w.Accepted = w.Token >= r.highest
	if w.Accepted {
		r.highest = w.Token
	}
	r.log = append(r.log, w)
	return w.Accepted
}

// Log returns every write attempt so far, in the order decided.
func (r *Register) Log() []Write {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// pollInterval is how often a client asks its sidecar whether it leads.
const pollInterval = 10 * time.Millisecond

// client plays the application next to one sidecar: it polls GET /leader
// and, while the answer is 200, writes to the register with the token it
// carried. Freezing it models the whole pod being paused: a client frozen
// between its poll and its write sends the write, with the token it saw
// before the pause, only when thawed.
type client struct {
	identity string
	reg      *Register
	http     *http.Client

	mu     sync.Mutex
	url    string        // the sidecar's current base URL; empty while it is down
	frozen bool          // hold the next write, and polls, until thawed
	thawed chan struct{} // closed on thaw
	parked chan struct{} // closed when the client has stopped for a freeze
}

func newClient(identity string, reg *Register, hc *http.Client) *client {
	return &client{identity: identity, reg: reg, http: hc}
}

func (c *client) setURL(u string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.url = u
}

// freeze stops the client after its next poll, before the write that poll
// may call for, and waits, up to timeout, until it has.
func (c *client) freeze(timeout time.Duration) {
	c.mu.Lock()
	c.frozen = true
	c.thawed = make(chan struct{})
	c.parked = make(chan struct{})
	parked := c.parked
	c.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-parked:
	case <-t.C:
	}
}

func (c *client) thaw() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen {
		c.frozen = false
		close(c.thawed)
	}
}

// gate blocks while the client is frozen; it reports whether the client was
// frozen, and false for ok when ctx ended.
func (c *client) gate(ctx context.Context) (waited, ok bool) {
	c.mu.Lock()
	if !c.frozen {
		c.mu.Unlock()
		return false, true
	}
	select {
	case <-c.parked:
	default:
		close(c.parked)
	}
	thawed := c.thawed
	c.mu.Unlock()
	select {
	case <-thawed:
		return true, true
	case <-ctx.Done():
		return true, false
	}
}

func (c *client) run(ctx context.Context) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		c.mu.Lock()
		url := c.url
		c.mu.Unlock()
		w, leads := Write{}, false
		if url != "" {
			w, leads = c.poll(ctx, url)
		}
		// A freeze takes effect here, after a poll: a client frozen while
		// its sidecar leads holds the write it just decided on.
		held, ok := c.gate(ctx)
		if !ok {
			return
		}
		if leads {
			w.Held = held
			c.reg.Write(w)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// poll asks the sidecar whether it leads; ok means it answered 200.
func (c *client) poll(ctx context.Context, url string) (Write, bool) {
	w := Write{Writer: c.identity, PollStart: monoNow()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/leader", nil)
	if err != nil {
		return w, false
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return w, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	w.PollEnd = monoNow()
	if err != nil || resp.StatusCode != http.StatusOK {
		return w, false
	}
	var st struct {
		IsLeader bool  `json:"is_leader"`
		Token    int64 `json:"fencing_token"`
	}
	if json.Unmarshal(body, &st) != nil || !st.IsLeader {
		return w, false
	}
	w.Token = st.Token
	return w, true
}
