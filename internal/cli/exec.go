package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/leaderexec"
)

// runExec is `sidecar exec [flags] -- CMD [ARGS...]`: the sidecar, plus a
// command that runs only while this instance leads.
// `sidecar exec --help` is answered by the command table (commands.go).
func runExec(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseConfigInto(&config{Exec: &execConfig{}}, args, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "sidecar exec: %v\n", err)
		fmt.Fprintln(stderr, "Run 'sidecar exec --help' for the flags.")
		return exitUsage
	}
	return runConfig(ctx, cfg, stdout, stderr)
}

// cmdExit ends the wrapper with the command's exit code (--exec-on-exit exit).
type cmdExit struct{ code int }

func (e cmdExit) Error() string { return fmt.Sprintf("the command exited with code %d", e.code) }

// forwarded are the signals the wrapper passes on to the command. SIGTERM
// and SIGINT stop the wrapper instead, which stops the command (SIGTERM,
// then SIGKILL after --exec-grace) before it releases the election.
var forwarded = []os.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

// superviseCommand forwards signals to the command and acts on its exits:
// it resigns at once (a standby takes over in milliseconds) and, with
// --exec-on-exit exit, reports the exit code on the returned channel.
func superviseCommand(ctx context.Context, x *execConfig, runner *leaderexec.Runner, engine *election.Engine, log *slog.Logger) <-chan error {
	done := make(chan error, 1)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, forwarded...)
	go func() {
		defer signal.Stop(sigs)
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				runner.Signal(s.(syscall.Signal))
			case e := <-runner.Exits():
				rctx, cancel := context.WithTimeout(ctx, election.DefaultResignTimeout+time.Second)
				if err := engine.Resign(rctx); err != nil && err != election.ErrNotLeader {
					log.Warn("resigning after the command exited failed", "err", err)
				}
				cancel()
				if x.OnExit == onExitExit {
					done <- cmdExit{code: e.Code}
					return
				}
				log.Info("the command exited; standing again after the hold-off", "code", e.Code)
			}
		}
	}()
	return done
}

// execHelp is the help of `sidecar exec`, after its "Usage:" line.
func execHelp() string {
	cfg := &config{Exec: &execConfig{}}
	var lvl string
	fs := newFlagSet(cfg, &lvl)
	var b strings.Builder
	fmt.Fprintf(&b, `sidecar exec [flags] -- CMD [ARGS...]

Campaigns like the sidecar and runs CMD only while this instance leads. CMD gets
  %s   the term's fencing token (carry it to every write)
  %s        this instance's identity
  %s        the election's name
  %s         the backend's name
At step-down (resign, deadline, lost, unhealthy, shutdown) CMD's process group gets SIGTERM,
then SIGKILL after --exec-grace; the engine steps down --exec-grace early, so CMD is gone
before the lease can expire, and a handover waits for CMD to exit. If CMD exits on its own,
the wrapper resigns at once and, per --exec-on-exit, exits with CMD's code or stands again.
SIGHUP, SIGUSR1, SIGUSR2 and SIGWINCH are forwarded to CMD.

Flags (each also settable as %s<FLAG>):
`, leaderexec.EnvToken, leaderexec.EnvIdentity, leaderexec.EnvElection, leaderexec.EnvBackend, EnvPrefix)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}
