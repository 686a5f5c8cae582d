package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// statusJSON is the wire form of election.Status.
type statusJSON struct {
	Name         string  `json:"name"`
	Identity     string  `json:"identity"`
	IsLeader     bool    `json:"is_leader"`
	FencingToken int64   `json:"fencing_token"`
	Election     string  `json:"election"`
	Backend      string  `json:"backend"`
	Since        string  `json:"since,omitempty"`
	TTLSeconds   float64 `json:"ttl_seconds"`
	Ready        bool    `json:"ready"`
	State        string  `json:"state"`
	Problem      string  `json:"problem,omitempty"`
	Duplicate    bool    `json:"duplicate_identity,omitempty"`
	Caveats      string  `json:"caveats,omitempty"`
	AppHealth    string  `json:"app_health,omitempty"`
	NotStanding  string  `json:"not_standing,omitempty"`
	// Degraded lists the sidecar's own outputs that are losing data (a
	// history file that fails to write, log records dropped because stderr
	// is not drained); empty when none is.
	Degraded   []string `json:"degraded,omitempty"`
	Switchover bool     `json:"switchover"`
	// Generation is the workload version this candidate publishes (for
	// rolling updates); 0 when generations are off.
	Generation int64 `json:"generation"`
}

// MarshalStatus returns st as GET /status shows it, without the
// sidecar's own degraded outputs (the status file writes this document).
func MarshalStatus(st election.Status) ([]byte, error) { return json.Marshal((&Server{}).toJSON(st)) }

func (s *Server) toJSON(st election.Status) statusJSON {
	out := statusJSON{
		Name:         st.Leader,
		Identity:     st.Identity,
		IsLeader:     st.IsLeader,
		FencingToken: st.FencingToken,
		Election:     st.Election,
		Backend:      st.Backend,
		TTLSeconds:   st.TTL.Seconds(),
		Ready:        st.Ready,
		State:        st.State.String(),
		Problem:      st.Problem,
		Duplicate:    st.DuplicateIdentity,
		Caveats:      st.Caveats,
		AppHealth:    st.Health,
		NotStanding:  st.NotStanding,
		Switchover:   st.Switchover,
		Generation:   st.Generation,
	}
	if !st.Since.IsZero() {
		out.Since = st.Since.UTC().Format(time.RFC3339Nano)
	}
	if s.degraded != nil {
		out.Degraded = s.degraded()
	}
	return out
}

// readOnlyMux routes the read-only endpoints, which both listeners serve.
func (s *Server) readOnlyMux(ep *endpoint) *http.ServeMux {
	mux := http.NewServeMux()
	// {$} matches "/" only; any other unknown path gets the mux's 404.
	mux.HandleFunc("GET /{$}", s.handleRoot)
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.HandleFunc("GET /leader", s.handleRole(true))
	mux.HandleFunc("GET /follower", s.handleRole(false))
	mux.HandleFunc("GET /watch", s.handleWatch(ep))
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics)
	}
	return mux
}

// publicRoutes is the pod-network listener: read-only. A state-changing
// endpoint is refused there with a pointer to the control listener,
// whatever the peer address: a mesh proxy forwards outside traffic from
// loopback.
func (s *Server) publicRoutes(ep *endpoint) http.Handler {
	mux := s.readOnlyMux(ep)
	mux.HandleFunc("POST /resign", func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("refused resign on the pod-network listener", "remote", r.RemoteAddr, "host", r.Host)
		writeError(w, http.StatusForbidden, "POST /resign is served only on the control listener "+
			"(--control-socket or --control-addr), which only the pod can reach; see the README's Security model")
	})
	return jsonMux(mux)
}

// handleRoot keeps the contract of the retired contrib leader-elector
// sidecar, byte for byte: {"name":"<leader>"} with no trailing newline.
func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	st, _ := s.elector.Status()
	s.writeJSON(w, http.StatusOK, struct {
		Name string `json:"name"`
	}{st.Leader})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, _ := s.elector.Status()
	s.writeJSON(w, http.StatusOK, s.toJSON(st))
}

