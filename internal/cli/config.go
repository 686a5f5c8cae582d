package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"

	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/etcd"
	"github.com/leader-elector/leader-elector/pkg/election/lease"
	redislock "github.com/leader-elector/leader-elector/pkg/election/redis"
	"github.com/leader-elector/leader-elector/pkg/kube"
)

// EnvPrefix prefixes the environment variable of every flag:
// --etcd-endpoints is also LEADER_ELECTOR_ETCD_ENDPOINTS.
const EnvPrefix = "LEADER_ELECTOR_"

// Defaults, written once.
const (
	defaultHTTP    = ":4040"
	defaultBackend = "etcd"
)

// minRedisTTL leaves room for renewals every TTL/3 inside the validity
// window after drift and the scheduling margin.
const minRedisTTL = time.Second

// config is the sidecar's parsed command line.
type config struct {
	Backend           string
	Election          string
	ElectionNamespace string
	ID                string
	TTL               time.Duration
	HTTP              string
	LogFormat         string
	LogLevel          slog.Level
	HistoryFile       string
	// LeaseName and LeaseNamespace locate the Lease of --backend kubernetes.
	LeaseName      string
	LeaseNamespace string

	Etcd  etcd.Options
	Redis redislock.Options
	Kube  kube.Options

	// kubeREST is the loaded Kubernetes client configuration; nil while
	// Kubernetes publishing is off and the backend is not kubernetes.
	kubeREST *rest.Config
}

// envFunc reads an environment variable.
type envFunc func(string) string

// electionName is a valid Kubernetes label value, so the name can also label pods.
var electionName = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

// newFlagSet registers every flag on a fresh set bound to cfg.
func newFlagSet(cfg *config, logLevel *string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Backend, "backend", defaultBackend, "election backend: etcd, redis or kubernetes (see the README for what each guarantees)")
	fs.StringVar(&cfg.Election, "election", "", "name of the election (required)")
	fs.StringVar(&cfg.ElectionNamespace, "election-namespace", "", "accepted for compatibility with the contrib image: the default of --pod-namespace")
	fs.StringVar(&cfg.ID, "id", "", "this candidate's identity (default: $POD_NAME, else the hostname)")
	fs.DurationVar(&cfg.TTL, "ttl", election.DefaultTTL, "lease time-to-live; a crashed leader is replaced after about this long")
	fs.StringVar(&cfg.HTTP, "http", defaultHTTP, "address of the local HTTP API; empty disables it")
	fs.StringVar(&cfg.LogFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&cfg.HistoryFile, "history-file", "", "append every status change to this file as JSON lines stamped with CLOCK_MONOTONIC (audits, safety checks)")
	fs.StringVar(&cfg.LeaseName, "lease-name", "", "--backend kubernetes: name of the coordination.k8s.io Lease (default: the election name)")
	fs.StringVar(&cfg.LeaseNamespace, "lease-namespace", "", "--backend kubernetes: namespace of the Lease (default: --election-namespace, else $POD_NAMESPACE, else the pod's service-account namespace)")
	cfg.Etcd.AddFlags(fs)
	cfg.Redis = redislock.DefaultOptions()
	cfg.Redis.AddFlags(fs)
	cfg.Kube = kube.DefaultOptions()
	cfg.Kube.AddFlags(fs)
	return fs
}

// parseConfig reads flags, then the environment for flags not given, then
// derived defaults, and validates the result without contacting anything.
func parseConfig(args []string, getenv envFunc) (*config, error) {
	cfg := &config{}
	var logLevel string
	fs := newFlagSet(cfg, &logLevel)
	if err := fs.Parse(contribArgs(args)); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, getenv); err != nil {
		return nil, err
	}
	if err := cfg.Etcd.Complete(getenv(EnvPrefix + "ETCD_PASSWORD")); err != nil {
		return nil, err
	}
	if cfg.Redis.PasswordFile == "" {
		cfg.Redis.Password = getenv(EnvPrefix + "REDIS_PASSWORD")
	}
	// The contrib image's --election-namespace names where the election's
	// pods live: our pod namespace unless that is given.
	if cfg.Kube.PodNamespace == "" {
		cfg.Kube.PodNamespace = cfg.ElectionNamespace
	}
	cfg.Kube.FromEnvironment(getenv, os.ReadFile)
	if cfg.Backend == lease.BackendName {
		cfg.leaseDefaults(getenv, os.ReadFile)
	}
	if cfg.ID == "" {
		cfg.ID = cfg.Kube.PodName
	}
	if cfg.ID == "" {
		cfg.ID = getenv("POD_NAME")
	}
	if cfg.ID == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("--id not given and the hostname is unknown: %w", err)
		}
		cfg.ID = host
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Kube.Enabled() || cfg.Backend == lease.BackendName {
		// Reads the kubeconfig or the pod's service-account files; contacts nothing.
		rc, err := cfg.Kube.RESTConfig()
		if err != nil {
			if cfg.Backend == lease.BackendName {
				return nil, fmt.Errorf("%w (--backend kubernetes needs the in-cluster configuration or --kubeconfig)", err)
			}
			return nil, fmt.Errorf("%w (Kubernetes publishing is on because --pod-name or POD_NAME is set)", err)
		}
		cfg.kubeREST = rc
	}
	return cfg, nil
}

