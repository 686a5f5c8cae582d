package httpapi

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// socketDir returns a short temporary directory: a Unix socket path must fit
// in 108 bytes, which t.TempDir's long names can exceed.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "le-ctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// clientFrom returns a client whose TCP connections leave from the source
// IP src, as a mesh proxy's forwarded connections do from 127.0.0.6.
func clientFrom(t *testing.T, src string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// unixClient returns a client that sends every request to the socket.
func unixClient(t *testing.T, socket string) *http.Client {
	t.Helper()
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", socket)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func writeToken(t *testing.T, tok string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// post sends POST target with the given Host (when not empty) and headers
// and returns the status code.
func post(t *testing.T, c *http.Client, target, host string, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		errorOf(t, resp)
	}
	return resp.StatusCode
}

const testToken = "in-pod-token-0123456789abcdef"

// controlServer serves a leader's API on every listener: the pod network
// on 127.0.0.1 (standing in for the pod IP), the control socket and the
// token-protected loopback control address.
func controlServer(t *testing.T) (*Server, *fakeElector, string) {
	t.Helper()
	f := newFake(leaderStatus())
	sock := filepath.Join(socketDir(t), "control.sock")
	s := New(Config{Addr: "127.0.0.1:0", Elector: f, Control: Control{
		Socket: sock, Addr: "127.0.0.1:0", TokenFile: writeToken(t, testToken),
	}})
	startServer(t, s)
	if s.ControlAddr() == "" {
		t.Fatal("ControlAddr is empty after listening")
	}
	return s, f, sock
}

// A service mesh forwards outside traffic to the container from 127.0.0.6.
// Before the control listener existed, such a request answered 200 and
// moved leadership. Now the pod-network listener refuses it, and the
// loopback control address wants the token the outside does not have.
func TestMeshForwardedResignIsRefused(t *testing.T) {
	s, f, _ := controlServer(t)
	mesh := clientFrom(t, "127.0.0.6")
	if code := post(t, mesh, "http://"+s.Addr()+"/resign", "", nil); code != http.StatusForbidden {
		t.Errorf("pod-network listener: status = %d, want 403", code)
	}
	if code := post(t, mesh, "http://"+s.ControlAddr()+"/resign", "", nil); code != http.StatusUnauthorized {
		t.Errorf("loopback control address without the token: status = %d, want 401", code)
	}
	if n := f.resignCount(); n != 0 {
		t.Errorf("Resign called %d times, want 0", n)
	}
}

// DNS rebinding: a page on evil.example makes the browser resolve the name
// to a loopback address, so its requests arrive with Host: evil.example.
// Before, that was accepted.
func TestForeignHostIsRefused(t *testing.T) {
	s, f, sock := controlServer(t)
	auth := map[string]string{"Authorization": "Bearer " + testToken}
	if code := post(t, newClient(t), "http://"+s.Addr()+"/resign", "evil.example:4040", nil); code != http.StatusForbidden {
		t.Errorf("pod-network listener: status = %d, want 403", code)
	}
	if code := post(t, newClient(t), "http://"+s.ControlAddr()+"/resign", "evil.example:4041", auth); code != http.StatusForbidden {
		t.Errorf("control address with the token: status = %d, want 403", code)
	}
	if code := post(t, unixClient(t, sock), "http://evil.example/resign", "", auth); code != http.StatusForbidden {
		t.Errorf("control socket with the token: status = %d, want 403", code)
	}
	if n := f.resignCount(); n != 0 {
		t.Errorf("Resign called %d times, want 0", n)
	}
}

// A browser's cross-origin POST carries Origin (and Sec-Fetch-Site).
func TestCrossOriginBrowserRequestIsRefused(t *testing.T) {
	s, f, sock := controlServer(t)
	browser := map[string]string{
		"Origin":         "http://evil.example",
		"Sec-Fetch-Site": "cross-site",
		"Content-Type":   "text/plain",
		"Authorization":  "Bearer " + testToken, // even if the page had it
	}
	if code := post(t, newClient(t), "http://"+s.Addr()+"/resign", "", browser); code != http.StatusForbidden {
		t.Errorf("pod-network listener: status = %d, want 403", code)
	}
	if code := post(t, newClient(t), "http://"+s.ControlAddr()+"/resign", "", browser); code != http.StatusForbidden {
		t.Errorf("control address: status = %d, want 403", code)
	}
	if code := post(t, unixClient(t, sock), "http://localhost/resign", "", browser); code != http.StatusForbidden {
		t.Errorf("control socket: status = %d, want 403", code)
	}
	if n := f.resignCount(); n != 0 {
		t.Errorf("Resign called %d times, want 0", n)
	}
}

// The application container next to the sidecar: over the shared socket, or
// over loopback with the token from the shared file.
func TestInPodCallerResigns(t *testing.T) {
	s, f, sock := controlServer(t)
	auth := map[string]string{"Authorization": "Bearer " + testToken}
	if code := post(t, unixClient(t, sock), "http://localhost/resign", "", auth); code != http.StatusOK {
		t.Errorf("control socket: status = %d, want 200", code)
	}
	if n := f.resignCount(); n != 1 {
		t.Errorf("after the socket request Resign was called %d times, want 1", n)
	}
	f.update(func(st *election.Status) { st.IsLeader = true })
	if code := post(t, newClient(t), "http://"+s.ControlAddr()+"/resign", "", auth); code != http.StatusOK {
		t.Errorf("control address: status = %d, want 200", code)
	}
	if n := f.resignCount(); n != 2 {
		t.Errorf("after the loopback request Resign was called %d times, want 2", n)
	}
	// Read-only endpoints stay on the pod network for probes and scrapers.
	resp, err := clientFrom(t, "127.0.0.6").Get("http://" + s.Addr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /status on the pod network: %d", resp.StatusCode)
	}
}

// Without a token, the socket's directory is the only barrier: a socket-only
// control listener needs none.
func TestSocketWithoutToken(t *testing.T) {
	f := newFake(leaderStatus())
	sock := filepath.Join(socketDir(t), "control.sock")
	s := New(Config{Elector: f, Control: Control{Socket: sock}})
	startServer(t, s)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Errorf("socket mode = %v, want 0660", perm)
	}
	if code := post(t, unixClient(t, sock), "http://localhost/resign", "", nil); code != http.StatusOK {
		t.Errorf("status = %d, want 200", code)
	}
}

