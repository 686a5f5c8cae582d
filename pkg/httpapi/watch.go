package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// handleWatch streams the status as server-sent events: one "status" event at
// once, then one per change, with comment lines in between to keep idle
// connections open. Changes that happen faster than the client reads are
// coalesced: every event carries the latest status.
//
// Each listener runs at most Limits.MaxWatchers streams; past that a new
// stream is answered 503 with Retry-After. A client that stops reading is
// dropped once a write (an event or a keep-alive) stalls for the write
// timeout, so a stream never holds more than the socket's buffers.
func (s *Server) handleWatch(ep *endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case ep.watchers <- struct{}{}:
			defer func() { <-ep.watchers }()
		default:
			s.log.Debug("watch refused: stream limit reached", "listener", ep.name, "remote", r.RemoteAddr,
				"max", cap(ep.watchers))
			writeBusy(w, watchRetryAfterSeconds, fmt.Sprintf("too many /watch streams (at most %d); retry later, or poll /status", cap(ep.watchers)))
			return
		}
		s.watch(w, r)
	}
}

// watchRetryAfterSeconds is the Retry-After of a refused stream: streams end
// only when their clients leave, so an immediate retry would be refused too.
const watchRetryAfterSeconds = 10

func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// The server's WriteTimeout suits short requests; a stream lives as long
	// as its client, so each write gets its own deadline instead. (The read
	// deadline needs nothing: net/http lifts it while it waits in the
	// background for the client to go away.)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // keep reverse proxies from buffering the stream
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	// Leave the server time to finish the response after the last write.
	defer s.extendWriteDeadline(rc)

	ctx := r.Context()
	ticker := time.NewTicker(s.keepAlive)
	defer ticker.Stop()

	st, changed := s.elector.Status()
	for id := uint64(1); ; id++ {
		data, err := json.Marshal(s.toJSON(st))
		if err != nil {
			s.log.Error("watch: encode status", "err", err)
			return
		}
		if err := s.send(rc, w, fmt.Appendf(nil, "id: %d\nevent: status\ndata: %s\n\n", id, data)); err != nil {
			s.log.Debug("watch: client gone", "err", err)
			return
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				st, changed = s.elector.Status()
				break wait
			case <-ticker.C:
				if err := s.send(rc, w, []byte(": keep-alive\n\n")); err != nil {
					s.log.Debug("watch: client gone", "err", err)
					return
				}
			}
		}
	}
}

// send writes b and flushes it to the client within the write timeout.
func (s *Server) send(rc *http.ResponseController, w http.ResponseWriter, b []byte) error {
	s.extendWriteDeadline(rc)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := rc.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

func (s *Server) extendWriteDeadline(rc *http.ResponseController) {
	err := rc.SetWriteDeadline(time.Now().Add(s.timeouts.write))
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.log.Debug("watch: extend write deadline", "err", err)
	}
}
