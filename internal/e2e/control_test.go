package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/freeport"
	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

// controlled is a sidecar with both control listeners: a Unix socket in a
// directory standing in for the pod's shared emptyDir, and a loopback port
// that needs the token.
type controlled struct {
	*sidecartest.Process
	socket string
	addr   string // loopback control address
}

const e2eToken = "e2e-control-token-0123456789"

func startControlled(t *testing.T, endpoints []string, ids ...string) []controlled {
	t.Helper()
	return startControlledOn(t, func(extra ...string) []string { return etcdArgs(endpoints, extra...) }, ids...)
}

// startControlledOn is startControlled on any backend.
func startControlledOn(t *testing.T, args backendArgs, ids ...string) []controlled {
	t.Helper()
	dir, err := os.MkdirTemp("", "le-e2e-") // short: a socket path must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte(e2eToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := freeport.Ports(len(ids))
	if err != nil {
		t.Fatal(err)
	}
	var cs []controlled
	for i, id := range ids {
		c := controlled{socket: filepath.Join(dir, id+".sock"), addr: fmt.Sprintf("127.0.0.1:%d", ports[i])}
		c.Process = sidecartest.Start(t, bin, sidecartest.Options{ID: id, Args: args(
			"--control-socket", c.socket, "--control-addr", c.addr, "--control-token-file", token)})
		cs = append(cs, c)
	}
	return cs
}

func processes(cs []controlled) []*sidecartest.Process {
	var ps []*sidecartest.Process
	for _, c := range cs {
		ps = append(ps, c.Process)
	}
	return ps
}

// request describes one POST and where it comes from.
type request struct {
	viaSocket string // Unix socket path; else TCP to url
	url       string // full URL (the Host comes from it unless host is set)
	source    string // source IP of the TCP connection; empty: any
	host      string
	header    map[string]string
}

// send makes the request and returns the status and the decoded JSON body.
func send(t *testing.T, r request) (int, map[string]any) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if r.source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(r.source)}
	}
	tr := &http.Transport{DialContext: d.DialContext}
	if r.viaSocket != "" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", r.viaSocket)
		}
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), generous)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.host != "" {
		req.Host = r.host
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Errorf("POST %s answered %d with a body that is not JSON: %q", r.url, resp.StatusCode, b)
	}
	return resp.StatusCode, body
}

// Nothing from outside the pod moves leadership, whatever the path; the
// application in the pod does, over the shared socket.
func TestOnlyThePodCanResign(t *testing.T) {
	cluster := etcdtest.Single(t)
	cs := startControlled(t, cluster.ClientURLs(), "a", "b")
	ps := processes(cs)
	leaderP, first := agree(t, ps)
	var leader controlled
	for _, c := range cs {
		if c.Process == leaderP {
			leader = c
		}
	}
	bearer := map[string]string{"Authorization": "Bearer " + e2eToken}
	browser := map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Authorization": "Bearer " + e2eToken}
	for _, tc := range []struct {
		name string
		r    request
		want int
	}{
		// A mesh proxy forwards outside traffic from 127.0.0.6.
		{"mesh-forwarded, pod-network port", request{url: leader.URL + "/resign", source: "127.0.0.6"}, http.StatusForbidden},
		{"mesh-forwarded, control port", request{url: "http://" + leader.addr + "/resign", source: "127.0.0.6"}, http.StatusUnauthorized},
		// DNS rebinding: the browser connects to loopback under a foreign name.
		{"foreign Host, pod-network port", request{url: leader.URL + "/resign", host: "evil.example:4040"}, http.StatusForbidden},
		{"foreign Host, control port with token", request{url: "http://" + leader.addr + "/resign", host: "evil.example", header: bearer}, http.StatusForbidden},
		{"foreign Host, control socket", request{viaSocket: leader.socket, url: "http://evil.example/resign", header: bearer}, http.StatusForbidden},
		// A cross-origin page in a browser.
		{"cross-origin, control port", request{url: "http://" + leader.addr + "/resign", header: browser}, http.StatusForbidden},
		{"cross-origin, control socket", request{viaSocket: leader.socket, url: "http://localhost/resign", header: browser}, http.StatusForbidden},
		// Right place, wrong token.
		{"control socket, wrong token", request{viaSocket: leader.socket, url: "http://localhost/resign",
			header: map[string]string{"Authorization": "Bearer nope-nope-nope-nope"}}, http.StatusUnauthorized},
	} {
		code, body := send(t, tc.r)
		if code != tc.want {
			t.Errorf("%s: status %d, want %d (%v)", tc.name, code, tc.want, body)
		}
		if _, ok := body["error"]; !ok {
			t.Errorf("%s: body %v has no error", tc.name, body)
		}
	}
	if st, err := leader.Status(t.Context()); err != nil || !st.IsLeader || st.FencingToken != first.FencingToken {
		t.Fatalf("after the refused requests %s's status is %+v (%v), want it still leading at token %d",
			leader.ID, st, err, first.FencingToken)
	}

	// The application container, over the socket on the shared volume.
	code, body := send(t, request{viaSocket: leader.socket, url: "http://localhost/resign", header: bearer})
	if code != http.StatusOK || body["is_leader"] != false {
		t.Fatalf("in-pod resign over the socket: %d %v", code, body)
	}
	next, st := agree(t, ps)
	if next == leaderP || st.FencingToken <= first.FencingToken {
		t.Errorf("after resign the leader is %s with token %d (was %s, %d)", next.ID, st.FencingToken, leader.ID, first.FencingToken)
	}
	// A follower has nothing to resign: a JSON 409, over loopback with the token.
	code, body = send(t, request{url: "http://" + leader.addr + "/resign", header: bearer})
	if code != http.StatusConflict || body["error"] != "not leader" {
		t.Errorf("POST /resign on a follower = %d %v, want 409 {\"error\":\"not leader\"}", code, body)
	}
}
