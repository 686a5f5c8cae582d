package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agnivade/levenshtein"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"

	"github.com/leader-elector/leader-elector/pkg/apphealth"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/etcd"
	"github.com/leader-elector/leader-elector/pkg/election/redislock"
	"github.com/leader-elector/leader-elector/pkg/kube"
	"github.com/leader-elector/leader-elector/pkg/leaderexec"
)

// EnvPrefix prefixes the environment variable of every flag:
// --etcd-endpoints is also LEADER_ELECTOR_ETCD_ENDPOINTS.
const EnvPrefix = "LEADER_ELECTOR_"

// Defaults, written once.
const (
	defaultHTTP    = ":4040"
	defaultBackend = "etcd"
)

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
	LegacyKeyLayout   bool
	StatusFile        string
	API               apiFlags          // control listener and HTTP limits (httpflags.go)
	Health            apphealth.Options // off while Health.URL is empty
	Incarnation       opsFlags          // restart clean-up and rollouts (incarnation.go)

	// Exec is set by `sidecar exec`: the command to run while leading.
	Exec *execConfig

	Etcd  etcd.Options
	Redis redislock.Options
	Lease leaseFlags
	Kube  kube.Options

	// kubeREST is the loaded Kubernetes client configuration; nil while
	// Kubernetes publishing is off and the backend is not kubernetes.
	kubeREST *rest.Config
}

// envFunc reads an environment variable.
type envFunc func(string) string

// electionName is a valid Kubernetes label value, so the name can also label pods.
var electionName = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

// newFlagSet registers every flag on a fresh set bound to cfg; with
// cfg.Exec set, the flags of `sidecar exec` too.
func newFlagSet(cfg *config, logLevel *string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Backend, "backend", defaultBackend, "election backend: "+backendNames()+" (see the README for what each guarantees)")
	fs.StringVar(&cfg.Election, "election", "", "name of the election (required)")
	fs.StringVar(&cfg.ElectionNamespace, "election-namespace", "", "accepted for compatibility with the contrib image: the default of --pod-namespace")
	fs.StringVar(&cfg.ID, "id", "", "this candidate's identity (default: $POD_NAME, else the hostname)")
	fs.DurationVar(&cfg.TTL, "ttl", election.DefaultTTL, "lease time-to-live; a crashed leader is replaced after about this long")
	fs.StringVar(&cfg.HTTP, "http", defaultHTTP, "address of the local HTTP API; empty disables it")
	fs.StringVar(&cfg.LogFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&cfg.HistoryFile, "history-file", "", "append every status change to this file as JSON lines stamped with CLOCK_MONOTONIC (audits, safety checks)")
	fs.BoolVar(&cfg.LegacyKeyLayout, "legacy-key-layout", false, "etcd and redis: keep the unscoped key layout of v0.1 (<prefix><election>), shared by every namespace; for upgrading (see the README)")
	fs.StringVar(&cfg.StatusFile, "status-file", "", "keep the /status JSON in this file, replaced atomically (write and rename) on every change")
	addHealthFlags(fs, &cfg.Health)
	if cfg.Exec != nil {
		addExecFlags(fs, cfg.Exec)
	}
	cfg.API.addFlags(fs)
	cfg.Incarnation.addFlags(fs)
	reg := backendRegistry()
	for _, name := range sortedKeys(reg) {
		reg[name].addFlags(fs, cfg)
	}
	cfg.Kube = kube.DefaultOptions()
	addKubeFlags(fs, &cfg.Kube)
	return fs
}

// parseConfig reads flags, then the environment for flags not given, then
// derived defaults, and validates the result without contacting anything.
func parseConfig(args []string, getenv envFunc) (*config, error) {
	return parseConfigInto(&config{}, args, getenv)
}