// handleRole answers 200 while this candidate's role is the wanted one and
// 503 otherwise, so load balancers and probes can select by role.
func (s *Server) handleRole(wantLeader bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st, _ := s.elector.Status()
		code := http.StatusOK
		if st.IsLeader != wantLeader {
			code = http.StatusServiceUnavailable
		}
		s.writeJSON(w, code, s.toJSON(st))
	}
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	if !s.elector.Healthy() {
		writeText(w, http.StatusServiceUnavailable, "election loop stopped or stuck")
		return
	}
	writeText(w, http.StatusOK, "ok")
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if st, _ := s.elector.Status(); !st.Ready {
		writeText(w, http.StatusServiceUnavailable, "not ready")
		return
	}
	// Losing audit or log output does not make the election unsafe, so it
	// does not fail readiness; it is said in the answer.
	if s.degraded != nil {
		if d := s.degraded(); len(d) > 0 {
			writeText(w, http.StatusOK, "ok; degraded: "+strings.Join(d, "; "))
			return
		}
	}
	writeText(w, http.StatusOK, "ok")
}

// Switchover is implemented by an Elector that can hand leadership to a
// chosen candidate (election.Engine does): POST /resign?to=<identity>.
type Switchover interface {
	HandOver(ctx context.Context, to string) error
}

// handleResign hands leadership over, for example before a planned restart:
// to whoever is next in line, or with ?to=<identity> to that candidate and
// no one else (a planned switchover). It is served only behind the control
// listener's guard.
func (s *Server) handleResign(w http.ResponseWriter, r *http.Request) {
	// Any other parameter is refused rather than ignored: a caller must
	// never get a plain resign when it asked for something else.
	// url.Values from r.URL.Query() silently drops what it cannot parse
	// ("to=a;x=1", "to=%zz"), and a form body would be ignored: both would
	// turn a switchover into a plain resign, so both are refused.
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("malformed query: %v", err))
		return
	}
	if r.ContentLength != 0 {
		writeError(w, http.StatusBadRequest, "POST /resign takes no body; name a successor with ?to=<identity>")
		return
	}
	var to string
	for k, vs := range query {
		if k != "to" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q; POST /resign takes only ?to=<identity>", k))
			return
		}
		if len(vs) != 1 || vs[0] == "" {
			writeError(w, http.StatusBadRequest, "parameter \"to\" must name one candidate's identity")
			return
		}
		to = vs[0]
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeouts.resign)
	defer cancel()
	if to == "" {
		err = s.elector.Resign(ctx)
	} else if sw, ok := s.elector.(Switchover); ok {
		err = sw.HandOver(ctx, to)
	} else {
		err = election.ErrHandoffUnsupported
	}
	switch {
	case errors.Is(err, election.ErrNotLeader):
		writeError(w, http.StatusConflict, "not leader")
		return
	case errors.Is(err, election.ErrNotInLine):
		s.log.Warn("switchover refused", "to", to, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusConflict, fmt.Sprintf("cannot hand over to %q: %v; leadership is unchanged", to, err))
		return
	case errors.Is(err, election.ErrHandoffUnsupported):
		st, _ := s.elector.Status()
		writeError(w, http.StatusNotImplemented, fmt.Sprintf("the %s backend cannot hand leadership to a chosen candidate "+
			"(/status shows \"switchover\": false); leadership is unchanged; POST /resign without ?to= hands it to whoever is next", st.Backend))
		return
	case err != nil:
		s.log.Error("resign failed", "to", to, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusInternalServerError, "resign failed; see the sidecar's log")
		return
	}
	if to != "" {
		s.log.Info("handed over on request", "to", to, "remote", r.RemoteAddr)
	} else {
		s.log.Info("resigned on request", "remote", r.RemoteAddr)
	}
	st, _ := s.elector.Status()
	s.writeJSON(w, http.StatusOK, s.toJSON(st))
}

// writeJSON writes v without a trailing newline; GET / depends on that.
func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode response", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// The answer changes with every election; nothing may cache it.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// writeText answers the probes, which keep the plain-text convention of
// Kubernetes' own /healthz and /readyz (documented as an exception to JSON).
func writeText(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}
