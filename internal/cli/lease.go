package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/lease"
	"github.com/leader-elector/leader-elector/pkg/kube"
)

// leaseFlags are the flags of --backend kubernetes. --kubeconfig is shared
// with the pod publisher (kube.Options).
type leaseFlags struct {
	Name      string
	Namespace string
}

// leaseSpec is the registry entry of the Kubernetes Lease backend.
func leaseSpec() backendSpec {
	return backendSpec{
		flagPrefix: "lease-",
		addFlags:   func(fs *pflag.FlagSet, cfg *config) { addLeaseFlags(fs, &cfg.Lease) },
		complete: func(cfg *config, getenv envFunc) error {
			cfg.leaseDefaults(getenv, os.ReadFile)
			return nil
		},
		check: func(cfg *config) error {
			if err := lease.ValidateTTL(cfg.TTL); err != nil {
				return err
			}
			if cfg.Lease.Namespace == "" {
				return fmt.Errorf("--lease-namespace is required outside a pod (no --election-namespace, POD_NAMESPACE or %s)", kube.NamespaceFile)
			}
			if err := cfg.leaseOptions(nil).Validate(); err != nil {
				if cfg.Lease.Name == cfg.Election {
					// The name was not chosen: say where it came from.
					return fmt.Errorf("%s (it defaults to --election; set --lease-name)", flagError(err, leaseFlagNames))
				}
				return flagError(err, leaseFlagNames)
			}
			// Reads the kubeconfig or the pod's service-account files; contacts nothing.
			rc, err := cfg.Kube.RESTConfig()
			if err != nil {
				return fmt.Errorf("%s (--backend kubernetes needs the in-cluster configuration or --kubeconfig)", flagError(err, kubeFlags))
			}
			cfg.kubeREST = rc
			return nil
		},
		build: func(cfg *config, p election.Params, log *slog.Logger) (election.Backend, error) {
			// client-go logs through klog; send it to the same handler.
			klog.SetSlogLogger(log.With("component", "client-go"))
			rc := rest.CopyConfig(cfg.kubeREST)
			// The Lease gets its own client: client-go's default limiter (5/s,
			// burst 10), shared with the publisher's start-up requests, would
			// delay a takeover. Renewals are a few requests per TTL.
			rc.QPS, rc.Burst = 50, 100
			// HTTP/1.1: a request that times out takes its connection with it,
			// so after a partition the next renewal dials afresh. Over HTTP/2
			// every request shares one connection, which client-go's health
			// check drops only after 30 s without a frame plus a 15 s ping.
			rc.NextProtos = []string{"http/1.1"}
			rc.UserAgent = "leader-elector/" + version() + " lease"
			client, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return nil, fmt.Errorf("--backend kubernetes: %w", err)
			}
			return lease.NewBackend(cfg.leaseOptions(client), p, log)
		},
		flags: leaseFlagNames,
	}
}

// leaseFlagNames names the flag of each field a lease.Options error may name.
var leaseFlagNames = map[string]string{"Name": "--lease-name", "Namespace": "--lease-namespace", "Client": "--kubeconfig"}

// addLeaseFlags registers the Lease backend's flags.
func addLeaseFlags(fs *pflag.FlagSet, o *leaseFlags) {
	fs.StringVar(&o.Name, "lease-name", "", "--backend kubernetes: name of the coordination.k8s.io Lease (default: the election name)")
	fs.StringVar(&o.Namespace, "lease-namespace", "", "--backend kubernetes: namespace of the Lease (default: --election-namespace, else $POD_NAMESPACE, else the pod's service-account namespace)")
}

// leaseOptions returns the backend's options; client may be nil for
// validation only.
func (c *config) leaseOptions(client kubernetes.Interface) lease.Options {
	o := lease.Options{Namespace: c.Lease.Namespace, Name: c.Lease.Name}
	if client != nil {
		o.Client = client.CoordinationV1()
	}
	return o
}

// leaseDefaults fills the Lease's name and namespace: the election name,
// and the first namespace found in --election-namespace, POD_NAMESPACE (the
// downward API), --pod-namespace and the mounted service-account namespace
// file.
func (c *config) leaseDefaults(getenv envFunc, readFile func(string) ([]byte, error)) {
	if c.Lease.Name == "" {
		c.Lease.Name = c.Election
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
		if c.Lease.Namespace != "" {
			return
		}
		c.Lease.Namespace = ns()
	}
}