// parseConfigInto is parseConfig for a config prepared by the caller
// (`sidecar exec` sets cfg.Exec first).
func parseConfigInto(cfg *config, args []string, getenv envFunc) (*config, error) {
	var logLevel string
	fs := newFlagSet(cfg, &logLevel)
	if err := fs.Parse(contribArgs(args)); err != nil {
		return nil, err
	}
	if cfg.Exec != nil {
		if err := cfg.Exec.setCommand(fs); err != nil {
			return nil, err
		}
	} else if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := checkEnvNames(fs, getenv); err != nil {
		return nil, err
	}
	if err := applyEnv(fs, getenv); err != nil {
		return nil, err
	}
	spec, ok := backendRegistry()[cfg.Backend]
	if !ok {
		return nil, fmt.Errorf("--backend %q: want %s", cfg.Backend, backendNames())
	}
	if err := checkForeignFlags(fs, cfg.Backend); err != nil {
		return nil, err
	}
	if spec.complete != nil {
		if err := spec.complete(cfg, getenv); err != nil {
			return nil, flagError(err, spec.flags)
		}
	}
	// The contrib image's --election-namespace names where the election's
	// pods live: our pod namespace unless that is given.
	if cfg.Kube.PodNamespace == "" {
		cfg.Kube.PodNamespace = cfg.ElectionNamespace
	}
	cfg.Kube.FromEnvironment(getenv, os.ReadFile)
	cfg.scopeElection()
	cfg.Incarnation.complete(getenv)
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
	if cfg.Kube.Enabled() || spec.needsKubeConfig {
		// Reads the kubeconfig or the pod's service-account files; contacts nothing.
		rc, err := cfg.Kube.RESTConfig()
		if err != nil {
			why := "Kubernetes publishing is on because --pod-name or POD_NAME is set"
			if spec.needsKubeConfig {
				why = "--backend " + cfg.Backend + " needs the in-cluster configuration or --kubeconfig"
			}
			return nil, fmt.Errorf("%s (%s)", flagError(err, kubeFlags), why)
		}
		cfg.kubeREST = rc
	}
	return cfg, nil
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
	case c.Incarnation.Generation < 0:
		return fmt.Errorf("--generation %d must not be negative", c.Incarnation.Generation)
	case c.LogFormat != "json" && c.LogFormat != "text":
		return fmt.Errorf("--log-format %q: want json or text", c.LogFormat)
	}
	if c.HTTP != "" {
		if err := checkListenAddr(c.HTTP); err != nil {
			return fmt.Errorf("--http %q: %v", c.HTTP, err)
		}
	}
	if c.ElectionNamespace != "" {
		if errs := validation.IsDNS1123Label(c.ElectionNamespace); len(errs) > 0 {
			return fmt.Errorf("--election-namespace %q: %s", c.ElectionNamespace, strings.Join(errs, "; "))
		}
	}
	for _, f := range []struct{ flag, path string }{
		{"--history-file", c.HistoryFile}, {"--status-file", c.StatusFile}, {"--incarnation-file", c.Incarnation.File},
	} {
		if err := checkFilePath(f.path); err != nil {
			return fmt.Errorf("%s %q: %v", f.flag, f.path, err)
		}
	}
	if err := c.API.validate(); err != nil {
		return err
	}
	if err := c.validateApp(); err != nil {
		return err
	}
	if err := c.Kube.Validate(); err != nil {
		return flagError(err, kubeFlags)
	}
	spec, ok := backendRegistry()[c.Backend]
	if !ok {
		return fmt.Errorf("--backend %q: want %s", c.Backend, backendNames())
	}
	if err := spec.check(c); err != nil {
		return flagError(err, spec.flags)
	}
	// The engine's timing rules (the validity window must hold two renewals).
	if err := flagError(election.Config{Election: c.Election, Identity: c.ID, TTL: c.TTL}.Validate(), nil); err != nil {
		return err
	}
	if c.Exec != nil {
		// The grace period comes out of the validity window.
		ecfg := election.Config{Election: c.Election, Identity: c.ID, TTL: c.TTL, Margin: c.Exec.margin()}
		if err := ecfg.Validate(); err != nil {
			return fmt.Errorf("--exec-grace %v is taken out of the validity window and leaves too little of it: %v; "+
				"raise --ttl or lower --exec-grace", c.Exec.Grace, flagError(err, nil))
		}
	}
	return nil
}

// defaultNamespace scopes elections whose namespace is unknown, as
// Kubernetes places objects without one.
const defaultNamespace = "default"

// scopeElection scopes the key-value backends' elections by the pod's
// namespace (--pod-namespace, --election-namespace or POD_NAMESPACE), so
// that one election name in two namespaces is two elections, unless
// --legacy-key-layout keeps the unscoped layout.
func (c *config) scopeElection() {
	if c.LegacyKeyLayout {
		return
	}
	ns := c.Kube.PodNamespace
	if ns == "" {
		ns = defaultNamespace
	}
	c.Etcd.Namespace = ns
	c.Redis.Namespace = ns
}

// checkFilePath checks, without creating anything, that a file the sidecar
// will create or append to can be: its directory exists and the path is
// not a directory. Empty means off.
func checkFilePath(path string) error {
	if path == "" {
		return nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("the directory %s does not exist", filepath.Dir(path))
	}
	return nil
}

