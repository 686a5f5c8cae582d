package etcd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"k8s.io/apimachinery/pkg/util/validation"

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
	// under <Prefix><Namespace>:<election>/, or <Prefix><election>/ when
	// Namespace is empty. Default DefaultPrefix. With a Namespace it must
	// end with '/' and contain no ':', so that no election's keys can lie
	// under another election's prefix (see ElectionPrefix).
	Prefix string
	// Namespace scopes the election: the same election name in two
	// namespaces is two elections. It must be a Kubernetes namespace name
	// (a DNS-1123 label). Empty keeps the unscoped layout of earlier
	// versions, <Prefix><election>/, which accepts any Prefix and does not
	// protect against nesting.
	Namespace string
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
	// flag: it comes from the environment or PasswordFile. They are refused
	// over a plaintext network connection (see Validate) unless
	// InsecurePlaintextAuth is set.
	Username     string
	Password     string
	PasswordFile string
	// InsecurePlaintextAuth allows Username and Password over an endpoint
	// without TLS that is neither a Unix socket nor a loopback IP: for a
	// network whose own layer encrypts (a service mesh's mutual TLS).
	// Default false.
	InsecurePlaintextAuth bool
}

// Validate checks the options without contacting etcd. Errors are
// *election.ConfigError naming the field at fault.
func (o *Options) Validate() error {
	if len(o.Endpoints) == 0 {
		return election.Invalid("Endpoints", "is required")
	}
	seen := make(map[string]string, len(o.Endpoints))
	for _, ep := range o.Endpoints {
		// Checked first: the other messages quote the endpoint.
		if redacted, ok := redactUserinfo(ep); ok {
			return election.Invalid("Endpoints", "%q: a user or password in an endpoint URL is refused (it would be logged); use {Username} and a password file or the environment", redacted)
		}
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
	if err := o.checkLayout(); err != nil {
		return err
	}
	if err := o.checkTransport(); err != nil {
		return err
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
		if strings.ContainsAny(hostport, "/?#") {
			// clientv3 would drop it silently: the member answers at its root.
			return errors.New("an endpoint URL has no path, query or fragment")
		}
	}
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return errors.New("want host:port or a URL with a port")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
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
// caller's environment variable); both set is an error naming
// PasswordFile. Call it before Validate.
func (o *Options) Complete(envPassword string) error {
	if o.PasswordFile != "" && envPassword != "" {
		// Two sources are a mistake: say so rather than pick one silently.
		return election.Invalid("PasswordFile", "and a password from the environment are both set; give the password one way")
	}
	if o.PasswordFile != "" {
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return election.Invalid("PasswordFile", ": %v", err)
		}
		o.Password = strings.TrimRight(string(b), "\r\n")
		if o.Password == "" {
			// An empty Secret key must not mean "no authentication".
			return election.Invalid("PasswordFile", "file %s is empty", o.PasswordFile)
		}
		return nil
	}
	if o.Password == "" {
		o.Password = envPassword
	}
	return nil
}

// ElectionPrefix is the key prefix of election under o's layout, ending in
// '/' (`etcdctl elect --listen` takes it without that '/', which etcdctl
// adds): <Prefix><Namespace>:<election>/, or <Prefix><election>/ without a
// Namespace. Neither a namespace nor an election name can contain ':' or
// '/', so with a Prefix that ends with '/' and contains no ':' no
// election's prefix lies under another's, scoped or not.
func (o *Options) ElectionPrefix(election string) string {
	if o.Namespace == "" {
		return o.Prefix + election + "/"
	}
	return o.Prefix + o.Namespace + ":" + election + "/"
}

// checkLayout checks Namespace and, with a Namespace, the Prefix rules that
// make nesting impossible.
func (o *Options) checkLayout() error {
	if o.Namespace == "" {
		return nil
	}
	if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return election.Invalid("Namespace", "%q: %s", o.Namespace, strings.Join(errs, "; "))
	}
	switch {
	case !strings.HasSuffix(o.Prefix, "/"):
		return election.Invalid("Prefix", "%q must end with '/' (else %q would also match the keys of longer election names)", o.Prefix, o.Prefix)
	case strings.Contains(o.Prefix, ":"):
		return election.Invalid("Prefix", "%q must not contain ':' (it separates namespace and election; one in the prefix could nest one election's keys inside another's)", o.Prefix)
	}
	return nil
}

// checkTransport refuses TLS options with an endpoint that would ignore
// them, and a password over a connection that would carry it in plaintext.
// clientv3 picks the transport per endpoint: http:// and unix:// are
// plaintext whatever TLS is configured, https:// and unixs:// use TLS, and
// a bare host:port uses TLS only when TLS files are given.
func (o *Options) checkTransport() error {
	tlsFiles := o.CACert != "" || o.Cert != ""
	for _, ep := range o.Endpoints {
		scheme, _, hasScheme := strings.Cut(ep, "://")
		plaintext := scheme == "http" || scheme == "unix" || (!hasScheme && !tlsFiles)
		if tlsFiles && (scheme == "http" || scheme == "unix") {
			return election.Invalid("Endpoints", "%q is plaintext but TLS files were given ({CACert}, {Cert}): use https:// (or unixs://) so they apply", ep)
		}
		if !plaintext || o.Username == "" || o.InsecurePlaintextAuth || localEndpoint(ep) {
			continue
		}
		return election.Invalid("Username", "would send the password in plaintext to %q: give TLS ({CACert}) and an https:// endpoint, or {InsecurePlaintextAuth} if the network encrypts (a service mesh)", ep)
	}
	return nil
}

// localEndpoint reports whether ep's traffic stays on this host: a Unix
// socket or a loopback IP literal (a name could resolve elsewhere).
func localEndpoint(ep string) bool {
	network, addr := dialAddr(ep)
	if network == "unix" {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// redactUserinfo reports whether ep carries a user (and maybe a password)
// before its host, and returns ep with that part replaced by "REDACTED".
func redactUserinfo(ep string) (string, bool) {
	scheme, rest, hasScheme := strings.Cut(ep, "://")
	if !hasScheme {
		scheme, rest = "", ep
	}
	authority, path, _ := strings.Cut(rest, "/")
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return ep, false
	}
	out := "REDACTED@" + authority[at+1:]
	if path != "" || strings.Contains(rest, "/") {
		out += "/" + path
	}
	if hasScheme {
		out = scheme + "://" + out
	}
	return out, true
}