func TestControlSocketReplacesOnlyStaleSockets(t *testing.T) {
	dir := socketDir(t)

	// A socket left by a crashed run (nobody listens) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	s := New(Config{Elector: newFake(leaderStatus()), Control: Control{Socket: stale}})
	startServer(t, s)

	// A live socket belongs to someone: refuse to take it.
	again := New(Config{Elector: newFake(leaderStatus()), Control: Control{Socket: stale}})
	if err := again.Serve(t.Context()); err == nil || !strings.Contains(err.Error(), "another process is listening") {
		t.Errorf("Serve on a live socket = %v, want an error saying so", err)
	}

	// Any other file is never deleted.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := New(Config{Elector: newFake(leaderStatus()), Control: Control{Socket: file}})
	if err := other.Serve(t.Context()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Serve on a regular file = %v, want an error saying so", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "data" {
		t.Errorf("the regular file was touched: %q %v", b, err)
	}
}

func TestControlValidate(t *testing.T) {
	good := writeToken(t, testToken)
	short := writeToken(t, "short")
	for _, tc := range []struct {
		name string
		c    Control
		want string
	}{
		{"off", Control{}, ""},
		{"socket", Control{Socket: "/run/le/control.sock"}, ""},
		{"loopback with token", Control{Addr: "127.0.0.1:4041", TokenFile: good}, ""},
		{"ipv6 loopback with token", Control{Addr: "[::1]:4041", TokenFile: good}, ""},
		{"loopback without token", Control{Addr: "127.0.0.1:4041"}, "needs TokenFile"},
		{"all interfaces", Control{Addr: ":4041", TokenFile: good}, "loopback IP"},
		{"pod IP", Control{Addr: "10.0.0.7:4041", TokenFile: good}, "loopback IP"},
		{"a name", Control{Addr: "localhost:4041", TokenFile: good}, "loopback IP"},
		{"no port", Control{Addr: "127.0.0.1", TokenFile: good}, "host:port"},
		{"short token", Control{Socket: "/s", TokenFile: short}, "at least 16"},
		{"missing token file", Control{Socket: "/s", TokenFile: "/nonexistent"}, "token file"},
		{"token without listener", Control{TokenFile: good}, "no control listener"},
	} {
		err := tc.c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
