package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingListener stands in for etcd and counts who connects.
func countingListener(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), &n
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestBadInputIsOneClearErrorAndContactsNothing(t *testing.T) {
	etcdAddr, contacts := countingListener(t)
	base := []string{"--election", "e", "--etcd-endpoints", etcdAddr, "--http", ""}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"missing election", []string{"--etcd-endpoints", etcdAddr}, nil, "--election is required"},
		{"bad election", []string{"--election", "a/b", "--etcd-endpoints", etcdAddr}, nil, "--election"},
		{"missing endpoints", []string{"--election", "e"}, nil, "--etcd-endpoints is required"},
		{"short ttl", append(base, "--ttl", "1s"), nil, "--ttl 1s is below etcd's minimum"},
		{"fractional ttl", append(base, "--ttl", "2500ms"), nil, "--ttl 2.5s: etcd leases are whole seconds"},
		{"bad ttl", append(base, "--ttl", "soon"), nil, "--ttl"},
		{"unknown backend", append(base, "--backend", "zookeeper"), nil, "--backend"},
		{"bad http", append(base, "--http", "4040"), nil, "--http"},
		{"bad log format", append(base, "--log-format", "xml"), nil, "--log-format"},
		{"bad log level", append(base, "--log-level", "loud"), nil, "--log-level"},
		{"unknown flag", append(base, "--nope"), nil, "unknown flag: --nope"},
		{"stray argument", append(base, "extra"), nil, `unexpected argument "extra"`},
		{"bad endpoint", []string{"--election", "e", "--etcd-endpoints", "nohost"}, nil, "--etcd-endpoints"},
		{"cert without key", append(base, "--etcd-cert", "c.pem"), nil, "--etcd-cert and --etcd-key"},
		{"user without password", append(base, "--etcd-username", "u"), nil, "--etcd-username needs a password"},
		{"missing password file", append(base, "--etcd-username", "u", "--etcd-password-file", "/nonexistent"), nil, "--etcd-password-file"},
		{"bad env value", base, map[string]string{"LEADER_ELECTOR_TTL": "soon"}, "LEADER_ELECTOR_TTL (for --ttl)"},
		{"bad negative timeout", append(base, "--etcd-dial-timeout", "-1s"), nil, "--etcd-dial-timeout"},
		{"dial timeout of 1 ns", append(base, "--etcd-dial-timeout", "1ns"), nil, "--etcd-dial-timeout 1ns is outside [100ms, 10m0s]"},
		{"dial timeout of a million hours", append(base, "--etcd-dial-timeout", "1000000h"), nil, "--etcd-dial-timeout 1000000h0m0s is outside"},
		{"duplicate endpoint", []string{"--election", "e", "--etcd-endpoints", etcdAddr + ",http://" + etcdAddr}, nil, "--etcd-endpoints " + `"` + etcdAddr + `" and "http://` + etcdAddr + `" are the same endpoint`},
		{"pod without namespace", append(base, "--pod-name", "p"), nil, "--pod-namespace is required"},
		{"missing kubeconfig", append(base, "--pod-name", "p", "--pod-namespace", "ns", "--kubeconfig", "/nonexistent"), nil, "--kubeconfig"},
		{"outside a cluster", append(base, "--pod-name", "p", "--pod-namespace", "ns"), nil, "in-cluster"},
		{"bad role label", append(base, "--pod-name", "p", "--pod-namespace", "ns", "--role-label", "not a label"), nil, "--role-label"},
		{"bad readiness gate", append(base, "--pod-name", "p", "--pod-namespace", "ns", "--readiness-gate", "a b"), nil, "--readiness-gate"},
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

