package cli

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/leader-elector/leader-elector/pkg/apphealth"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/leaderexec"
)

// The flags of application-aware leadership: the health gate, the status
// file (in config.go) and `sidecar exec`.

// addHealthFlags registers the health gate's flags.
func addHealthFlags(fs *pflag.FlagSet, o *apphealth.Options) {
	fs.StringVar(&o.URL, "app-health-url", "", "the application's health endpoint (GET, 2xx is healthy); while it fails this instance does not stand for election")
	fs.DurationVar(&o.Interval, "app-health-interval", apphealth.DefaultInterval, "time between two health checks")
	fs.DurationVar(&o.Timeout, "app-health-timeout", apphealth.DefaultTimeout, "timeout of one health check (at most the interval)")
	fs.IntVar(&o.Failures, "app-health-failures", apphealth.DefaultFailures, "consecutive failed checks that make the application unhealthy (a leader then resigns)")
	fs.IntVar(&o.Successes, "app-health-successes", apphealth.DefaultSuccesses, "consecutive good checks that make it healthy (it then stands again)")
}

// healthFlags names the flag of each field an apphealth error may name.
var healthFlags = map[string]string{
	"URL": "--app-health-url", "Interval": "--app-health-interval", "Timeout": "--app-health-timeout",
	"Failures": "--app-health-failures", "Successes": "--app-health-successes",
}

// Policies for a command that exits on its own (--exec-on-exit).
const (
	onExitExit     = "exit"
	onExitCampaign = "campaign"
)

// execConfig is what `sidecar exec` adds to the sidecar's config.
type execConfig struct {
	Argv   []string
	Grace  time.Duration
	OnExit string
}

// addExecFlags registers the flags of `sidecar exec`.
func addExecFlags(fs *pflag.FlagSet, x *execConfig) {
	fs.DurationVar(&x.Grace, "exec-grace", leaderexec.DefaultGrace,
		"time the command has between SIGTERM and SIGKILL at step-down; the engine steps down this much earlier")
	fs.StringVar(&x.OnExit, "exec-on-exit", onExitExit,
		"when the command exits on its own: exit (resign, exit with its code) or campaign (resign, stand again after one TTL)")
}

// setCommand takes the command after "--".
func (x *execConfig) setCommand(fs *pflag.FlagSet) error {
	at := fs.ArgsLenAtDash()
	switch {
	case fs.NArg() == 0:
		return fmt.Errorf("no command: use sidecar exec [flags] -- CMD [ARGS...]")
	case at != 0:
		return fmt.Errorf("unexpected argument %q before --: use sidecar exec [flags] -- CMD [ARGS...]", fs.Arg(0))
	}
	x.Argv = fs.Args()
	return nil
}

// margin is the engine's margin with the grace period taken out of the
// validity window.
func (x *execConfig) margin() time.Duration { return election.DefaultMargin + x.Grace }

// validateApp checks the health gate's, status file's and exec's flags.
func (c *config) validateApp() error {
	h := c.Health
	if h.URL != "" {
		switch {
		case h.Interval <= 0:
			return fmt.Errorf("--app-health-interval must be positive, got %v", h.Interval)
		case h.Timeout <= 0:
			return fmt.Errorf("--app-health-timeout must be positive, got %v", h.Timeout)
		case h.Failures < 1:
			return fmt.Errorf("--app-health-failures must be at least 1, got %d", h.Failures)
		case h.Successes < 1:
			return fmt.Errorf("--app-health-successes must be at least 1, got %d", h.Successes)
		}
		if h.Timeout > h.Interval && h.Timeout == apphealth.DefaultTimeout {
			// The default timeout follows a shorter interval.
			c.Health.Timeout = h.Interval
		}
		if err := c.Health.Validate(); err != nil {
			return flagError(err, healthFlags)
		}
	}
	if x := c.Exec; x != nil {
		switch {
		case x.Grace <= 0:
			return fmt.Errorf("--exec-grace must be positive, got %v", x.Grace)
		case x.OnExit != onExitExit && x.OnExit != onExitCampaign:
			return fmt.Errorf("--exec-on-exit %q: want %s or %s", x.OnExit, onExitExit, onExitCampaign)
		}
	}
	return nil
}
