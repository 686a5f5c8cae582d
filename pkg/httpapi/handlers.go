package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
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
}

func toJSON(st election.Status) statusJSON {
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
	}
	if !st.Since.IsZero() {
		out.Since = st.Since.UTC().Format(time.RFC3339Nano)
	}
	return out
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// {$} matches "/" only; any other unknown path gets the mux's 404.
	mux.HandleFunc("GET /{$}", s.handleRoot)
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.HandleFunc("GET /leader", s.handleRole(true))
	mux.HandleFunc("GET /follower", s.handleRole(false))
	mux.HandleFunc("GET /watch", s.handleWatch)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics)
	}
	// Loopback alone does not stop a web page in a local browser from
	// posting here; cross-origin protection rejects such requests.
	mux.Handle("POST /resign", http.NewCrossOriginProtection().Handler(http.HandlerFunc(s.handleResign)))
	return mux
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
	s.writeJSON(w, http.StatusOK, toJSON(st))
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
		s.writeJSON(w, code, toJSON(st))
	}
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	if !s.elector.Healthy() {
		writeText(w, http.StatusServiceUnavailable, "election loop stopped")
		return
	}
	writeText(w, http.StatusOK, "ok")
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if st, _ := s.elector.Status(); !st.Ready {
		writeText(w, http.StatusServiceUnavailable, "not ready")
		return
	}
	writeText(w, http.StatusOK, "ok")
}

// handleResign lets a process in the same network namespace (the pod) hand
// leadership over, for example before a planned restart.
func (s *Server) handleResign(w http.ResponseWriter, r *http.Request) {
	if !isLoopback(r.RemoteAddr) {
		s.log.Warn("refused resign from non-loopback client", "remote", r.RemoteAddr)
		writeText(w, http.StatusForbidden, "resign is only allowed from loopback")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeouts.resign)
	defer cancel()
	err := s.elector.Resign(ctx)
	switch {
	case errors.Is(err, election.ErrNotLeader):
		writeText(w, http.StatusConflict, "not leader")
		return
	case err != nil:
		s.log.Error("resign failed", "remote", r.RemoteAddr, "err", err)
		writeText(w, http.StatusInternalServerError, "resign failed")
		return
	}
	s.log.Info("resigned on request", "remote", r.RemoteAddr)
	st, _ := s.elector.Status()
	s.writeJSON(w, http.StatusOK, toJSON(st))
}

// isLoopback reports whether remoteAddr ("host:port") is a loopback address,
// including IPv4 loopback mapped into IPv6.
func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.Unmap().IsLoopback()
}

// writeJSON writes v without a trailing newline; GET / depends on that.
func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode response", "err", err)
		writeText(w, http.StatusInternalServerError, "internal error")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// The answer changes with every election; nothing may cache it.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func writeText(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}