func TestHTTPPortInUseFailsBeforeContactingEtcd(t *testing.T) {
	etcdAddr, contacts := countingListener(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var stdout, stderr bytes.Buffer
	code := Run(t.Context(), []string{"--election", "e", "--etcd-endpoints", etcdAddr, "--http", busy.Addr().String()},
		env(nil), &stdout, &stderr)
	if code != exitError {
		t.Errorf("exit code %d, want %d", code, exitError)
	}
	if !strings.Contains(stderr.String(), "address already in use") {
		t.Errorf("stderr %q does not explain the clash", stderr.String())
	}
	if n := contacts.Load(); n != 0 {
		t.Errorf("contacted etcd %d times", n)
	}
}

func TestContribStyleFlagsAndDefaults(t *testing.T) {
	kubeconfig := writeKubeconfig(t)
	cfg, err := parseConfig([]string{"-election=legacy", "-http=0.0.0.0:4040", "-ttl=5s", "--etcd-endpoints=127.0.0.1:2379",
		"-election-namespace=jobs", "--kubeconfig", kubeconfig},
		env(map[string]string{"POD_NAME": "web-3"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Election != "legacy" || cfg.HTTP != "0.0.0.0:4040" || cfg.TTL != 5*time.Second || cfg.ID != "web-3" ||
		!cfg.Kube.Enabled() || cfg.Kube.PodName != "web-3" || cfg.Kube.PodNamespace != "jobs" || cfg.kubeREST == nil {
		t.Errorf("parsed %+v", cfg)
	}
	cfg, err = parseConfig([]string{"--etcd-endpoints=127.0.0.1:2379"}, env(map[string]string{
		"LEADER_ELECTOR_ELECTION": "from-env", "LEADER_ELECTOR_ID": "env-id",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Election != "from-env" || cfg.ID != "env-id" || cfg.HTTP != defaultHTTP || cfg.Etcd.Prefix != "/leader-elector/" {
		t.Errorf("parsed %+v", cfg)
	}
	// A flag wins over the environment.
	cfg, err = parseConfig([]string{"--election=flag", "--etcd-endpoints=127.0.0.1:2379"}, env(map[string]string{"LEADER_ELECTOR_ELECTION": "env"}))
	if err != nil || cfg.Election != "flag" {
		t.Errorf("flag did not win over the environment: %+v, %v", cfg, err)
	}
}

func writeKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	const kc = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPasswordComesFromFileOrEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]string{"--election=e", "--etcd-endpoints=127.0.0.1:2379", "--etcd-username=u", "--etcd-password-file", file}, env(nil))
	if err != nil || cfg.Etcd.Password != "s3cret" {
		t.Fatalf("from file: %q, %v", cfg.Etcd.Password, err)
	}
	cfg, err = parseConfig([]string{"--election=e", "--etcd-endpoints=127.0.0.1:2379", "--etcd-username=u"},
		env(map[string]string{"LEADER_ELECTOR_ETCD_PASSWORD": "fromenv"}))
	if err != nil || cfg.Etcd.Password != "fromenv" {
		t.Fatalf("from env: %q, %v", cfg.Etcd.Password, err)
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out bytes.Buffer
	if code := Run(context.Background(), []string{"--help"}, env(nil), &out, &out); code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"--etcd-endpoints", "LEADER_ELECTOR_ELECTION", "LEADER_ELECTOR_ETCD_PASSWORD"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	out.Reset()
	if code := Run(context.Background(), []string{"version"}, env(nil), &out, &out); code != exitOK || out.Len() == 0 {
		t.Fatalf("version: exit %d, %q", code, out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestUnreachableBackendIsLoggedOnceWithItsCause: with etcd unreachable the
// first failure is logged at once (not after the dial timeout), naming the
// endpoint and the cause; retries are not logged again at warning level;
// durations read as durations.
func TestUnreachableBackendIsLoggedOnceWithItsCause(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	var stderr syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"--election", "e", "--etcd-endpoints", addr, "--http", "", "--log-level", "debug",
			"--etcd-dial-timeout", "10m", "--ttl", "2s"}, env(nil), io.Discard, &stderr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("exit code %d, want 0", code)
		}
	}()
	lines := func(level string) []string {
		var out []string
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.Contains(l, `"level":"`+level+`"`) {
				out = append(out, l)
			}
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second) // far below the 10 min dial timeout
	for len(lines("DEBUG")) < 20 || !strings.Contains(stderr.String(), "backend call failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no repeated failures logged:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var warns []string
	for _, l := range lines("WARN") {
		if strings.Contains(l, "backend call failed") {
			warns = append(warns, l)
		}
	}
	if len(warns) != 1 {
		t.Fatalf("%d warnings about the backend, want 1:\n%s", len(warns), strings.Join(warns, "\n"))
	}
	if !strings.Contains(warns[0], addr) || !strings.Contains(warns[0], "connection refused") {
		t.Errorf("the warning does not name the endpoint %s and the cause: %s", addr, warns[0])
	}
	if !strings.Contains(stderr.String(), `"ttl":"2s"`) {
		t.Errorf("the start-up log does not give the TTL as a duration:\n%s", stderr.String())
	}
}

// kubeconfigFor writes a kubeconfig whose server is addr.
func kubeconfigFor(t *testing.T, addr string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://` + addr + `"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKubernetesBackendBadInput(t *testing.T) {
	apiAddr, contacts := countingListener(t)
	kc := kubeconfigFor(t, apiAddr)
	base := []string{"--backend", "kubernetes", "--election", "e", "--kubeconfig", kc, "--lease-namespace", "ns", "--http", ""}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"short ttl", append(base, "--ttl", "1s"), nil, "--ttl 1s: the kubernetes backend needs between 2s and 24h0m0s"},
		{"long ttl", append(base, "--ttl", "25h"), nil, "--ttl 25h0m0s"},
		{"fractional ttl", append(base, "--ttl", "2500ms"), nil, "--ttl 2.5s: a Lease's duration is whole seconds"},
		{"bad lease name", append(base, "--lease-name", "Not_A_Name"), nil, `--lease-name "Not_A_Name" is not a valid Lease name:`},
		{"election is no object name", []string{"--backend", "kubernetes", "--election", "My_Election", "--kubeconfig", kc, "--lease-namespace", "ns"}, nil,
			`(it defaults to --election; set --lease-name)`},
		{"bad lease namespace", append(base, "--lease-namespace", "a.b"), nil, `--lease-namespace "a.b" is not a valid namespace`},
		{"no namespace outside a pod", []string{"--backend", "kubernetes", "--election", "e", "--kubeconfig", kc}, nil, "--lease-namespace is required outside a pod"},
		{"bad namespace from env", []string{"--backend", "kubernetes", "--election", "e", "--kubeconfig", kc},
			map[string]string{"POD_NAMESPACE": "Bad_NS"}, `--lease-namespace "Bad_NS"`},
		{"missing kubeconfig", []string{"--backend", "kubernetes", "--election", "e", "--lease-namespace", "ns", "--kubeconfig", "/nonexistent"}, nil, "--kubeconfig"},
		{"outside a cluster", []string{"--backend", "kubernetes", "--election", "e", "--lease-namespace", "ns"}, nil,
			"--backend kubernetes needs the in-cluster configuration or --kubeconfig"},
		{"bad env ttl", base, map[string]string{"LEADER_ELECTOR_TTL": "1500ms"}, "--ttl 1.5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertUsageError(t, tt.args, tt.env, tt.want)
		})
	}
	if n := contacts.Load(); n != 0 {
		t.Errorf("bad input contacted the API server %d times", n)
	}
}

func TestLeaseDefaults(t *testing.T) {
	kc := writeKubeconfig(t)
	for _, tt := range []struct {
		name          string
		args          []string
		env           map[string]string
		wantName      string
		wantNamespace string
	}{
		{"election name, POD_NAMESPACE", nil, map[string]string{"POD_NAMESPACE": "pods"}, "e", "pods"},
		{"flags win", []string{"--lease-name", "lock", "--lease-namespace", "locks", "--election-namespace", "contrib"},
			map[string]string{"POD_NAMESPACE": "pods"}, "lock", "locks"},
		{"contrib's election namespace", []string{"--election-namespace", "contrib"}, map[string]string{"POD_NAMESPACE": "pods"}, "e", "contrib"},
		{"pod namespace flag", []string{"--pod-namespace", "podns"}, nil, "e", "podns"},
		{"environment", nil, map[string]string{"LEADER_ELECTOR_LEASE_NAME": "envlock", "LEADER_ELECTOR_LEASE_NAMESPACE": "envns"}, "envlock", "envns"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--backend", "kubernetes", "--election", "e", "--kubeconfig", kc}, tt.args...)
			cfg, err := parseConfig(args, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Lease.Name != tt.wantName || cfg.Lease.Namespace != tt.wantNamespace || cfg.kubeREST == nil {
				t.Errorf("lease %s/%s (rest config %v), want %s/%s", cfg.Lease.Namespace, cfg.Lease.Name, cfg.kubeREST != nil,
					tt.wantNamespace, tt.wantName)
			}
		})
	}
}

// assertUsageError runs the command line and checks the bad-input contract:
// exit 2, one line naming the problem (containing want), then a hint.
func assertUsageError(t *testing.T, args []string, environ map[string]string, want string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(t.Context(), args, env(environ), &stdout, &stderr)
	if code != exitUsage {
		t.Errorf("exit code %d, want %d", code, exitUsage)
	}
	first, _, _ := strings.Cut(stderr.String(), "\n")
	if !strings.Contains(first, want) {
		t.Errorf("first line %q does not contain %q", first, want)
	}
	if n := strings.Count(stderr.String(), "\n"); n != 2 {
		t.Errorf("stderr has %d lines, want the error and a hint:\n%s", n, stderr.String())
	}
}

// TestUnknownVariableIsRefused: a misspelt LEADER_ELECTOR_ variable used to
// be ignored, so the sidecar ran with the default it was meant to replace.
// (t.Setenv: the check reads the process environment.)
func TestUnknownVariableIsRefused(t *testing.T) {
	addr, contacts := countingListener(t)
	args := []string{"--election", "e", "--etcd-endpoints", addr, "--http", ""}
	for name, want := range map[string]string{
		"LEADER_ELECTOR_ETCD_ENDPOINT":           "environment variable LEADER_ELECTOR_ETCD_ENDPOINT is set but is no setting of the sidecar (did you mean LEADER_ELECTOR_ETCD_ENDPOINTS?)",
		"LEADER_ELECTOR_TLL":                     "(did you mean LEADER_ELECTOR_TTL?)",
		"LEADER_ELECTOR_SOMETHING_ELSE_ENTIRELY": "environment variable LEADER_ELECTOR_SOMETHING_ELSE_ENTIRELY is set but is no setting of the sidecar",
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, "1")
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), append(args, "--ttl", "0s"), os.Getenv, &stdout, &stderr)
			first, _, _ := strings.Cut(stderr.String(), "\n")
			if code != exitUsage || !strings.Contains(first, want) {
				t.Errorf("exit %d, first line %q; want %d and %q", code, first, exitUsage, want)
			}
			if strings.Contains(want, "ENTIRELY") && strings.Contains(first, "did you mean") {
				t.Errorf("%q: suggests a name that is not close", first)
			}
		})
	}
	// The variables `sidecar exec` gives its command are not settings, but a
	// sidecar may inherit them; secrets are settings without a flag.
	for _, name := range []string{"LEADER_ELECTOR_FENCING_TOKEN", "LEADER_ELECTOR_IDENTITY", "LEADER_ELECTOR_INJECTOR_PORT"} {
		t.Setenv(name, "1")
	}
	if _, err := parseConfig(args, os.Getenv); err != nil {
		t.Errorf("with inherited exec/injector variables: %v", err)
	}
	if n := contacts.Load(); n != 0 {
		t.Errorf("%d connections to the endpoint, want none", n)
	}
}
