package redislock

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

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
	// Mutually exclusive with PasswordFile.
	Password string
	// PasswordFile is read by New; surrounding whitespace is trimmed.
	PasswordFile string
	// DB is the logical database number. Default 0.
	DB int
	// TLS enables TLS to every address.
	TLS bool
	// CACert, Cert and Key are PEM files: the CA bundle that verifies the
	// servers (default: the system pool) and an optional client certificate.
	CACert, Cert, Key string
	// KeyPrefix is prepended to every key and channel. Default DefaultKeyPrefix.
	KeyPrefix string
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
	seen := make(map[string]bool, len(o.Addrs))
	for _, a := range o.Addrs {
		if err := validateAddr(a); err != nil {
			return election.Invalid("Addrs", "%q: %v", a, err)
		}
		if seen[a] {
			return election.Invalid("Addrs", "%q is given twice", a)
		}
		seen[a] = true
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
	if strings.ContainsAny(o.KeyPrefix, " \t\r\n") {
		return election.Invalid("KeyPrefix", "%q must not contain whitespace", o.KeyPrefix)
	}
	return nil
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
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return nil, election.Invalid("PasswordFile", ": %v", err)
		}
		password = strings.TrimSpace(string(b))
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
		DialerRetries:         1,
		MaxRetries:            -1,
		PoolSize:              4,
		DisableIdentity:       true,
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
			return nil, election.Invalid("CACert", "%s: no PEM certificates found", o.CACert)
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
