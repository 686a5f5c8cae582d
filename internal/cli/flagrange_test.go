package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// secret is a password that appears in some bad inputs and must never be
// printed.
const secret = "hunter2-s3cr3t"

// rangeCase is a bad value of one flag: the error's first line must contain
// want, and no line may contain secret.
type rangeCase struct {
	name string
	args []string
	env  map[string]string
	want string
}

// TestEveryFlagOutOfRange is the sweep of issue 12 item 5: each flag's
// values outside its valid range are one line naming the flag, exit 2, and
// contact nothing (neither the etcd nor the Redis stand-in sees a
// connection). TestEveryFlagHasARangeCase keeps the table complete.
func TestEveryFlagOutOfRange(t *testing.T) {
	addr, contacts := countingListener(t)
	dir := t.TempDir()
	emptyFile := filepath.Join(dir, "empty")
	pwFile := filepath.Join(dir, "pw")
	for f, content := range map[string]string{emptyFile: "\n", pwFile: secret + "\n"} {
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, port, _ := strings.Cut(addr, ":")
	etcd := []string{"--election", "e", "--etcd-endpoints", addr, "--http", ""}
	// --redis-addr and --etcd-endpoints add to earlier values: cases that
	// list addresses start from redisNoAddr.
	redis := []string{"--backend", "redis", "--election", "e", "--redis-addr", addr, "--http", ""}
	redisNoAddr := []string{"--backend", "redis", "--election", "e", "--http", ""}
	lease := []string{"--backend", "kubernetes", "--election", "e", "--http", ""}
	pod := append(append([]string{}, etcd...), "--pod-name", "p", "--pod-namespace", "ns")
	with := func(base []string, extra ...string) []string { return append(append([]string{}, base...), extra...) }
	pw := map[string]string{"LEADER_ELECTOR_ETCD_PASSWORD": secret, "LEADER_ELECTOR_REDIS_PASSWORD": secret}

	tests := []rangeCase{
		// Common flags.
		{"backend", with(etcd, "--backend", "zk"), nil, `--backend "zk"`},
		{"election with a slash", with(etcd, "--election", "a/b"), nil, `--election "a/b"`},
		{"election with a colon", with(etcd, "--election", "a:b"), nil, `--election "a:b"`},
		{"election too long", with(etcd, "--election", strings.Repeat("e", 64)), nil, "--election"},
		{"election namespace", with(etcd, "--election-namespace", "Prod_NS"), nil, `--election-namespace "Prod_NS"`},
		{"id too long", with(etcd, "--id", strings.Repeat("i", 254)), nil, "--id"},
		{"id blank", with(etcd, "--id", " "), nil, "--id"},
		{"ttl zero", with(etcd, "--ttl", "0s"), nil, "--ttl"},
		{"ttl above etcd's maximum lease", with(etcd, "--ttl", "9000000001s"), nil, "--ttl 2500000h0m1s is above etcd's maximum lease"},
		{"ttl below redis minimum", with(redis, "--ttl", "1ms"), nil, "--ttl"},
		{"http port too large", with(etcd, "--http", ":99999"), nil, `--http ":99999": port "99999" is not a number from 0 to 65535`},
		{"http port not a number", with(etcd, "--http", ":http"), nil, `--http ":http": port`},
		{"http host a name", with(etcd, "--http", "pod.example:4040"), nil, `--http "pod.example:4040": the host must be empty, an IP address or localhost`},
		{"log format", with(etcd, "--log-format", "xml"), nil, "--log-format"},
		{"log level", with(etcd, "--log-level", "loud"), nil, "--log-level"},
		{"history file in a missing directory", with(etcd, "--history-file", "/nonexistent/h.jsonl"), nil, `--history-file "/nonexistent/h.jsonl": the directory /nonexistent does not exist`},
		{"history file a directory", with(etcd, "--history-file", dir), nil, "is a directory"},
		{"status file in a missing directory", with(etcd, "--status-file", "/nonexistent/s.json"), nil, `--status-file "/nonexistent/s.json": the directory /nonexistent does not exist`},
		{"status file a directory", with(etcd, "--status-file", dir), nil, `--status-file "` + dir + `": is a directory`},
		{"incarnation file in a missing directory", with(etcd, "--incarnation-file", "/nonexistent/i"), nil, `--incarnation-file "/nonexistent/i": the directory /nonexistent does not exist`},
		{"exec grace", append([]string{"exec"}, with(etcd, "--exec-grace", "0s", "--", "true")...), nil, "--exec-grace must be positive"},
		{"exec on exit", append([]string{"exec"}, with(etcd, "--exec-on-exit", "restart", "--", "true")...), nil, `--exec-on-exit "restart"`},
		{"generation negative", with(etcd, "--generation", "-1"), nil, "--generation -1 must not be negative"},
		{"generation not a number", with(etcd, "--generation", "latest"), nil, `invalid argument "latest" for "--generation" flag: want a whole number or auto`},
		{"generation from the environment", etcd, map[string]string{"LEADER_ELECTOR_GENERATION": "newest"}, `LEADER_ELECTOR_GENERATION (for --generation): invalid argument "newest"`},
		{"generation auto outside a pod", with(etcd, "--generation", "auto"), nil, "--generation=auto reads this pod's workload: it needs the pod's name (--pod-name or POD_NAME)"},
		{"app health url", with(etcd, "--app-health-url", "localhost:8080/healthz"), nil, "--app-health-url"},
		{"app health interval", with(etcd, "--app-health-url", "http://127.0.0.1:8080/", "--app-health-interval", "0s"), nil, "--app-health-interval must be positive"},
		{"app health timeout", with(etcd, "--app-health-url", "http://127.0.0.1:8080/", "--app-health-timeout", "-1s"), nil, "--app-health-timeout must be positive"},
		{"app health timeout above the interval", with(etcd, "--app-health-url", "http://127.0.0.1:8080/", "--app-health-interval", "1s", "--app-health-timeout", "2s"), nil, "--app-health-timeout"},
		{"app health failures", with(etcd, "--app-health-url", "http://127.0.0.1:8080/", "--app-health-failures", "0"), nil, "--app-health-failures must be at least 1"},
		{"app health successes", with(etcd, "--app-health-url", "http://127.0.0.1:8080/", "--app-health-successes", "0"), nil, "--app-health-successes must be at least 1"},
		{"legacy key layout", with(etcd, "--legacy-key-layout=maybe"), nil, "--legacy-key-layout"},
		{"control addr port too large", with(etcd, "--control-addr", "127.0.0.1:70000"), nil, `--control-addr "127.0.0.1:70000": port`},
		{"control socket", with(etcd, "--control-socket", "/nonexistent/c.sock"), nil, "--control-socket"},
		{"control token file", with(etcd, "--control-socket", filepath.Join(dir, "c.sock"), "--control-token-file", emptyFile), nil, "--control-token-file"},
		{"http max connections", with(etcd, "--http-max-connections", "-1"), nil, "--http-max-connections -1"},
		{"http max connections per client", with(etcd, "--http-max-connections-per-client", "0"), nil, "--http-max-connections-per-client 0"},
		{"http max watchers", with(etcd, "--http-max-watchers", "0"), nil, "--http-max-watchers 0"},

		// etcd.
		{"etcd endpoint port zero", with(etcd, "--etcd-endpoints", "127.0.0.1:0"), nil, `--etcd-endpoints "127.0.0.1:0": port "0" is not a number from 1 to 65535`},
		{"etcd endpoint port too large", with(etcd, "--etcd-endpoints", "http://127.0.0.1:99999"), nil, `port "99999"`},
		{"etcd endpoint scheme", with(etcd, "--etcd-endpoints", "ftp://127.0.0.1:2379"), nil, `unsupported scheme "ftp"`},
		{"etcd endpoint twice", with(etcd, "--etcd-endpoints", addr+","+addr), nil, "is given twice"},
		{"etcd password in the URL", with(etcd, "--etcd-endpoints", "http://root:"+secret+"@127.0.0.1:"+port), nil, `--etcd-endpoints "http://REDACTED@127.0.0.1:` + port + `": a user or password in an endpoint URL is refused`},
		{"etcd password in a bad URL", with(etcd, "--etcd-endpoints", "ftp://root:"+secret+"@nohost"), nil, `"ftp://REDACTED@nohost"`},
		{"etcd prefix empty", with(etcd, "--etcd-prefix", ""), nil, "--etcd-prefix must not be empty"},
		{"etcd prefix unterminated", with(etcd, "--etcd-prefix", "/apps"), nil, `--etcd-prefix "/apps" must end with '/'`},
		{"etcd prefix with a colon", with(etcd, "--etcd-prefix", "/a:b/"), nil, `--etcd-prefix "/a:b/" must not contain ':'`},
		{"etcd namespace", with(etcd, "--pod-namespace", "Not_A_Namespace"), nil, `--pod-namespace "Not_A_Namespace"`},
		{"etcd dial timeout", with(etcd, "--etcd-dial-timeout", "0s"), nil, "--etcd-dial-timeout"},
		{"etcd cacert with http endpoint", with(etcd, "--etcd-endpoints", "http://etcd.invalid:2379", "--etcd-cacert", "/nonexistent/ca.pem"), nil, `--etcd-endpoints "http://etcd.invalid:2379" is plaintext but TLS files were given (--etcd-cacert, --etcd-cert)`},
		{"etcd client cert with unix endpoint", with(etcd, "--etcd-endpoints", "unix:///run/etcd.sock", "--etcd-cert", "c", "--etcd-key", "k"), nil, "is plaintext but TLS files were given"},
		{"etcd missing cacert", with(etcd, "--etcd-cacert", "/nonexistent/ca.pem"), nil, "--etcd-cacert"},
		{"etcd cert without key", with(etcd, "--etcd-cert", "c.pem"), nil, "--etcd-cert and --etcd-key"},
		{"etcd key without cert", with(etcd, "--etcd-key", "k.pem"), nil, "--etcd-cert and --etcd-key"},
		{"etcd password in plaintext", with(etcd, "--etcd-endpoints", "etcd.invalid:2379", "--etcd-username", "app"), pw, `--etcd-username would send the password in plaintext to "etcd.invalid:2379"`},
		{"etcd password in plaintext over http", with(etcd, "--etcd-endpoints", "http://etcd.invalid:2379", "--etcd-username", "app", "--etcd-password-file", pwFile), nil, "--etcd-insecure-plaintext-auth"},
		{"etcd username without password", with(etcd, "--etcd-username", "app"), nil, "--etcd-username needs a password"},
		{"etcd password without username", with(etcd, "--etcd-password-file", pwFile), nil, "was given without --etcd-username"},
		{"etcd empty password file", with(etcd, "--etcd-username", "app", "--etcd-password-file", emptyFile), nil, "--etcd-password-file file " + emptyFile + " is empty"},
		{"etcd missing password file", with(etcd, "--etcd-username", "app", "--etcd-password-file", "/nonexistent"), nil, "--etcd-password-file"},
		{"etcd password from a file and the environment", with(etcd, "--etcd-username", "app", "--etcd-password-file", pwFile), pw, "--etcd-password-file and a password from the environment are both set"},
		{"etcd endpoint with a path", with(etcd, "--etcd-endpoints", "http://127.0.0.1:"+port+"/v3"), nil, "has no path, query or fragment"},
		{"etcd endpoint with a query", with(etcd, "--etcd-endpoints", "https://127.0.0.1:"+port+"?x=1"), nil, "has no path, query or fragment"},
		{"redis flag with the etcd backend", with(etcd, "--redis-addr", addr), nil, "--redis-addr applies to --backend redis only"},
		{"lease flag with the etcd backend", with(etcd, "--lease-name", "l"), nil, "--lease-name applies to --backend kubernetes only"},
		{"redis flag from the environment with the etcd backend", etcd, map[string]string{"LEADER_ELECTOR_REDIS_DB": "1"}, "--redis-db applies to --backend redis only"},
		{"etcd insecure flag", with(etcd, "--etcd-insecure-plaintext-auth=sometimes"), nil, "--etcd-insecure-plaintext-auth"},

		// Redis.
		{"redis address", with(redisNoAddr, "--redis-addr", "nohost"), nil, `--redis-addr "nohost"`},
		{"redis port too large", with(redisNoAddr, "--redis-addr", "127.0.0.1:99999"), nil, `bad port "99999"`},
		{"redis two masters", with(redisNoAddr, "--redis-addr", addr+",127.0.0.2:6379"), nil, "Redlock needs an odd number"},
		{"redis one server three times", with(redisNoAddr, "--redis-addr", "localhost:"+port+",127.0.0.1:"+port+",[::1]:"+port), nil, `--redis-addr "localhost:` + port + `" and "127.0.0.1:` + port + `" are the same server`},
		{"redis one server spelled twice", with(redisNoAddr, "--redis-addr", "Redis-0.example:6379,redis-0.example.:6379,redis-1.example:6379"), nil, "are the same server"},
		{"redis password in the address", with(redisNoAddr, "--redis-addr", "default:"+secret+"@127.0.0.1:"+port), nil, `--redis-addr "REDACTED@127.0.0.1:` + port + `": a user or password in an address is refused`},
		{"redis URL with a password", with(redisNoAddr, "--redis-addr", "redis://:"+secret+"@redis.invalid:6379"), nil, `"REDACTED@redis.invalid:6379"`},
		{"redis db", with(redis, "--redis-db", "-1"), nil, "--redis-db must not be negative"},
		{"redis password in plaintext", with(redisNoAddr, "--redis-addr", "redis.invalid:6379"), pw, `--redis-tls is off: the password would cross the network in plaintext to "redis.invalid:6379"`},
		{"redis password file in plaintext", with(redisNoAddr, "--redis-addr", "redis.invalid:6379", "--redis-password-file", pwFile), nil, "--redis-insecure-plaintext-auth"},
		{"redis empty password file", with(redis, "--redis-password-file", emptyFile), nil, "--redis-password-file file " + emptyFile + " is empty"},
		{"redis missing password file", with(redis, "--redis-password-file", "/nonexistent"), nil, "--redis-password-file"},
		{"redis password from a file and the environment", with(redis, "--redis-password-file", pwFile), pw, "--redis-password-file and LEADER_ELECTOR_REDIS_PASSWORD are both set"},
		{"etcd flag with the redis backend", with(redis, "--etcd-prefix", "/x/"), nil, "--etcd-prefix applies to --backend etcd only"},
		{"redis cacert without tls", with(redis, "--redis-cacert", "ca.pem"), nil, "--redis-cacert needs --redis-tls"},
		{"redis cert without tls", with(redis, "--redis-cert", "c.pem", "--redis-key", "k.pem"), nil, "--redis-cert needs --redis-tls"},
		{"redis missing cacert", with(redis, "--redis-tls", "--redis-cacert", "/nonexistent/ca.pem"), nil, "--redis-cacert"},
		{"redis cacert not PEM", with(redis, "--redis-tls", "--redis-cacert", emptyFile), nil, "--redis-cacert file " + emptyFile + " has no PEM certificates"},
		{"redis cert without key", with(redis, "--redis-tls", "--redis-cert", "c.pem"), nil, "--redis-cert needs --redis-key"},
		{"redis key without cert", with(redis, "--redis-tls", "--redis-key", "k.pem"), nil, "--redis-key needs --redis-cert"},
		{"redis missing cert files", with(redis, "--redis-tls", "--redis-cert", "/nonexistent/c", "--redis-key", "/nonexistent/k"), nil, "--redis-cert/--redis-key"},
		{"redis tls", with(redis, "--redis-tls=yes"), nil, "--redis-tls"},
		{"redis assume noeviction", with(redis, "--redis-assume-noeviction=maybe"), nil, "--redis-assume-noeviction"},
		{"redis key prefix with whitespace", with(redis, "--redis-key-prefix", "a b:"), nil, "--redis-key-prefix"},
		{"redis key prefix unterminated", with(redis, "--redis-key-prefix", "app"), nil, `--redis-key-prefix "app" must end with ':'`},
		{"redis key prefix with a slash", with(redis, "--redis-key-prefix", "a/b:"), nil, `--redis-key-prefix "a/b:" must not contain '/'`},
		{"redis namespace", with(redis, "--pod-namespace", "Bad.NS"), nil, `--pod-namespace "Bad.NS"`},
		{"redis insecure flag", with(redis, "--redis-insecure-plaintext-auth=1x"), nil, "--redis-insecure-plaintext-auth"},

		// The Kubernetes Lease backend.
		{"lease name", with(lease, "--lease-name", "Not_A_Name", "--lease-namespace", "ns"), nil, `--lease-name "Not_A_Name"`},
		{"lease namespace", with(lease, "--lease-namespace", "Bad.NS"), nil, `--lease-namespace "Bad.NS"`},

		// Kubernetes publishing.
		{"pod name", with(etcd, "--pod-name", "Not_A_Pod", "--pod-namespace", "ns"), nil, "--pod-name"},
		{"pod namespace missing", with(etcd, "--pod-name", "p"), nil, "--pod-namespace is required"},
		{"kubeconfig", with(pod, "--kubeconfig", "/nonexistent"), nil, "--kubeconfig"},
		{"role label", with(pod, "--role-label", "not a label"), nil, "--role-label"},
		{"leader value", with(pod, "--leader-value", "not a value"), nil, "--leader-value"},
		{"follower value", with(pod, "--follower-value", "x/y"), nil, "--follower-value"},
		{"leader and follower values equal", with(pod, "--leader-value", "x", "--follower-value", "x"), nil, "--leader-value and --follower-value must differ"},
		{"election label", with(pod, "--election-label", "a b"), nil, "--election-label"},
		{"readiness gate", with(pod, "--readiness-gate", "a b"), nil, "--readiness-gate"},
		{"kube events", with(pod, "--kube-events=often"), nil, "--kube-events"},
		{"kube resync", with(pod, "--kube-resync", "1ms"), nil, "--kube-resync must be at least 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			// Cancelled: a value wrongly accepted ends the run at once
			// instead of running the sidecar until the test times out.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			code := Run(ctx, tt.args, env(tt.env), &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			first, _, _ := strings.Cut(stderr.String(), "\n")
			if !strings.Contains(first, tt.want) {
				t.Errorf("first line %q does not contain %q", first, tt.want)
			}
			if n := strings.Count(stderr.String(), "\n"); n != 2 {
				t.Errorf("stderr has %d lines, want the error and a hint:\n%s", n, stderr.String())
			}
			if strings.Contains(stderr.String()+stdout.String(), secret) {
				t.Errorf("the password was printed:\n%s", stderr.String())
			}
		})
	}
	if n := contacts.Load(); n != 0 {
		t.Errorf("bad input contacted the backend stand-in %d times", n)
	}
}

