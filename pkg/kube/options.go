package kube

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Defaults, written once.
const (
	DefaultRoleLabel     = "leader-elector.io/role"
	DefaultLeaderValue   = "leader"
	DefaultFollowerValue = "follower"
	DefaultElectionLabel = "leader-elector.io/election"
	DefaultResync        = 30 * time.Second

	// NamespaceFile is where Kubernetes mounts the pod's namespace.
	NamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
)

// Options configures the publisher. The zero value is not useful; start from
// DefaultOptions.
type Options struct {
	// Kubeconfig is a kubeconfig file; empty means the in-cluster config.
	Kubeconfig string
	// PodName is this pod's name. Empty disables everything in this package.
	PodName string
	// PodNamespace is this pod's namespace; required when PodName is set.
	PodNamespace string
	// RoleLabel is the label key that carries the role. Default
	// leader-elector.io/role.
	RoleLabel string
	// LeaderValue and FollowerValue are the role label's values. Defaults
	// "leader" and "follower".
	LeaderValue   string
	FollowerValue string
	// ElectionLabel is the label key whose value is the election name, so
	// peers of one election can find each other. Default
	// leader-elector.io/election.
	ElectionLabel string
	// ReadinessGate is a pod condition type set True while leading and False
	// otherwise. Empty (the default) turns it off.
	ReadinessGate string
	// Events records BecameLeader and SteppedDown events on the pod. Default
	// true.
	Events bool
	// Resync is how often the pod is checked even when nothing changed.
	// Default 30s.
	Resync time.Duration
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{
		RoleLabel:     DefaultRoleLabel,
		LeaderValue:   DefaultLeaderValue,
		FollowerValue: DefaultFollowerValue,
		ElectionLabel: DefaultElectionLabel,
		Events:        true,
		Resync:        DefaultResync,
	}
}

// FromEnvironment fills PodName and PodNamespace from POD_NAME and
// POD_NAMESPACE when they are empty, and PodNamespace from the mounted
// service-account namespace file when it is still empty. getenv and readFile
// are os.Getenv and os.ReadFile outside tests.
func (o *Options) FromEnvironment(getenv func(string) string, readFile func(string) ([]byte, error)) {
	if o.PodName == "" {
		o.PodName = getenv("POD_NAME")
	}
	if o.PodNamespace == "" {
		o.PodNamespace = getenv("POD_NAMESPACE")
	}
	if o.PodNamespace == "" && o.PodName != "" {
		if b, err := readFile(NamespaceFile); err == nil {
			o.PodNamespace = strings.TrimSpace(string(b))
		}
	}
}

// Enabled reports whether Kubernetes publishing is on: only when a pod name
// is set.
func (o Options) Enabled() bool { return o.PodName != "" }

// Validate returns one *election.ConfigError naming the first bad field.
// Options that are not Enabled are always valid.
func (o Options) Validate() error {
	if !o.Enabled() {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(o.PodName); len(errs) > 0 {
		return invalid("PodName", o.PodName, errs)
	}
	if o.PodNamespace == "" {
		return election.Invalid("PodNamespace", "is required when {PodName} is set (or set POD_NAMESPACE)")
	}
	if errs := validation.IsDNS1123Label(o.PodNamespace); len(errs) > 0 {
		return invalid("PodNamespace", o.PodNamespace, errs)
	}
	if errs := validation.IsQualifiedName(o.RoleLabel); len(errs) > 0 {
		return invalid("RoleLabel", o.RoleLabel, errs)
	}
	if err := labelValue("LeaderValue", o.LeaderValue); err != nil {
		return err
	}
	if err := labelValue("FollowerValue", o.FollowerValue); err != nil {
		return err
	}
	if o.LeaderValue == o.FollowerValue {
		return election.Invalid("LeaderValue", "and {FollowerValue} must differ (both %q)", o.LeaderValue)
	}
	if errs := validation.IsQualifiedName(o.ElectionLabel); len(errs) > 0 {
		return invalid("ElectionLabel", o.ElectionLabel, errs)
	}
	if o.ElectionLabel == o.RoleLabel {
		return election.Invalid("ElectionLabel", "and {RoleLabel} must differ (both %q)", o.RoleLabel)
	}
	if o.ReadinessGate != "" {
		// The API server validates readiness-gate condition types as
		// qualified names.
		if errs := validation.IsQualifiedName(o.ReadinessGate); len(errs) > 0 {
			return invalid("ReadinessGate", o.ReadinessGate, errs)
		}
	}
	if o.Resync < time.Second {
		return election.Invalid("Resync", "must be at least 1s, got %s", o.Resync)
	}
	return nil
}

// ValidateElection checks that an election name can be used as the election
// label's value.
func ValidateElection(name string) error {
	if name == "" {
		return errors.New("kube: the election name is empty")
	}
	if errs := validation.IsValidLabelValue(name); len(errs) > 0 {
		return fmt.Errorf("kube: election name %q is not a valid label value: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// RESTConfig loads the client configuration: the kubeconfig file when one is
// given, the in-cluster configuration otherwise.
func (o Options) RESTConfig() (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if o.Kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		if _, statErr := os.Stat(o.Kubeconfig); statErr != nil {
			return nil, election.Invalid("Kubeconfig", ": %v", statErr)
		}
		cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kube: loading client configuration: %w", err)
	}
	return cfg, nil
}

func labelValue(field, v string) error {
	if v == "" {
		return election.Invalid(field, "must not be empty")
	}
	if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
		return invalid(field, v, errs)
	}
	return nil
}

func invalid(field, v string, errs []string) error {
	return election.Invalid(field, "%q is invalid: %s", v, strings.Join(errs, "; "))
}
