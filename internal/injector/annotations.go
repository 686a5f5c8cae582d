package injector

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// The label a pod opts in with, and the annotations that describe its
// election. Every annotation but AnnotationElection is optional.
const (
	// LabelInject opts a pod in when its value is "true".
	LabelInject = "leader-elector.io/inject"
	// AnnotationElection names the election (required): the sidecar's
	// --election. Pods of one workload must share it.
	AnnotationElection = "leader-elector.io/election"
	// AnnotationBackend picks one of the backends the injector was
	// installed with (etcd, redis, kubernetes); default: the chart's backend.
	AnnotationBackend = "leader-elector.io/backend"
	// AnnotationTTL is the lease lifetime, a Go duration of whole seconds
	// (--ttl); default: the chart's election.ttl.
	AnnotationTTL = "leader-elector.io/ttl"
	// AnnotationReadiness is the readiness mode: none, label, probe or gate.
	// Only gate changes the pod (a readiness gate and --readiness-gate);
	// probe needs the application's own readiness probe on GET /leader.
	AnnotationReadiness = "leader-elector.io/readiness"
	// AnnotationAppHealthURL is an http(s) URL of the application's health
	// check, passed as --app-health-url.
	AnnotationAppHealthURL = "leader-elector.io/app-health-url"
)

// ContainerName is the name of the injected container; a pod that has a
// container of this name is never changed.
const ContainerName = "leader-elector"

// electionName is the sidecar's rule for --election (internal/cli): a valid
// label value, because the sidecar labels pods with it.
var electionName = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

// leaseName is the kubernetes backend's further rule: the Lease is named
// after the election, and object names are lower-case DNS subdomains.
var leaseName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// request is what a pod's annotations ask for, after defaults.
type request struct {
	Election     string
	Backend      string
	TTL          string // as the flag takes it; empty keeps the template's
	Readiness    string
	AppHealthURL string
}

// AnnotationError is a bad annotation; its message starts with the
// annotation's name so the rejected pod's event names it.
type AnnotationError struct {
	Annotation string
	Value      string
	Reason     string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s %q: %s", e.Annotation, e.Value, e.Reason)
}

// parseRequest reads and checks a pod's annotations against the backends the
// template offers. The first bad annotation is the error (*AnnotationError).
func parseRequest(ann map[string]string, t *Template) (request, error) {
	bad := func(key, reason string) error {
		return &AnnotationError{Annotation: key, Value: ann[key], Reason: reason}
	}
	r := request{
		Election:     ann[AnnotationElection],
		Backend:      ann[AnnotationBackend],
		TTL:          ann[AnnotationTTL],
		Readiness:    ann[AnnotationReadiness],
		AppHealthURL: ann[AnnotationAppHealthURL],
	}
	if _, ok := ann[AnnotationElection]; !ok {
		return r, &AnnotationError{Annotation: AnnotationElection, Reason: "required: the name of the election this pod's workload shares"}
	}
	if !electionName.MatchString(r.Election) {
		return r, bad(AnnotationElection, "use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
	}
	if r.Backend == "" {
		r.Backend = t.DefaultBackend
	}
	sc, ok := t.Backends[r.Backend]
	if !ok {
		return r, bad(AnnotationBackend, "this injector is installed with the backends "+strings.Join(t.names(), ", "))
	}
	if r.Backend == "kubernetes" && !leaseName.MatchString(r.Election) {
		return r, bad(AnnotationElection, "backend kubernetes names the Lease after the election: use lower-case letters, digits, '-' and '.'")
	}
	if r.TTL != "" {
		d, err := time.ParseDuration(r.TTL)
		switch {
		case err != nil:
			return r, bad(AnnotationTTL, "want a duration such as 10s")
		case d <= 0 || d%time.Second != 0:
			return r, bad(AnnotationTTL, "want a positive whole number of seconds")
		}
		// The engine's own timing rules (the validity window must hold two
		// renewals), so the sidecar does not refuse to start later.
		if err := (election.Config{Election: r.Election, Identity: "pod", TTL: d}).Validate(); err != nil {
			return r, bad(AnnotationTTL, err.Error())
		}
		if r.Backend != "redis" && d < 2*time.Second {
			return r, bad(AnnotationTTL, "the "+r.Backend+" backend needs at least 2s")
		}
	}
	switch r.Readiness {
	case "":
		r.Readiness = "none"
	case "none", "probe":
	case "label", "gate":
		if !sc.Kube {
			return r, bad(AnnotationReadiness, "needs Kubernetes publishing, which this injector's chart turned off (kube.enabled false)")
		}
	default:
		return r, bad(AnnotationReadiness, "want none, label, probe or gate")
	}
	if r.AppHealthURL != "" {
		u, err := url.Parse(r.AppHealthURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return r, bad(AnnotationAppHealthURL, "want an absolute http or https URL such as http://127.0.0.1:8080/healthz")
		}
	}
	return r, nil
}
