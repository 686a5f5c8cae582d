package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/leader-elector/leader-elector/internal/injector"
)

// InjectorEnvPrefix prefixes the environment variable of every injector
// flag: --sidecar-template is also LEADER_ELECTOR_INJECTOR_SIDECAR_TEMPLATE.
const InjectorEnvPrefix = "LEADER_ELECTOR_INJECTOR_"

// injectorConfig is `sidecar injector`'s parsed command line.
type injectorConfig struct {
	Listen            string
	Template          string
	Native            string
	CertDir           string
	CertSecret        string
	WebhookConfig     string
	Service           string
	CertHosts         []string
	Namespace         string
	CertValidity      time.Duration
	CertCheckInterval time.Duration
	Kubeconfig        string
	LogFormat         string
	LogLevel          string
}

func newInjectorFlagSet(c *injectorConfig) *pflag.FlagSet {
	fs := pflag.NewFlagSet("sidecar injector", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Listen, "listen", ":9443", "host:port the webhook serves HTTPS on ("+injector.MutatePath+", and "+injector.HealthPath+" for probes)")
	fs.StringVar(&c.Template, "sidecar-template", "", "file with the sidecar the chart renders for each backend (required; the chart mounts it)")
	fs.StringVar(&c.Native, "native-sidecar", "auto", "inject a native sidecar (an init container with restartPolicy Always): auto (when the API server is 1.29 or later), true or false")
	fs.StringVar(&c.CertDir, "cert-dir", "", "directory with tls.crt and tls.key (e.g. from cert-manager), reloaded on change; empty means the injector makes and rotates its own")
	fs.StringVar(&c.CertSecret, "cert-secret", "", "Secret (in --namespace) holding the self-managed CA and serving certificate that all replicas share")
	fs.StringVar(&c.WebhookConfig, "webhook-config", "", "MutatingWebhookConfiguration whose caBundle the injector keeps current (self-managed TLS)")
	fs.StringVar(&c.Service, "service", "", "Service in front of the injector: its DNS names go into the serving certificate")
	fs.StringSliceVar(&c.CertHosts, "cert-host", nil, "extra DNS name or IP address for the serving certificate (repeatable)")
	fs.StringVar(&c.Namespace, "namespace", "", "namespace of the injector and its Secret (default: $POD_NAMESPACE)")
	fs.DurationVar(&c.CertValidity, "cert-validity", 90*24*time.Hour, "lifetime of a self-managed CA and certificate; renewed when a third is left")
	fs.DurationVar(&c.CertCheckInterval, "cert-check-interval", 10*time.Minute, "how often the certificate and the caBundle are checked")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty means the in-cluster configuration")
	fs.StringVar(&c.LogFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	return fs
}

// injectorUsage is `sidecar injector --help` after its "Usage:" line.
func injectorUsage() string {
	var b strings.Builder
	b.WriteString("Serves the mutating admission webhook that adds the sidecar to pods labelled\n")
	b.WriteString(injector.LabelInject + ": \"true\" (see docs/install.md). The chart's injector.enabled runs it.\n\n")
	fmt.Fprintf(&b, "Flags (each also settable as %s<FLAG>):\n", InjectorEnvPrefix)
	fs := newInjectorFlagSet(&injectorConfig{})
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// injectorOptions parses and checks the injector's command line without
// contacting anything; every error names its flag.
func injectorOptions(args []string, getenv envFunc) (*injectorConfig, injector.Options, error) {
	c := &injectorConfig{}
	fs := newInjectorFlagSet(c)
	var o injector.Options
	if err := fs.Parse(args); err != nil {
		return nil, o, err
	}
	if fs.NArg() > 0 {
		return nil, o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnvPrefix(fs, getenv, InjectorEnvPrefix); err != nil {
		return nil, o, err
	}
	if c.Namespace == "" {
		c.Namespace = getenv("POD_NAMESPACE")
	}
	host, port, err := net.SplitHostPort(c.Listen)
	p, perr := strconv.Atoi(port)
	if err != nil || perr != nil || p <= 0 || p > 65535 {
		return nil, o, fmt.Errorf("--listen %q: want host:port or :port", c.Listen)
	}
	if c.Template == "" {
		return nil, o, errors.New("--sidecar-template is required")
	}
	tmpl, err := injector.LoadTemplate(c.Template)
	if err != nil {
		return nil, o, fmt.Errorf("--sidecar-template %s: %w", c.Template, err)
	}
	switch c.Native {
	case "auto", "true", "false":
	default:
		return nil, o, fmt.Errorf("--native-sidecar %q: want auto, true or false", c.Native)
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		return nil, o, fmt.Errorf("--log-format %q: want json or text", c.LogFormat)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, o, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	hosts := append([]string(nil), c.CertHosts...)
	if c.CertDir == "" {
		switch {
		case c.CertSecret == "":
			return nil, o, errors.New("--cert-secret is required unless --cert-dir is given")
		case c.WebhookConfig == "":
			return nil, o, errors.New("--webhook-config is required unless --cert-dir is given")
		case c.Namespace == "":
			return nil, o, errors.New("--namespace is required (or POD_NAMESPACE) unless --cert-dir is given")
		case c.Service == "" && len(hosts) == 0:
			return nil, o, errors.New("--service or --cert-host is required unless --cert-dir is given")
		case c.CertValidity < time.Hour:
			return nil, o, fmt.Errorf("--cert-validity %v: want at least 1h", c.CertValidity)
		case c.CertCheckInterval <= 0 || c.CertCheckInterval > c.CertValidity/6:
			return nil, o, fmt.Errorf("--cert-check-interval %v: want more than 0 and at most a sixth of --cert-validity", c.CertCheckInterval)
		}
		if s := c.Service; s != "" {
			hosts = append([]string{s + "." + c.Namespace + ".svc", s + "." + c.Namespace + ".svc.cluster.local", s + "." + c.Namespace, s}, hosts...)
		}
	}
	o = injector.Options{
		Host: host, Port: p, Template: tmpl, Native: c.Native, CertDir: c.CertDir,
		Certs: injector.CertOptions{
			Namespace: c.Namespace, Secret: c.CertSecret, WebhookConfig: c.WebhookConfig,
			Hosts: hosts, Validity: c.CertValidity,
		},
		CertCheckInterval: c.CertCheckInterval,
	}
	return c, o, nil
}

// runInjector is `sidecar injector`.
func runInjector(ctx context.Context, args []string, getenv func(string) string, _, stderr io.Writer) int {
	c, o, err := injectorOptions(args, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "sidecar injector: %v\n", err)
		fmt.Fprintln(stderr, "Run 'sidecar injector --help' for the flags.")
		return exitUsage
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel)) // checked above
	log := newLogger(&config{LogFormat: c.LogFormat, LogLevel: lvl}, stderr)
	// controller-runtime's webhook server and client-go log through logr
	// and klog; both go to the same handler.
	ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
	klog.SetSlogLogger(log)
	// Reads the kubeconfig or the service-account files; contacts nothing.
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "sidecar injector: --kubeconfig: %v\n", err)
		return exitUsage
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		fmt.Fprintf(stderr, "sidecar injector: --kubeconfig: %v\n", err)
		return exitUsage
	}
	o.Client = client
	if err := injector.Run(ctx, o, log.With("component", "injector")); err != nil {
		log.Error("injector failed", "err", err)
		return exitError
	}
	return exitOK
}
