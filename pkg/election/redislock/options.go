package redislock

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// DefaultKeyPrefix is prepended to every key and channel name.
const DefaultKeyPrefix = "leader-elector:"

// Options says how to reach Redis. One address means a single Redis master;
// an odd number of three or more means independent masters used with the
// Redlock algorithm.
type Options struct {
	// Addrs are host:port addresses. Required.
	Addrs []string
	// Username is the ACL user; empty means the default user.
	Username string
	// Password is not a flag: the caller fills it from the environment.
	// Mutually exclusive with PasswordFile. A password (either way) is
	// refused without TLS unless every address is a loopback IP or
	// InsecurePlaintextAuth is set.
	Password string
	// PasswordFile is read by Validate and New; surrounding whitespace is
	// trimmed; an empty file is an error.
	PasswordFile string
	// InsecurePlaintextAuth allows a password without TLS to non-loopback
	// addresses: for a network whose own layer encrypts (a service mesh's
	// mutual TLS). Default false.
	InsecurePlaintextAuth bool
	// DB is the logical database number. Default 0.
	DB int
	// TLS enables TLS to every address.
	TLS bool
	// CACert, Cert and Key are PEM files: the CA bundle that verifies the
	// servers (default: the system pool) and an optional client certificate.
	CACert, Cert, Key string
	// KeyPrefix is prepended to every key and channel. Default DefaultKeyPrefix.
	// With a Namespace it must end with ':' and contain no '/', so that no
	// two elections share a key (see ElectionKey).
	KeyPrefix string
	// AssumeNoEviction is the operator's word that every master runs
	// maxmemory-policy noeviction, for servers where the user may read
	// neither CONFIG GET nor INFO (some managed services). It is used only
	// when the policy cannot be read: a policy that is read and can evict
	// the lock is refused whatever this says. Default false: such a master
	// is refused.
	AssumeNoEviction bool
	// Namespace scopes the election: the same election name in two
	// namespaces is two elections. It must be a Kubernetes namespace name
	// (a DNS-1123 label). Empty keeps the unscoped layout of earlier
	// versions, which accepts any KeyPrefix.
	Namespace string
}

// DefaultOptions returns Options with every default filled in.
func DefaultOptions() Options {
	return Options{KeyPrefix: DefaultKeyPrefix}
}

// Validate returns one *election.ConfigError naming the first bad field,
// or nil. It contacts nothing.
func (o Options) Validate() error {
	if len(o.Addrs) == 0 {
		return election.Invalid("Addrs", ": at least one address is required")
	}
	seen := make(map[string]string, len(o.Addrs))
	for _, a := range o.Addrs {
		// Checked first: the other messages quote the address.
		if at := strings.LastIndex(a, "@"); at >= 0 {
			return election.Invalid("Addrs", "%q: a user or password in an address is refused (it would be logged); use {Username} and a password file or the environment", "REDACTED@"+a[at+1:])
		}
		if err := validateAddr(a); err != nil {
			return election.Invalid("Addrs", "%q: %v", a, err)
		}
		// One server listed under two spellings would count twice toward
		// a Redlock majority.
		key := addrKey(a)
		if first, ok := seen[key]; ok {
			if first == a {
				return election.Invalid("Addrs", "%q is given twice", a)
			}
			return election.Invalid("Addrs", "%q and %q are the same server", first, a)
		}
		seen[key] = a
	}
	if n := len(o.Addrs); n > 1 && (n%2 == 0 || n < 3) {
		return election.Invalid("Addrs", ": Redlock needs an odd number (3 or more) of independent masters, got %d", n)
	}
	if o.DB < 0 {
		return election.Invalid("DB", "must not be negative, got %d", o.DB)
	}
	if o.Password != "" && o.PasswordFile != "" {
		return election.Invalid("PasswordFile", ": a password was also given; use one or the other")
	}
	if !o.TLS {
		for _, f := range []struct{ field, value string }{
			{"CACert", o.CACert}, {"Cert", o.Cert}, {"Key", o.Key},
		} {
			if f.value != "" {
				return election.Invalid(f.field, "needs {TLS}")
			}
		}
	}
	if o.Cert != "" && o.Key == "" {
		return election.Invalid("Cert", "needs {Key}")
	}
	if o.Key != "" && o.Cert == "" {
		return election.Invalid("Key", "needs {Cert}")
	}
	if o.TLS {
		// Read now, so a missing or bad file is a start-up error.
		if _, err := o.tlsConfig(); err != nil {
			return err
		}
	}
	if strings.ContainsAny(o.KeyPrefix, " \t\r\n") {
		return election.Invalid("KeyPrefix", "%q must not contain whitespace", o.KeyPrefix)
	}
	if o.Namespace != "" {
		if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
			return election.Invalid("Namespace", "%q: %s", o.Namespace, strings.Join(errs, "; "))
		}
		switch {
		case !strings.HasSuffix(o.KeyPrefix, ":"):
			return election.Invalid("KeyPrefix", "%q must end with ':' (it is followed by <namespace>/<election>)", o.KeyPrefix)
		case strings.Contains(o.KeyPrefix, "/"):
			return election.Invalid("KeyPrefix", "%q must not contain '/' (it separates namespace and election; one in the prefix could make two elections share a key)", o.KeyPrefix)
		}
	}
	if o.PasswordFile != "" {
		if _, err := readPassword(o.PasswordFile); err != nil {
			return err
		}
	}
	if !o.TLS && (o.Password != "" || o.PasswordFile != "") && !o.InsecurePlaintextAuth {
		for _, a := range o.Addrs {
			if !loopbackAddr(a) {
				return election.Invalid("TLS", "is off: the password would cross the network in plaintext to %q; turn {TLS} on, or set {InsecurePlaintextAuth} if the network encrypts (a service mesh)", a)
			}
		}
	}
	return nil
}