// leaseDefaults fills the Lease's name and namespace for --backend
// kubernetes: the election name, and the first namespace found in
// --election-namespace, POD_NAMESPACE (the downward API), --pod-namespace
// and the mounted service-account namespace file.
func (c *config) leaseDefaults(getenv envFunc, readFile func(string) ([]byte, error)) {
	if c.LeaseName == "" {
		c.LeaseName = c.Election
	}
	for _, ns := range []func() string{
		func() string { return c.ElectionNamespace },
		func() string { return getenv("POD_NAMESPACE") },
		func() string { return c.Kube.PodNamespace },
		func() string {
			b, err := readFile(kube.NamespaceFile)
			if err != nil {
				return ""
			}
			return strings.TrimSpace(string(b))
		},
	} {
		if c.LeaseNamespace != "" {
			return
		}
		c.LeaseNamespace = ns()
	}
}

// validate checks everything a flag can get wrong. Each error names its flag.
func (c *config) validate() error {
	switch {
	case c.Election == "":
		return errors.New("--election is required")
	case !electionName.MatchString(c.Election):
		return fmt.Errorf("--election %q: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", c.Election)
	case strings.TrimSpace(c.ID) == "" || len(c.ID) > 253:
		return fmt.Errorf("--id %q must be 1 to 253 characters", c.ID)
	case c.TTL <= 0:
		return fmt.Errorf("--ttl must be positive, got %v", c.TTL)
	case c.LogFormat != "json" && c.LogFormat != "text":
		return fmt.Errorf("--log-format %q: want json or text", c.LogFormat)
	}
	if c.HTTP != "" {
		if _, _, err := net.SplitHostPort(c.HTTP); err != nil {
			return fmt.Errorf("--http %q: want host:port or :port", c.HTTP)
		}
	}
	if err := c.Kube.Validate(); err != nil {
		return err
	}
	switch c.Backend {
	case "etcd":
		if c.TTL < etcd.MinTTL {
			return fmt.Errorf("--ttl %v is below etcd's minimum lease of %v", c.TTL, etcd.MinTTL)
		}
		if c.TTL%time.Second != 0 {
			return fmt.Errorf("--ttl %v: etcd leases are whole seconds", c.TTL)
		}
		return c.Etcd.Validate()
	case "redis":
		if c.TTL < minRedisTTL {
			return fmt.Errorf("--ttl %v is below the Redis backend's minimum of %v", c.TTL, minRedisTTL)
		}
		return c.Redis.Validate()
	case lease.BackendName:
		return c.validateLease()
	default:
		return fmt.Errorf("--backend %q: want etcd, redis or kubernetes", c.Backend)
	}
}

// validateLease checks the flags of --backend kubernetes; the Lease
// package's own check names no flags, so the limits are restated here.
func (c *config) validateLease() error {
	switch {
	case c.TTL < lease.MinDuration || c.TTL > lease.MaxDuration:
		return fmt.Errorf("--ttl %v: the kubernetes backend needs between %v and %v", c.TTL, lease.MinDuration, lease.MaxDuration)
	case c.TTL%time.Second != 0:
		return fmt.Errorf("--ttl %v: a Lease's duration is whole seconds", c.TTL)
	case c.LeaseNamespace == "":
		return errors.New("--lease-namespace is required outside a pod (no --election-namespace, POD_NAMESPACE or service-account namespace file)")
	}
	if errs := validation.IsDNS1123Subdomain(c.LeaseName); len(errs) > 0 {
		from := ""
		if c.LeaseName == c.Election {
			from = " (defaults to --election; set --lease-name)"
		}
		return fmt.Errorf("--lease-name %q is not a valid Kubernetes object name%s: %s", c.LeaseName, from, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(c.LeaseNamespace); len(errs) > 0 {
		return fmt.Errorf("--lease-namespace %q is not a valid namespace: %s", c.LeaseNamespace, strings.Join(errs, "; "))
	}
	return nil
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if set.
func applyEnv(fs *pflag.FlagSet, getenv envFunc) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := getenv(name)
		if v == "" {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%s (for --%s): %w", name, f.Name, serr)
		}
	})
	return err
}

var singleDashLong = regexp.MustCompile(`^-[A-Za-z][-A-Za-z0-9]+(=.*)?$`)

// contribArgs accepts the single-dash long flags (-election=x) of the
// contrib leader-elector image, which used Go's flag package, by turning
// them into double-dash ones. pflag would read them as shorthand clusters.
func contribArgs(args []string) []string {
	out := make([]string, len(args))
	done := false
	for i, a := range args {
		if a == "--" {
			done = true
		}
		if !done && singleDashLong.MatchString(a) {
			a = "-" + a
		}
		out[i] = a
	}
	return out
}

// usage prints the flags.
func usage(w io.Writer) {
	cfg := &config{}
	var lvl string
	fs := newFlagSet(cfg, &lvl)
	fmt.Fprintf(w, "Usage: sidecar [flags]        run the sidecar\n       sidecar demo [flags]   run a local demo on an embedded etcd\n       sidecar version\n\nFlags (each also settable as %s<FLAG>, e.g. %sELECTION):\n", EnvPrefix, EnvPrefix)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nSecrets come from the environment or a file, never a flag: %sETCD_PASSWORD or --etcd-password-file,\n%sREDIS_PASSWORD or --redis-password-file.\n", EnvPrefix, EnvPrefix)
}
