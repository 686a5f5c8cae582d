package cli

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/leader-elector/leader-elector/pkg/httpapi"
)

// apiFlags are the flags of the HTTP API's control listener and limits; the
// pod-network address is --http. See the README's "Security model".
type apiFlags struct {
	ControlSocket           string
	ControlAddr             string
	ControlTokenFile        string
	MaxConnections          int
	MaxConnectionsPerClient int
	MaxWatchers             int
}

func (a *apiFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&a.ControlSocket, "control-socket", "", "Unix socket for POST /resign and the read-only endpoints; put it on a volume shared only by the pod's containers (off when empty)")
	fs.StringVar(&a.ControlAddr, "control-addr", "", "loopback address (e.g. 127.0.0.1:4041) for POST /resign; needs --control-token-file (off when empty)")
	fs.StringVar(&a.ControlTokenFile, "control-token-file", "", "file holding the bearer token that POST /resign must carry on every control listener; re-read on each request")
	fs.IntVar(&a.MaxConnections, "http-max-connections", httpapi.DefaultMaxConnections, "most connections each HTTP listener keeps open")
	fs.IntVar(&a.MaxConnectionsPerClient, "http-max-connections-per-client", httpapi.DefaultMaxConnectionsPerClient, "most connections one source IP may hold on a listener")
	fs.IntVar(&a.MaxWatchers, "http-max-watchers", httpapi.DefaultMaxWatchers, "most concurrent GET /watch streams per listener; more are answered 503")
}

// validate checks the flags without binding anything; it reads the token
// file. Each error names its flag.
func (a *apiFlags) validate() error {
	// Defaults above a smaller --http-max-connections shrink to fit.
	if a.MaxConnectionsPerClient == httpapi.DefaultMaxConnectionsPerClient {
		a.MaxConnectionsPerClient = min(a.MaxConnectionsPerClient, max(a.MaxConnections, 1))
	}
	if a.MaxWatchers == httpapi.DefaultMaxWatchers {
		a.MaxWatchers = min(a.MaxWatchers, max(a.MaxConnections, 1))
	}
	switch {
	case a.MaxConnections < 1:
		return fmt.Errorf("--http-max-connections %d: want at least 1", a.MaxConnections)
	case a.MaxConnectionsPerClient < 1 || a.MaxConnectionsPerClient > a.MaxConnections:
		return fmt.Errorf("--http-max-connections-per-client %d: want 1 to --http-max-connections (%d)", a.MaxConnectionsPerClient, a.MaxConnections)
	case a.MaxWatchers < 1 || a.MaxWatchers > a.MaxConnections:
		return fmt.Errorf("--http-max-watchers %d: want 1 to --http-max-connections (%d)", a.MaxWatchers, a.MaxConnections)
	}
	if a.ControlSocket != "" {
		// sun_path holds 108 bytes with the terminating NUL.
		if len(a.ControlSocket) > 107 {
			return fmt.Errorf("--control-socket %q: a Unix socket path has at most 107 bytes, this one has %d", a.ControlSocket, len(a.ControlSocket))
		}
		dir := filepath.Dir(a.ControlSocket)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("--control-socket %q: the directory %s does not exist (mount the shared volume there)", a.ControlSocket, dir)
		}
	}
	if a.ControlAddr != "" {
		host, _, err := net.SplitHostPort(a.ControlAddr)
		if err != nil {
			return fmt.Errorf("--control-addr %q: want host:port", a.ControlAddr)
		}
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Unmap().IsLoopback() {
			return fmt.Errorf("--control-addr %q: the host must be a loopback IP such as 127.0.0.1 (the control listener must not be reachable from the pod network)", a.ControlAddr)
		}
		if a.ControlTokenFile == "" {
			return fmt.Errorf("--control-addr %q needs --control-token-file: a proxy in the pod (a service mesh) can forward outside traffic to loopback", a.ControlAddr)
		}
	}
	if a.ControlTokenFile != "" {
		if a.ControlSocket == "" && a.ControlAddr == "" {
			return fmt.Errorf("--control-token-file is set but no control listener is: add --control-socket or --control-addr")
		}
		if _, err := httpapi.ReadToken(a.ControlTokenFile); err != nil {
			return fmt.Errorf("--control-token-file: %w", err)
		}
	}
	return nil
}

// controlEnabled reports whether a control listener is configured.
func (a *apiFlags) controlEnabled() bool { return a.ControlSocket != "" || a.ControlAddr != "" }

// apply copies the flags into an httpapi configuration.
func (a *apiFlags) apply(c *httpapi.Config) {
	c.Control = httpapi.Control{Socket: a.ControlSocket, Addr: a.ControlAddr, TokenFile: a.ControlTokenFile}
	c.Limits = httpapi.Limits{
		MaxConnections:          a.MaxConnections,
		MaxConnectionsPerClient: a.MaxConnectionsPerClient,
		MaxWatchers:             a.MaxWatchers,
	}
}