// ElectionKey is the key of election's lock under o's layout (its fencing
// counter, channel, first-seen time, line and switchover reservation add
// ":token", ":events", ":since", ":line" and ":next"): <KeyPrefix><Namespace>/<election>, or <KeyPrefix><election>
// without a Namespace. A namespace has neither ':' nor '/', an election
// name neither, and with a Namespace the prefix ends with ':' and has no
// '/', so a key names one (prefix, namespace, election) only; unscoped
// keys have no '/' after the prefix, so they never equal scoped ones.
func (o Options) ElectionKey(election string) string {
	return o.keyPrefix() + election
}

// keyPrefix is what precedes the election name in every key.
func (o Options) keyPrefix() string {
	p := o.KeyPrefix
	if p == "" {
		p = DefaultKeyPrefix
	}
	if o.Namespace == "" {
		return p
	}
	return p + o.Namespace + "/"
}

// readPassword reads a password file; an empty one is an error, not "no
// password" (an empty Secret key must not turn authentication off).
func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", election.Invalid("PasswordFile", ": %v", err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return "", election.Invalid("PasswordFile", "file %s is empty", path)
	}
	return pw, nil
}

// addrKey identifies a server without a DNS lookup: the host in lower case
// without a trailing dot, an IP literal in canonical form, and localhost or
// any loopback IP as one loopback host. Two DNS names of one server are not
// detected here.
func addrKey(a string) string {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return a
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Unmap().IsLoopback() {
			return "loopback:" + port
		}
		return net.JoinHostPort(ip.Unmap().String(), port)
	}
	if host == "localhost" {
		return "loopback:" + port
	}
	return net.JoinHostPort(host, port)
}

// loopbackAddr reports whether a is a loopback IP literal (a name could
// resolve elsewhere), whose traffic stays on this host.
func loopbackAddr(a string) bool {
	host, _, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func validateAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if host == "" {
		return errors.New("missing host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// clientOptions turns o into go-redis options, one per address, reading the
// password and TLS files.
func (o Options) clientOptions(opTimeout time.Duration) ([]*redis.Options, error) {
	password := o.Password
	if o.PasswordFile != "" {
		var err error
		if password, err = readPassword(o.PasswordFile); err != nil {
			return nil, err
		}
	}
	var tlsConfig *tls.Config
	if o.TLS {
		var err error
		if tlsConfig, err = o.tlsConfig(); err != nil {
			return nil, err
		}
	}
	out := make([]*redis.Options, len(o.Addrs))
	for i, addr := range o.Addrs {
		out[i] = baseClientOptions(addr, opTimeout)
		out[i].Username = o.Username
		out[i].Password = password
		out[i].DB = o.DB
		out[i].TLSConfig = tlsConfig
	}
	return out, nil
}

// baseClientOptions are the go-redis settings every node's client uses.
func baseClientOptions(addr string, opTimeout time.Duration) *redis.Options {
	return &redis.Options{
		Addr: addr,
		// Every call carries its own deadline, and nothing is retried
		// blindly: the lock algorithm decides what to do next, and a node
		// that is down must cost one refused dial, not a retry loop.
		ContextTimeoutEnabled: true,
		DialTimeout:           opTimeout,
		// A call without a deadline of its own (a pub/sub connection's
		// handshake) must not wait on a dead link longer than a request
		// may: Campaign stops its listeners before it returns a won term.
		ReadTimeout:     opTimeout,
		WriteTimeout:    opTimeout,
		DialerRetries:   1,
		MaxRetries:      -1,
		PoolSize:        4,
		DisableIdentity: true,
	}
}

func (o Options) tlsConfig() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, election.Invalid("CACert", ": %v", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, election.Invalid("CACert", "file %s has no PEM certificates", o.CACert)
		}
	}
	if o.Cert != "" {
		cert, err := tls.LoadX509KeyPair(o.Cert, o.Key)
		if err != nil {
			return nil, election.Invalid("Cert", "/{Key}: %v", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// slogPrintf adapts a slog.Logger to go-redis's logger, which only prints.
type slogPrintf struct{ log *slog.Logger }

func (l slogPrintf) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

// RouteClientLogs sends go-redis's own messages (dial failures and the
// like, which the backend already reports) to log at debug level. go-redis
// has one process-wide logger, so only a program's main should call this.
func RouteClientLogs(log *slog.Logger) { redis.SetLogger(slogPrintf{log}) }
