package etcd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Defaults and limits, written once.
const (
	DefaultPrefix      = "/leader-elector/"
	DefaultDialTimeout = 5 * time.Second
	// MinDialTimeout and MaxDialTimeout bound DialTimeout: below 100 ms a
	// TLS handshake or an authentication on a loaded member fails for no
	// fault of etcd's; above 10 min a member that accepts connections but
	// never answers (a hung process) holds each connection attempt for that
	// long.
	MinDialTimeout = 100 * time.Millisecond
	MaxDialTimeout = 10 * time.Minute
)

// Options configures the etcd backend.
type Options struct {
	// Endpoints are the etcd client URLs or host:port pairs; required.
	Endpoints []string
	// Prefix is prepended to the election name; the election's keys live
	// under <Prefix><election>/. Default DefaultPrefix.
	Prefix string
	// DialTimeout bounds connecting to one member: the TCP, TLS and HTTP/2
	// handshakes and fetching an auth token. Requests are bounded by the
	// TTL instead (TTL/6 each), so that a member that stops answering is
	// passed over within the lease. Default DefaultDialTimeout; between
	// MinDialTimeout and MaxDialTimeout.
	DialTimeout time.Duration
	// CACert, Cert and Key are PEM files for TLS. CACert alone verifies the
	// server; Cert and Key add a client certificate.
	CACert, Cert, Key string
	// Username and Password authenticate with etcd's auth. Password is never a
	// flag: it comes from the environment or PasswordFile.
	Username     string
	Password     string
	PasswordFile string
}

// Validate checks the options without contacting etcd. Errors are
// *election.ConfigError naming the field at fault.
func (o *Options) Validate() error {
	if len(o.Endpoints) == 0 {
		return election.Invalid("Endpoints", "is required")
	}
	seen := make(map[string]string, len(o.Endpoints))
	for _, ep := range o.Endpoints {
		if err := checkEndpoint(ep); err != nil {
			return election.Invalid("Endpoints", "%q: %v", ep, err)
		}
		// One member listed twice would count twice when the backend
		// passes over a member that does not answer.
		key := endpointKey(ep)
		if first, ok := seen[key]; ok {
			if first == ep {
				return election.Invalid("Endpoints", "%q is given twice", ep)
			}
			return election.Invalid("Endpoints", "%q and %q are the same endpoint", first, ep)
		}
		seen[key] = ep
	}
	switch {
	case o.Prefix == "":
		return election.Invalid("Prefix", "must not be empty")
	case o.DialTimeout < MinDialTimeout || o.DialTimeout > MaxDialTimeout:
		return election.Invalid("DialTimeout", "%v is outside [%v, %v]", o.DialTimeout, MinDialTimeout, MaxDialTimeout)
	case (o.Cert == "") != (o.Key == ""):
		return election.Invalid("Cert", "and {Key} must be given together")
	case o.Username == "" && (o.Password != "" || o.PasswordFile != ""):
		return election.Invalid("Password", "was given without {Username}")
	case o.Username != "" && o.Password == "" && o.PasswordFile == "":
		return election.Invalid("Username", "needs a password (from the environment or {PasswordFile})")
	}
	if o.tlsInfo() != nil {
		if _, err := o.tlsConfig(); err != nil {
			return election.Invalid("CACert", ", {Cert} or {Key}: %v", err)
		}
	}
	return nil
}

func checkEndpoint(ep string) error {
	hostport := ep
	if i := strings.Index(ep, "://"); i >= 0 {
		scheme := ep[:i]
		if scheme != "http" && scheme != "https" && scheme != "unix" && scheme != "unixs" {
			return fmt.Errorf("unsupported scheme %q", scheme)
		}
		if strings.HasPrefix(scheme, "unix") {
			return nil
		}
		hostport = strings.TrimSuffix(ep[i+3:], "/")
	}
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return errors.New("want host:port or a URL with a port")
	}
	return nil
}

// endpointKey is what identifies an endpoint: its address, whatever the
// scheme (http and https on one port are one member), with the host in
// lower case and no trailing slash.
func endpointKey(ep string) string {
	network, addr := dialAddr(ep)
	if network == "unix" {
		return "unix:" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(strings.ToLower(host), port)
}

func (o *Options) tlsInfo() *transport.TLSInfo {
	if o.CACert == "" && o.Cert == "" {
		return nil
	}
	return &transport.TLSInfo{TrustedCAFile: o.CACert, CertFile: o.Cert, KeyFile: o.Key}
}

func (o *Options) tlsConfig() (*tls.Config, error) {
	info := o.tlsInfo()
	if info == nil {
		return nil, nil
	}
	return info.ClientConfig()
}

// Complete fills Password from PasswordFile, or else from envPassword (the
// caller's environment variable). Call it before Validate.
func (o *Options) Complete(envPassword string) error {
	if o.PasswordFile != "" {
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return election.Invalid("PasswordFile", ": %v", err)
		}
		o.Password = strings.TrimRight(string(b), "\r\n")
		return nil
	}
	if o.Password == "" {
		o.Password = envPassword
	}
	return nil
}