// checkListenAddr checks an address to listen on without binding it or
// resolving a name: host:port or :port, the host empty, an IP literal or
// localhost, the port 0 (any free port) to 65535.
func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port or :port")
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return errors.New("the host must be empty, an IP address or localhost")
		}
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || (p == 0 && port != "0") {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// params is what the backend is told about this candidate.
func (c *config) params() election.Params {
	return election.Params{Election: c.Election, Identity: c.ID, TTL: c.TTL}
}

// sortedKeys returns the registry's names in order, so flags register
// (and print) in a stable order.
func sortedKeys(m map[string]backendSpec) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// environ lists the process environment as KEY=value strings; a variable
// counts only if getenv also returns it, so tests that pass their own
// getenv see only their own variables.
var environ = os.Environ

// secretEnv are the variables of EnvPrefix that are not flags: secrets,
// which never go on a command line.
var secretEnv = []string{EnvPrefix + "ETCD_PASSWORD", EnvPrefix + "REDIS_PASSWORD"}

// isExecEnv reports whether name is one of the variables `sidecar exec`
// sets for its command (pkg/leaderexec).
func isExecEnv(name string) bool {
	return name == leaderexec.EnvToken || name == leaderexec.EnvIdentity
}

// checkEnvNames refuses a set EnvPrefix variable that names no flag (a
// misspelt LEADER_ELECTOR_ETCD_ENDPOINT would otherwise be ignored, and the
// sidecar would start with a default the operator meant to replace),
// suggesting the closest variable that does.
func checkEnvNames(fs *pflag.FlagSet, getenv envFunc) error {
	known := map[string]bool{}
	for _, n := range secretEnv {
		known[n] = true
	}
	fs.VisitAll(func(f *pflag.Flag) { known[envName(EnvPrefix, f.Name)] = true })
	var unknown []string
	for _, kv := range environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || known[name] || getenv(name) == "" {
			continue
		}
		// The injector's settings, and the variables `sidecar exec` gives
		// its command, may be inherited by a sidecar started from them.
		if strings.HasPrefix(name, InjectorEnvPrefix) || isExecEnv(name) {
			continue
		}
		unknown = append(unknown, name)
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	msg := fmt.Sprintf("environment variable %s is set but is no setting of the sidecar", unknown[0])
	if near := closest(unknown[0], known); near != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", near)
	}
	return errors.New(msg)
}

// closest returns the known name nearest to name by edit distance after
// the common prefix, if it is near enough to be a likely misspelling (at
// most a third of the rest, at least 2 edits); "" otherwise.
func closest(name string, known map[string]bool) string {
	rest := strings.TrimPrefix(name, EnvPrefix)
	best, bestD := "", max(2, len(rest)/3)+1
	for k := range known {
		d := levenshtein.ComputeDistance(rest, strings.TrimPrefix(k, EnvPrefix))
		if d < bestD || (d == bestD && best != "" && k < best) {
			best, bestD = k, d
		}
	}
	return best
}

// checkForeignFlags refuses a flag (or its variable) of a backend other
// than the chosen one: it would be silently ignored, and an operator who
// sets --redis-addr believes the election runs on Redis.
func checkForeignFlags(fs *pflag.FlagSet, backend string) error {
	var err error
	fs.Visit(func(f *pflag.Flag) {
		if err != nil {
			return
		}
		for name, spec := range backendRegistry() {
			if name != backend && spec.flagPrefix != "" && strings.HasPrefix(f.Name, spec.flagPrefix) {
				err = fmt.Errorf("--%s applies to --backend %s only; this sidecar runs --backend %s", f.Name, name, backend)
				return
			}
		}
	})
	return err
}

// envName is the variable of flag name under prefix: upper case, '-' as '_'.
func envName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if set.
func applyEnv(fs *pflag.FlagSet, getenv envFunc) error {
	return applyEnvPrefix(fs, getenv, EnvPrefix)
}

// applyEnvPrefix sets every flag not given from prefix + its name in upper
// case with '-' as '_'.
func applyEnvPrefix(fs *pflag.FlagSet, getenv envFunc, prefix string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := envName(prefix, f.Name)
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
	usageHeader(w)
	fmt.Fprintf(w, "\nFlags (each also settable as %s<FLAG>, e.g. %sELECTION):\n", EnvPrefix, EnvPrefix)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nSecrets come from the environment or a file, never a flag: %sETCD_PASSWORD or --etcd-password-file,\n%sREDIS_PASSWORD or --redis-password-file.\n", EnvPrefix, EnvPrefix)
}
