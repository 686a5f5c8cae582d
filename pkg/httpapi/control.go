package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
)

// Control configures the control listener, which serves the read-only
// endpoints and the state-changing ones (POST /resign today; a targeted
// switchover is meant to join it). Nothing arriving from outside the pod
// can use it:
//
//   - Socket is reachable only by processes that can open its directory:
//     put it on an emptyDir volume mounted into the pod's containers. A
//     service mesh proxies TCP, never Unix sockets.
//   - Addr must be a loopback address, and every state-changing request on
//     it needs TokenFile's token: a proxy in the pod can forward outside
//     traffic to loopback, so the address alone proves nothing.
//
// On both, a state-changing request must name a loopback Host (localhost,
// 127.0.0.1, [::1]) and carry no Origin or Sec-Fetch-Site of another site,
// so a web page in a browser cannot drive it (DNS rebinding, cross-site
// forms).
type Control struct {
	// Socket is the path of a Unix socket to listen on; empty: off. A stale
	// socket left by a previous run is replaced; any other file there is an
	// error. The socket is made mode 0660 (owner and group).
	Socket string
	// Addr is a loopback TCP address to listen on, for example
	// "127.0.0.1:4041"; empty: off. Requires TokenFile.
	Addr string
	// TokenFile holds the bearer token that state-changing requests must
	// send as "Authorization: Bearer <token>" on every control listener.
	// Required with Addr; optional with Socket. It is read again on every
	// state-changing request, so a rotated Secret takes effect at once.
	TokenFile string
}

// Enabled reports whether a control listener is configured.
func (c Control) Enabled() bool { return c.Socket != "" || c.Addr != "" }

// Token file bounds: a shorter token is guessable, a longer file is not a
// token.
const (
	minTokenLen = 16
	maxTokenLen = 4096
)

// maxControlBody bounds the body of a state-changing request; none needs one.
const maxControlBody = 4 << 10

// Validate checks the control configuration; it reads the token file but
// binds nothing. Errors name the field.
func (c Control) Validate() error {
	if c.Addr != "" {
		host, _, err := net.SplitHostPort(c.Addr)
		if err != nil {
			return fmt.Errorf("httpapi: control Addr %q: want host:port", c.Addr)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Unmap().IsLoopback() {
			return fmt.Errorf("httpapi: control Addr %q: the host must be a loopback IP such as 127.0.0.1", c.Addr)
		}
		if c.TokenFile == "" {
			return fmt.Errorf("httpapi: control Addr %q needs TokenFile: a proxy in the pod can forward outside traffic to loopback", c.Addr)
		}
	}
	if c.TokenFile != "" {
		if !c.Enabled() {
			return errors.New("httpapi: TokenFile is set but no control listener is (Socket or Addr)")
		}
		if _, err := ReadToken(c.TokenFile); err != nil {
			return err
		}
	}
	return nil
}

// ReadToken reads a bearer token from path, without surrounding whitespace
// (Secrets often end with a newline). It fails when the file cannot be read
// or the token is shorter than 16 or longer than 4096 bytes, or contains
// whitespace or control characters.
func ReadToken(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("httpapi: token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenLen+64))
	if err != nil {
		return nil, fmt.Errorf("httpapi: token file %s: %w", path, err)
	}
	tok := bytes.TrimSpace(b)
	switch {
	case len(tok) < minTokenLen:
		return nil, fmt.Errorf("httpapi: token file %s: the token has %d bytes, want at least %d", path, len(tok), minTokenLen)
	case len(tok) > maxTokenLen:
		return nil, fmt.Errorf("httpapi: token file %s: the token is longer than %d bytes", path, maxTokenLen)
	case bytes.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return nil, fmt.Errorf("httpapi: token file %s: the token contains whitespace or control characters", path)
	}
	return tok, nil
}

// listenUnix listens on a Unix socket at path, replacing a stale socket of
// an earlier run (an emptyDir outlives a container restart) but never
// another file, nor a socket something still answers on.
func listenUnix(ctx context.Context, path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("httpapi: control socket %s: a file that is not a socket is in the way", path)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("httpapi: control socket %s: another process is listening on it", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("httpapi: control socket %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("httpapi: control socket %s: removing the stale socket: %w", path, err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("httpapi: control socket: %w", err)
	}
	// The directory is the real barrier; the mode keeps others on a shared
	// node-level directory (a hostPath, by mistake) out too.
	if err := os.Chmod(path, 0o660); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("httpapi: control socket %s: %w", path, err)
	}
	return ln, nil
}

// controlRoutes serves the read-only endpoints and, behind guard, the
// state-changing ones.
func (s *Server) controlRoutes(ep *endpoint) http.Handler {
	mux := s.readOnlyMux(ep)
	// Every handler registered here changes state: each goes through guard.
	mux.Handle("POST /resign", s.guard(http.HandlerFunc(s.handleResign)))
	return jsonMux(mux)
}

// guard admits a state-changing request only if it names a loopback Host,
// comes from no foreign web origin, and carries the token when one is
// configured. It also bounds the body.
func (s *Server) guard(next http.Handler) http.Handler {
	// Browsers label cross-site requests with Sec-Fetch-Site; this
	// catches those the Origin check below cannot see.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.refuse(w, r, http.StatusForbidden, "cross-origin request refused: the control API is not for web pages")
	}))
	inner := cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			s.refuse(w, r, http.StatusForbidden, fmt.Sprintf("Host %q refused: address the control API as localhost", r.Host))
			return
		}
		if origins, ok := r.Header["Origin"]; ok && !loopbackOrigin(origins) {
			s.refuse(w, r, http.StatusForbidden, "Origin refused: the control API is not for web pages")
			return
		}
		if file := s.cfg.Control.TokenFile; file != "" {
			want, err := ReadToken(file)
			if err != nil {
				s.log.Error("control request refused: token unreadable", "err", err)
				writeError(w, http.StatusServiceUnavailable, "the control token cannot be read; see the sidecar's log")
				return
			}
			if !tokenMatches(r.Header.Get("Authorization"), want) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="leader-elector control"`)
				s.refuse(w, r, http.StatusUnauthorized, "missing or wrong bearer token")
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxControlBody)
		inner.ServeHTTP(w, r)
	})
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.log.Warn("control request refused", "method", r.Method, "path", r.URL.Path, "host", r.Host,
		"remote", r.RemoteAddr, "code", code, "reason", msg)
	writeError(w, code, msg)
}

// tokenMatches compares "Bearer <token>" with want in constant time; the
// hashes hide the length too.
func tokenMatches(header string, want []byte) bool {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	exp := sha256.Sum256(want)
	return subtle.ConstantTimeCompare(got[:], exp[:]) == 1
}

// loopbackHost reports whether a Host header names this machine's loopback:
// localhost or a loopback IP, with any port. A name an attacker controls
// (DNS rebinding) is none of these.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// loopbackOrigin reports whether the request's only Origin is an http(s)
// origin on a loopback host. "null" (sandboxed pages, file://) is refused.
func loopbackOrigin(origins []string) bool {
	if len(origins) != 1 {
		return false
	}
	u, err := url.Parse(origins[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.User != nil {
		return false
	}
	return loopbackHost(u.Host)
}
