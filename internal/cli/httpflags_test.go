package cli

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadHTTPAPIFlagsAreOneClearErrorAndContactNothing(t *testing.T) {
	etcdAddr, contacts := countingListener(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--election", "e", "--etcd-endpoints", etcdAddr, "--http", ""}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"control addr without token", append(base, "--control-addr", "127.0.0.1:4041"), nil, "--control-addr \"127.0.0.1:4041\" needs --control-token-file"},
		{"control addr on all interfaces", append(base, "--control-addr", ":4041", "--control-token-file", token), nil, "--control-addr \":4041\": the host must be a loopback IP"},
		{"control addr on the pod IP", append(base, "--control-addr", "10.0.0.7:4041", "--control-token-file", token), nil, "--control-addr"},
		{"control addr by name", append(base, "--control-addr", "localhost:4041", "--control-token-file", token), nil, "loopback IP"},
		{"control addr without port", append(base, "--control-addr", "127.0.0.1", "--control-token-file", token), nil, "--control-addr \"127.0.0.1\": want host:port"},
		{"token without listener", append(base, "--control-token-file", token), nil, "--control-token-file is set but no control listener is"},
		{"socket in a missing directory", append(base, "--control-socket", "/nonexistent/c.sock"), nil, "--control-socket \"/nonexistent/c.sock\": the directory /nonexistent does not exist"},
		{"socket path too long", append(base, "--control-socket", "/tmp/"+strings.Repeat("s", 110)), nil, "at most 107 bytes"},
		{"missing token file", append(base, "--control-socket", "/tmp/x.sock", "--control-token-file", "/nonexistent"), nil, "--control-token-file"},
		{"empty token file", append(base, "--control-socket", "/tmp/x.sock", "--control-token-file", empty), nil, "--control-token-file"},
		{"short token", append(base, "--control-socket", "/tmp/x.sock", "--control-token-file", short), nil, "want at least 16"},
		{"zero connections", append(base, "--http-max-connections", "0"), nil, "--http-max-connections 0"},
		{"per client above total", append(base, "--http-max-connections", "10", "--http-max-connections-per-client", "11"), nil, "--http-max-connections-per-client 11"},
		{"zero watchers", append(base, "--http-max-watchers", "0"), nil, "--http-max-watchers 0"},
		{"watchers above total", append(base, "--http-max-connections", "10", "--http-max-watchers", "20"), nil, "--http-max-watchers 20"},
		{"bad watchers from env", base, map[string]string{"LEADER_ELECTOR_HTTP_MAX_WATCHERS": "many"}, "LEADER_ELECTOR_HTTP_MAX_WATCHERS (for --http-max-watchers)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertUsageError(t, tt.args, tt.env, tt.want)
		})
	}
	if n := contacts.Load(); n != 0 {
		t.Errorf("bad input contacted etcd %d times", n)
	}
}

func TestHTTPAPIFlagsParse(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]string{"--election=e", "--etcd-endpoints=127.0.0.1:2379", "--control-socket", "/tmp/control.sock",
		"--control-addr", "127.0.0.1:4041", "--http-max-connections", "100"},
		env(map[string]string{"LEADER_ELECTOR_CONTROL_TOKEN_FILE": token, "LEADER_ELECTOR_HTTP_MAX_WATCHERS": "7"}))
	if err != nil {
		t.Fatal(err)
	}
	want := apiFlags{ControlSocket: "/tmp/control.sock", ControlAddr: "127.0.0.1:4041", ControlTokenFile: token,
		MaxConnections: 100, MaxConnectionsPerClient: 64, MaxWatchers: 7}
	if cfg.API != want {
		t.Errorf("parsed %+v, want %+v", cfg.API, want)
	}
	// Off by default: only the pod-network listener, with the default limits.
	cfg, err = parseConfig([]string{"--election=e", "--etcd-endpoints=127.0.0.1:2379"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API.controlEnabled() || cfg.API.MaxConnections != 256 || cfg.API.MaxWatchers != 64 {
		t.Errorf("defaults %+v", cfg.API)
	}
}

func TestControlSocketInUseFailsBeforeContactingEtcd(t *testing.T) {
	etcdAddr, contacts := countingListener(t)
	dir, err := os.MkdirTemp("", "le-cli-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "c.sock")
	busy, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var stdout, stderr bytes.Buffer
	code := Run(t.Context(), []string{"--election", "e", "--etcd-endpoints", etcdAddr, "--http", "", "--control-socket", sock},
		env(nil), &stdout, &stderr)
	if code != exitError {
		t.Errorf("exit code %d, want %d", code, exitError)
	}
	if !strings.Contains(stderr.String(), "another process is listening") {
		t.Errorf("stderr %q does not explain the clash", stderr.String())
	}
	if n := contacts.Load(); n != 0 {
		t.Errorf("contacted etcd %d times", n)
	}
}
