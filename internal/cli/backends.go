package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/etcd"
	"github.com/leader-elector/leader-elector/pkg/election/lease"
	"github.com/leader-elector/leader-elector/pkg/election/redislock"
)

// backendSpec is one entry of the backend registry: the backend's flags,
// how its secrets are read, how its settings are checked without contacting
// anything, and how it is built. Adding a backend means adding its package
// under pkg/election/ and one entry to backendRegistry.
type backendSpec struct {
	// flagPrefix begins the name of every flag of this backend and of no
	// other (checkForeignFlags refuses them with another backend).
	flagPrefix string
	// addFlags registers the backend's flags on fs, bound to cfg.
	addFlags func(fs *pflag.FlagSet, cfg *config)
	// complete reads secrets from files or the environment; may be nil.
	complete func(cfg *config, getenv envFunc) error
	// check validates the backend's settings and the TTL against its limits.
	check func(cfg *config) error
	// build returns the backend for p. It contacts nothing.
	build func(cfg *config, p election.Params, log *slog.Logger) (election.Backend, error)
	// flags names the flag (or variable) for each field a *election.ConfigError
	// of the backend may name.
	flags map[string]string
	// keys describes where the election lives in the backend, for the
	// start-up log (operators find it there for etcdctl or redis-cli); may
	// be nil.
	keys func(cfg *config) string
	// needsKubeConfig makes parseConfig load the Kubernetes client
	// configuration (config.kubeREST) for build, as Kubernetes publishing
	// does: for a backend that stores its election in the API server.
	needsKubeConfig bool
}

// backendRegistry maps --backend values to backends.
func backendRegistry() map[string]backendSpec {
	return map[string]backendSpec{
		"etcd": {
			flagPrefix: "etcd-",
			addFlags:   func(fs *pflag.FlagSet, cfg *config) { addEtcdFlags(fs, &cfg.Etcd) },
			complete: func(cfg *config, getenv envFunc) error {
				return cfg.Etcd.Complete(getenv(EnvPrefix + "ETCD_PASSWORD"))
			},
			check: func(cfg *config) error {
				if err := etcd.ValidateTTL(cfg.TTL); err != nil {
					return err
				}
				return cfg.Etcd.Validate()
			},
			build: func(cfg *config, p election.Params, log *slog.Logger) (election.Backend, error) {
				return etcd.New(cfg.Etcd, p, log)
			},
			keys: func(cfg *config) string { return cfg.Etcd.ElectionPrefix(cfg.Election) },
			flags: map[string]string{
				"Endpoints": "--etcd-endpoints", "Prefix": "--etcd-prefix", "DialTimeout": "--etcd-dial-timeout",
				"CACert": "--etcd-cacert", "Cert": "--etcd-cert", "Key": "--etcd-key",
				"Username": "--etcd-username", "PasswordFile": "--etcd-password-file",
				"Password": EnvPrefix + "ETCD_PASSWORD", "InsecurePlaintextAuth": "--etcd-insecure-plaintext-auth",
				"Namespace": "--pod-namespace",
			},
		},
		lease.BackendName: leaseSpec(),
		"redis": {
			flagPrefix: "redis-",
			addFlags: func(fs *pflag.FlagSet, cfg *config) {
				cfg.Redis = redislock.DefaultOptions()
				addRedisFlags(fs, &cfg.Redis)
			},
			complete: func(cfg *config, getenv envFunc) error {
				env := getenv(EnvPrefix + "REDIS_PASSWORD")
				if cfg.Redis.PasswordFile != "" && env != "" {
					// Two sources are a mistake: say so rather than pick one silently.
					return fmt.Errorf("--redis-password-file and %sREDIS_PASSWORD are both set; give the password one way", EnvPrefix)
				}
				if cfg.Redis.PasswordFile == "" {
					cfg.Redis.Password = env
				}
				return nil
			},
			check: func(cfg *config) error {
				if err := redislock.ValidateTTL(cfg.TTL); err != nil {
					return err
				}
				return cfg.Redis.Validate()
			},
			build: func(cfg *config, p election.Params, log *slog.Logger) (election.Backend, error) {
				redislock.RouteClientLogs(log)
				return redislock.New(cfg.Redis, p, log)
			},
			keys: func(cfg *config) string { return cfg.Redis.ElectionKey(cfg.Election) },
			flags: map[string]string{
				"Addrs": "--redis-addr", "Username": "--redis-username", "PasswordFile": "--redis-password-file",
				"Password": EnvPrefix + "REDIS_PASSWORD", "DB": "--redis-db", "TLS": "--redis-tls",
				"CACert": "--redis-cacert", "Cert": "--redis-cert", "Key": "--redis-key", "KeyPrefix": "--redis-key-prefix",
				"InsecurePlaintextAuth": "--redis-insecure-plaintext-auth", "Namespace": "--pod-namespace",
				"AssumeNoEviction": "--redis-assume-noeviction",
			},
		},
	}
}

// backendNames lists the registered backends, sorted, for messages.
func backendNames() string {
	var names []string
	for n := range backendRegistry() {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, " or ")
}

// commonFlags names the flags of the fields every backend and the engine
// share (election.Params).
var commonFlags = map[string]string{"Election": "--election", "Identity": "--id", "TTL": "--ttl"}

// flagError rewrites a *election.ConfigError so that it names flags instead
// of Go fields; other errors pass unchanged.
func flagError(err error, flags map[string]string) error {
	var ce *election.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	return errors.New(ce.Format(func(field string) string {
		if f, ok := flags[field]; ok {
			return f
		}
		if f, ok := commonFlags[field]; ok {
			return f
		}
		return field
	}))
}