// TestEveryFlagHasARangeCase fails when a flag is added without a case in
// TestEveryFlagOutOfRange's table (the sweep stays a sweep). Flags whose
// every value is valid are listed with the reason.
func TestEveryFlagHasARangeCase(t *testing.T) {
	src, err := os.ReadFile("flagrange_test.go")
	if err != nil {
		t.Fatal(err)
	}
	anyValue := map[string]string{
		"etcd-username":  "any etcd user name; checked with its password",
		"redis-username": "any Redis ACL user name; checked with its password",
		"pod-uid":        "compared with the incarnation file's record only, never parsed",
	}
	cfg := &config{}
	var lvl string
	newFlagSet(cfg, &lvl).VisitAll(func(f *pflag.Flag) {
		if _, ok := anyValue[f.Name]; ok {
			return
		}
		if !bytes.Contains(src, []byte(`"--`+f.Name)) {
			t.Errorf("--%s has no case in TestEveryFlagOutOfRange", f.Name)
		}
	})
}

// TestElectionScope: the key-value backends' elections are scoped by the
// pod's namespace from each place internal/cli reads it, "default" when
// none is known, and not at all with --legacy-key-layout.
func TestElectionScope(t *testing.T) {
	base := []string{"--election", "web", "--etcd-endpoints", "127.0.0.1:2379", "--redis-addr", "127.0.0.1:6379"}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		etcd, rds string
	}{
		{"unknown namespace", base, nil, "/leader-elector/default:web/", "leader-elector:default/web"},
		{"POD_NAMESPACE", base, map[string]string{"POD_NAMESPACE": "prod"}, "/leader-elector/prod:web/", "leader-elector:prod/web"},
		{"--pod-namespace", append(base, "--pod-namespace", "staging"), nil, "/leader-elector/staging:web/", "leader-elector:staging/web"},
		{"contrib --election-namespace", append(base, "-election-namespace=qa"), nil, "/leader-elector/qa:web/", "leader-elector:qa/web"},
		{"custom prefixes", append(base, "--pod-namespace", "qa", "--etcd-prefix", "/team/", "--redis-key-prefix", "team:"), nil, "/team/qa:web/", "team:qa/web"},
		{"legacy layout", append(base, "--legacy-key-layout"), map[string]string{"POD_NAMESPACE": "prod"}, "/leader-elector/web/", "leader-elector:web"},
		{"legacy layout keeps any prefix", append(base, "--legacy-key-layout", "--etcd-prefix", "/a:b", "--redis-key-prefix", "x/"), nil, "/a:bweb/", "x/web"},
	}
	// withoutFlags drops the flags (each with its value) whose names start
	// with prefix: each backend refuses the other's flags.
	withoutFlags := func(args []string, prefix string) []string {
		var out []string
		for i := 0; i < len(args); i++ {
			if strings.HasPrefix(args[i], prefix) {
				i++
				continue
			}
			out = append(out, args[i])
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(withoutFlags(tt.args, "--redis-"), env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Etcd.ElectionPrefix(cfg.Election); got != tt.etcd {
				t.Errorf("etcd prefix %q, want %q", got, tt.etcd)
			}
			cfg, err = parseConfig(append(withoutFlags(tt.args, "--etcd-"), "--backend", "redis"), env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Redis.ElectionKey(cfg.Election); got != tt.rds {
				t.Errorf("redis key %q, want %q", got, tt.rds)
			}
		})
	}
}

