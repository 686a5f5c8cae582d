package injector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Paths the injector serves.
const (
	// MutatePath is the webhook's path, which the webhook configuration names.
	MutatePath = "/mutate-pods"
	// HealthPath answers 200 once the server serves (over TLS, like the webhook).
	HealthPath = "/healthz"
)

// Options configures Run.
type Options struct {
	// Host and Port are where the webhook listens (HTTPS).
	Host string
	Port int
	// Template is the sidecar to inject.
	Template *Template
	// Native is "auto" (native sidecars when the API server is 1.29 or
	// later), "true" or "false".
	Native string
	// CertDir, when set, holds tls.crt and tls.key (cert-manager's Secret),
	// reloaded when they change; the injector then manages no certificate.
	CertDir string
	// Certs configures self-managed TLS, used when CertDir is empty.
	Certs CertOptions
	// CertCheckInterval is how often self-managed TLS is checked for
	// renewal and the caBundle re-asserted. Default 10 minutes.
	CertCheckInterval time.Duration
	// Client talks to the API server (self-managed TLS, Native "auto").
	Client kubernetes.Interface
	// Ready, when set, is called once the server listens (tests).
	Ready func(*Certs)
}

// Run serves the webhook until ctx ends.
func Run(ctx context.Context, o Options, log *slog.Logger) error {
	native, err := nativeSidecars(o)
	if err != nil {
		return err
	}
	log.Info("injector starting", "native", native, "backends", strings.Join(o.Template.names(), ","), "defaultBackend", o.Template.DefaultBackend)
	srvOpts := webhook.Options{Host: o.Host, Port: o.Port, CertDir: o.CertDir, TLSOpts: []func(*tls.Config){
		func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 },
	}}
	var certs *Certs
	if o.CertDir == "" {
		if certs, err = NewCerts(o.Client, o.Certs, log); err != nil {
			return err
		}
		// The API server must trust a certificate before it is served, so
		// nothing is served until the first reconcile succeeds.
		err := wait.ExponentialBackoffWithContext(ctx, wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Steps: 1 << 30, Cap: 30 * time.Second},
			func(ctx context.Context) (bool, error) {
				if err := certs.Reconcile(ctx); err != nil {
					log.Warn("setting up the webhook certificate failed; retrying", "err", err)
					return false, nil
				}
				return true, nil
			})
		if err != nil {
			return fmt.Errorf("injector: no webhook certificate: %w", err)
		}
		srvOpts.TLSOpts = append(srvOpts.TLSOpts, func(c *tls.Config) { c.GetCertificate = certs.GetCertificate })
		interval := o.CertCheckInterval
		if interval <= 0 {
			interval = 10 * time.Minute
		}
		go certs.Run(ctx, interval)
	}
	srv := webhook.NewServer(srvOpts)
	srv.Register(MutatePath, &webhook.Admission{Handler: NewHandler(o.Template, native, log)})
	srv.Register(HealthPath, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	}))
	if o.Ready != nil {
		go func() {
			// StartedChecker dials the server itself.
			check := srv.StartedChecker()
			_ = wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(context.Context) (bool, error) {
				return check(nil) == nil, nil
			})
			if ctx.Err() == nil {
				o.Ready(certs)
			}
		}()
	}
	if err := srv.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("injector: %w", err)
	}
	return nil
}

// nativeSidecars decides whether to inject native sidecars.
func nativeSidecars(o Options) (bool, error) {
	switch o.Native {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "", "auto":
	default:
		return false, fmt.Errorf("--native-sidecar %q: want auto, true or false", o.Native)
	}
	v, err := o.Client.Discovery().ServerVersion()
	if err != nil {
		return false, fmt.Errorf("injector: asking the API server's version for --native-sidecar auto: %w", err)
	}
	major, err1 := strconv.Atoi(v.Major)
	minor, err2 := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	if err1 != nil || err2 != nil {
		return false, fmt.Errorf("injector: unreadable API server version %q.%q: set --native-sidecar true or false", v.Major, v.Minor)
	}
	// Native sidecars are on by default from 1.29 (beta) and GA in 1.33.
	return major > 1 || (major == 1 && minor >= 29), nil
}
