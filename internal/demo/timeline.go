package demo

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// status is the part of a sidecar's GET /status answer the demo shows.
type status struct {
	Name         string `json:"name"`     // the current leader
	Identity     string `json:"identity"` // the instance that answered
	IsLeader     bool   `json:"is_leader"`
	FencingToken int64  `json:"fencing_token"`
	Ready        bool   `json:"ready"`
}

// view is one instance as one poll saw it.
type view struct {
	ID   string
	Addr string    // host:port of its HTTP API
	Up   bool      // it answered
	At   time.Time // when the answer (or failure) arrived
	St   status
}

// snapshot is one poll of every instance.
type snapshot struct {
	Start time.Time // when the poll began; answers are no older than this
	Views []view
}

// leaders returns the instances that claim leadership.
func (s snapshot) leaders() []view {
	var out []view
	for _, v := range s.Views {
		if v.Up && v.St.IsLeader {
			out = append(out, v)
		}
	}
	return out
}

// agreedLeader returns the one instance that claims leadership, provided
// every instance that answered names it as the leader.
func (s snapshot) agreedLeader() (view, bool) {
	ls := s.leaders()
	if len(ls) != 1 {
		return view{}, false
	}
	for _, v := range s.Views {
		if v.Up && (!v.St.Ready || v.St.Name != ls[0].ID) {
			return view{}, false
		}
	}
	return ls[0], true
}

// describe renders the leader and every instance's role in one line, e.g.
// "leader=demo-2 token=8   (demo-1 :41235 follower, demo-2 :41236 LEADER)".
func describe(s snapshot) string {
	var b strings.Builder
	ls := s.leaders()
	switch {
	case len(ls) == 1:
		fmt.Fprintf(&b, "leader=%s token=%s", ls[0].ID, token(ls[0].St.FencingToken))
	case len(ls) > 1:
		ids := make([]string, len(ls))
		for i, l := range ls {
			ids[i] = l.ID
		}
		fmt.Fprintf(&b, "leader=%s token=%s  !! %d instances claim leadership", strings.Join(ids, ","), token(ls[0].St.FencingToken), len(ls))
	default:
		// No one claims to lead. Say whom the followers still name: its
		// key is in etcd, but it does not (or no longer) claim to lead.
		name, tok := followersLeader(s)
		switch {
		case name == "":
			b.WriteString("leader=none")
		case !isUp(s, name):
			fmt.Fprintf(&b, "leader=none, key=%s token=%s (gone; its lease has not expired yet)", name, token(tok))
		default:
			fmt.Fprintf(&b, "leader=none, key=%s token=%s (not claiming: confirming its key, or stepping down)", name, token(tok))
		}
	}
	parts := make([]string, len(s.Views))
	for i, v := range s.Views {
		parts[i] = fmt.Sprintf("%s %s %s", v.ID, port(v.Addr), role(v))
	}
	fmt.Fprintf(&b, "   (%s)", strings.Join(parts, ", "))
	return b.String()
}

// followersLeader returns the leader named by the answering instances, if
// they all name the same one.
func followersLeader(s snapshot) (string, int64) {
	var name string
	var tok int64
	for _, v := range s.Views {
		if !v.Up || v.St.Name == "" {
			continue
		}
		if name != "" && v.St.Name != name {
			return "", 0
		}
		name, tok = v.St.Name, max(tok, v.St.FencingToken)
	}
	return name, tok
}

func isUp(s snapshot, id string) bool {
	return slices.ContainsFunc(s.Views, func(v view) bool { return v.ID == id && v.Up })
}

func role(v view) string {
	switch {
	case !v.Up:
		return "down"
	case v.St.IsLeader:
		return "LEADER"
	case !v.St.Ready:
		return "starting"
	default:
		return "follower"
	}
}

func token(t int64) string {
	if t == 0 {
		return "-"
	}
	return fmt.Sprint(t)
}

// port returns ":PORT" of a host:port address.
func port(addr string) string {
	if _, p, err := net.SplitHostPort(addr); err == nil {
		return ":" + p
	}
	return addr
}

// legend explains the timeline's lines; it is printed above them.
const legend = `How to read the timeline:
  leader=X token=N   X says it leads; N is its fencing token
  (demo-1 :PORT ...)  what each sidecar says of itself on its /status: LEADER,
                     follower, starting (not ready yet) or down (not answering)
  leader=none, key=X  no sidecar claims to lead, though the others still name X:
                     X's key is in etcd but X is not leading. Either X is gone
                     and its lease has not expired yet (crash), or X is alive
                     and still confirming its key before it claims (after a
                     crash it first waits out its predecessor's TTL), or
                     already stepping down: a sidecar claims only what it has
                     proved.
  Fencing tokens are etcd revisions: the revision at which the leader's key
  was created. Every write to etcd (each candidate's key, each deletion)
  advances the revision, so tokens always increase but skip numbers: the
  first leader's is usually 2 (revision 1 is the empty store), and a later
  leader's token is higher by however many writes came between.
`

// elapsed renders d as "+1.234s".
func elapsed(d time.Duration) string {
	return fmt.Sprintf("+%.3fs", d.Seconds())
}

// timeline prints timestamped lines: a line for every change the polls
// show, and the script's own events. It is safe for concurrent use.
type timeline struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	last  string
	// claims counts polls in which more than one instance claimed to lead.
	claims int
}

func newTimeline(w io.Writer, start time.Time) *timeline {
	return &timeline{w: w, start: start}
}

// observe prints s if it differs from the last snapshot printed.
func (t *timeline) observe(s snapshot) {
	line := describe(s)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(s.leaders()) > 1 {
		t.claims++
	}
	if line == t.last {
		return
	}
	t.last = line
	fmt.Fprintf(t.w, "%-9s %s\n", elapsed(s.Start.Sub(t.start)), line)
}

// event prints a line of the script, marked so it stands out from polls.
func (t *timeline) event(at time.Time, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%-9s >>> %s\n", elapsed(at.Sub(t.start)), fmt.Sprintf(format, args...))
}

// printf prints free text, e.g. headers and the summary.
func (t *timeline) printf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, format, args...)
}

// splitClaims returns how many polls saw more than one leader.
func (t *timeline) splitClaims() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.claims
}
