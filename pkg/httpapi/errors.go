package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// errorJSON is the body of every error answer the API writes itself:
// {"error":"<what went wrong>"}. The exceptions are listed in the README
// (probe bodies, and answers net/http writes before a handler runs).
type errorJSON struct {
	Error string `json:"error"`
}

// writeError answers code with {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	body, _ := json.Marshal(errorJSON{Error: msg}) // a struct of one string always encodes
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// writeBusy answers 503 with a Retry-After in whole seconds.
func writeBusy(w http.ResponseWriter, retryAfterSeconds int, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	writeError(w, http.StatusServiceUnavailable, msg)
}

// jsonMux serves mux, but answers its own 404 and 405 (which net/http
// writes as plain text) as JSON, keeping the 405's Allow header.
func jsonMux(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern == "" {
			// No route matched: h is the mux's 404, 405 or redirect
			// handler. Let it set its status and headers, and replace
			// its text body.
			h.ServeHTTP(&errorRewriter{ResponseWriter: w}, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// errorRewriter turns an error answer written with http.Error into JSON and
// passes anything else (a redirect) through.
type errorRewriter struct {
	http.ResponseWriter
	rewrote bool
}

func (e *errorRewriter) WriteHeader(code int) {
	if code < 400 {
		e.ResponseWriter.WriteHeader(code)
		return
	}
	e.rewrote = true
	msg := http.StatusText(code)
	switch code {
	case http.StatusNotFound:
		msg = "no such endpoint; see the README for the API"
	case http.StatusMethodNotAllowed:
		msg = "method not allowed; the Allow header lists the methods of this endpoint"
	}
	writeError(e.ResponseWriter, code, msg)
}

func (e *errorRewriter) Write(b []byte) (int, error) {
	if e.rewrote {
		return len(b), nil // the text body http.Error writes after the header
	}
	return e.ResponseWriter.Write(b)
}