// TestCredentialsThatStayEncryptedOrLocalAreAccepted: a password may go to
// a loopback IP or a Unix socket without TLS, and anywhere with the
// explicitly insecure flags.
func TestCredentialsThatStayEncryptedOrLocalAreAccepted(t *testing.T) {
	pw := map[string]string{"LEADER_ELECTOR_ETCD_PASSWORD": secret, "LEADER_ELECTOR_REDIS_PASSWORD": secret}
	for _, args := range [][]string{
		{"--etcd-endpoints", "127.0.0.1:2379", "--etcd-username", "app"},
		{"--etcd-endpoints", "http://[::1]:2379", "--etcd-username", "app"},
		{"--etcd-endpoints", "unix:///run/etcd.sock", "--etcd-username", "app"},
		{"--etcd-endpoints", "https://etcd.example:2379", "--etcd-username", "app"},
		{"--etcd-endpoints", "etcd.example:2379", "--etcd-username", "app", "--etcd-insecure-plaintext-auth"},
		{"--backend", "redis", "--redis-addr", "127.0.0.1:6379"},
		{"--backend", "redis", "--redis-addr", "redis.example:6379", "--redis-tls"},
		{"--backend", "redis", "--redis-addr", "redis.example:6379", "--redis-insecure-plaintext-auth"},
	} {
		if _, err := parseConfig(append([]string{"--election", "e"}, args...), env(pw)); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}
