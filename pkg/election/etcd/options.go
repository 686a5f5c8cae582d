package etcd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// Defaults, written once.
const (
	DefaultPrefix      = "/leader-elector/"
	DefaultDialTimeout = 5 * time.Second
)

// Options configures the etcd backend.
type Options struct {
	// Endpoints are the etcd client URLs or host:port pairs; required.
	Endpoints []string
	// Prefix is prepended to the election name; the election's keys live
	// under <Prefix><election>/. Default DefaultPrefix.
	Prefix string
	// DialTimeout bounds connecting and each single request. Default DefaultDialTimeout.
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

// AddFlags registers the backend's flags on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&o.Endpoints, "etcd-endpoints", nil, "etcd endpoints, comma separated (required for --backend etcd)")
	fs.StringVar(&o.Prefix, "etcd-prefix", DefaultPrefix, "key prefix; the election's keys live under <prefix><election>/")
	fs.DurationVar(&o.DialTimeout, "etcd-dial-timeout", DefaultDialTimeout, "timeout for connecting to etcd and for each request")
	fs.StringVar(&o.CACert, "etcd-cacert", "", "PEM file with the CA that signed etcd's server certificate (enables TLS)")
	fs.StringVar(&o.Cert, "etcd-cert", "", "PEM client certificate for etcd (with --etcd-key)")
	fs.StringVar(&o.Key, "etcd-key", "", "PEM private key for --etcd-cert")
	fs.StringVar(&o.Username, "etcd-username", "", "etcd user; the password comes from the environment or --etcd-password-file")
	fs.StringVar(&o.PasswordFile, "etcd-password-file", "", "file holding the etcd password")
}

// Validate checks the options without contacting etcd. Each error names the
// flag at fault.
func (o *Options) Validate() error {
	if len(o.Endpoints) == 0 {
		return errors.New("--etcd-endpoints is required for --backend etcd")
	}
	for _, ep := range o.Endpoints {
		if err := checkEndpoint(ep); err != nil {
			return fmt.Errorf("--etcd-endpoints: %q: %w", ep, err)
		}
	}
	switch {
	case o.Prefix == "":
		return errors.New("--etcd-prefix must not be empty")
	case o.DialTimeout <= 0:
		return fmt.Errorf("--etcd-dial-timeout must be positive, got %v", o.DialTimeout)
	case (o.Cert == "") != (o.Key == ""):
		return errors.New("--etcd-cert and --etcd-key must be given together")
	case o.Username == "" && (o.Password != "" || o.PasswordFile != ""):
		return errors.New("an etcd password was given without --etcd-username")
	case o.Username != "" && o.Password == "" && o.PasswordFile == "":
		return errors.New("--etcd-username needs a password from the environment or --etcd-password-file")
	}
	if o.tlsInfo() != nil {
		if _, err := o.tlsConfig(); err != nil {
			return fmt.Errorf("--etcd-cacert/--etcd-cert/--etcd-key: %w", err)
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
			return fmt.Errorf("--etcd-password-file: %w", err)
		}
		o.Password = strings.TrimRight(string(b), "\r\n")
		return nil
	}
	if o.Password == "" {
		o.Password = envPassword
	}
	return nil
}
