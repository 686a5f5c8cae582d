// Package leaderexec runs a command exactly while this instance leads: the
// heart of `sidecar exec -- CMD`. It starts the command when a term begins,
// with the term's fencing token and the identity in its environment, and
// stops it when the term ends: SIGTERM to the command's process group, then
// SIGKILL after a grace period.
//
// The guarantee, with the engine's help: the wrapper gives the engine a
// margin that includes the grace period (election.Config.Margin), so a
// leader steps down at least Grace before its lease could expire and the
// command is gone (SIGKILLed at the latest) before another instance can
// win; and Runner.BeforeRelease (election.Config.BeforeRelease) holds the
// release of the lease or lock until the command has exited, so a handover
// (resign, health gate, shutdown) never starts the successor's command
// while ours still runs.
//
// What it does not guarantee: a process that survives SIGKILL (stuck in
// the kernel), a descendant that left the process group (setsid, a
// daemon), and a wrapper frozen past its deadline (SIGSTOP, a frozen VM)
// escape it; the fencing token protects the data then. If the wrapper is
// killed with SIGKILL the command gets SIGKILL from the kernel
// (PR_SET_PDEATHSIG, Linux), its descendants do not.
package leaderexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// DefaultGrace is the default time between SIGTERM and SIGKILL.
const DefaultGrace = 2 * time.Second

// The environment variables the command receives (besides the wrapper's
// own environment).
const (
	// EnvToken is the term's fencing token, in decimal. Carry it to every
	// write; reject writes with a lower token than the highest seen.
	EnvToken = "LEADER_ELECTOR_FENCING_TOKEN"
	// EnvIdentity is this instance's identity (--id).
	EnvIdentity = "LEADER_ELECTOR_IDENTITY"
	// EnvElection is the election's name.
	EnvElection = "LEADER_ELECTOR_ELECTION"
	// EnvBackend is the backend's name (etcd, redis, ...).
	EnvBackend = "LEADER_ELECTOR_BACKEND"
)

// Options configures a Runner.
type Options struct {
	// Argv is the command and its arguments; required.
	Argv []string
	// Grace is how long the command has between SIGTERM and SIGKILL.
	// Default DefaultGrace.
	Grace time.Duration
	// Env is the command's base environment (default: the wrapper's).
	Env []string
	// Stdout and Stderr receive the command's output (default: the
	// wrapper's).
	Stdout, Stderr io.Writer
}

// Exit is how a command that ended on its own ended.
type Exit struct {
	Token int64 // the term it ran in
	Code  int   // its exit code; 128+N if signal N ended it; 127 if it could not start
	Err   error // the error from starting or waiting for it
}

// Runner runs the command while leading. Create it with New.
type Runner struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	idle    chan struct{} // closed while no command runs
	pgid    int           // the running command's process group; 0 if none
	exits   chan Exit
	started int // commands started, for tests and logs
}

// New validates opts and returns a runner.
func New(opts Options, log *slog.Logger) (*Runner, error) {
	if len(opts.Argv) == 0 || opts.Argv[0] == "" {
		return nil, election.Invalid("Argv", "a command is required")
	}
	if opts.Grace < 0 {
		return nil, election.Invalid("Grace", "%v must not be negative", opts.Grace)
	}
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	idle := make(chan struct{})
	close(idle)
	return &Runner{opts: opts, log: log.With("component", "exec", "cmd", opts.Argv[0]), idle: idle, exits: make(chan Exit, 1)}, nil
}

// Exits delivers each exit of a command that ended on its own (not stopped
// by a step-down). The wrapper decides what follows (resign, and stand
// again or exit). Unread exits are dropped but the latest.
func (r *Runner) Exits() <-chan Exit { return r.exits }

// Run starts the command whenever src says this instance leads, and stops
// it when that term ends, until ctx ends (then a running command is
// stopped too). It returns when ctx has ended and no command runs. ctx
// should outlive the engine, so the final step-down is seen.
func (r *Runner) Run(ctx context.Context, src election.Source) {
	election.WhileLeading(ctx, src, func(tctx context.Context, term election.Status) {
		r.term(tctx, src, term)
	})
}

// BeforeRelease blocks until no command runs. Give it to the engine as
// election.Config.BeforeRelease: the step-down is published before it is
// called, so the running command is being stopped, and no new one starts.
func (r *Runner) BeforeRelease() {
	r.mu.Lock()
	idle := r.idle
	r.mu.Unlock()
	<-idle
}

// Signal forwards sig to the running command's process group, if any.
func (r *Runner) Signal(sig syscall.Signal) {
	r.mu.Lock()
	pgid := r.pgid
	r.mu.Unlock()
	if pgid > 0 {
		_ = syscall.Kill(-pgid, sig)
	}
}

// Started returns how many commands have been started.
func (r *Runner) Started() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started
}

// term runs the command for one term.
func (r *Runner) term(ctx context.Context, src election.Source, term election.Status) {
	cmd := exec.Command(r.opts.Argv[0], r.opts.Argv[1:]...)
	cmd.Env = append(append([]string(nil), r.opts.Env...),
		EnvToken+"="+strconv.FormatInt(term.FencingToken, 10),
		EnvIdentity+"="+term.Identity,
		EnvElection+"="+term.Election,
		EnvBackend+"="+term.Backend,
	)
	cmd.Stdout, cmd.Stderr = r.opts.Stdout, r.opts.Stderr
	// Its own process group, so a stop reaches its children too; SIGKILL
	// from the kernel if the wrapper dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Output copied through pipes must not keep Wait waiting for a
	// descendant that holds them after the command exited.
	cmd.WaitDelay = time.Second

	// Start under the lock, after checking again that the term leads:
	// BeforeRelease takes the same lock after the step-down is published,
	// so a command either starts before it looks (and is waited for) or
	// sees the step-down and does not start.
	r.mu.Lock()
	if cur, _ := src.Status(); !cur.IsLeader || cur.FencingToken != term.FencingToken || ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		r.log.Error("could not start the command", "err", err)
		r.report(Exit{Token: term.FencingToken, Code: 127, Err: err})
		return
	}
	idle := make(chan struct{})
	r.idle, r.pgid = idle, cmd.Process.Pid
	r.started++
	r.mu.Unlock()
	r.log.Info("started the command", "pid", cmd.Process.Pid, "token", term.FencingToken)

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var (
		err     error
		stopped bool
	)
	select {
	case err = <-waited:
	case <-ctx.Done():
		stopped = true
		err = r.stop(cmd.Process.Pid, waited)
	}
	// Descendants still in the group go with it.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	r.mu.Lock()
	r.pgid = 0
	close(idle)
	r.mu.Unlock()

	code := exitCode(cmd.ProcessState, err)
	if stopped {
		r.log.Info("the command stopped at step-down", "code", code)
		return
	}
	r.log.Warn("the command exited on its own", "code", code, "err", err)
	r.report(Exit{Token: term.FencingToken, Code: code, Err: err})
}

// stop sends SIGTERM to the group, SIGKILL after the grace period, and
// returns the command's Wait error once nothing of its group is left
// (endGroup).
func (r *Runner) stop(pgid int, waited <-chan error) error {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(r.opts.Grace)
	defer t.Stop()
	select {
	case err := <-waited:
		endGroup(pgid)
		return err
	case <-t.C:
	}
	r.log.Warn("the command outlived its grace period; killing it", "grace", r.opts.Grace)
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	err := <-waited
	endGroup(pgid)
	return err
}

// groupGone bounds how long endGroup waits for the kernel to end what is
// left of a process group.
const groupGone = time.Second

// endGroup kills what is left of the command's process group once the
// command itself has exited (a background child that ignored SIGTERM, or
// one the group's SIGKILL has not ended yet: the clean-clone CI saw one
// alive after the command's exit) and waits, up to groupGone, until no
// member is left, reaping those that are this process's children (as PID 1
// of a container it inherits orphans), so the lease is released only after
// the command's work has stopped.
func endGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	deadline := time.Now().Add(groupGone)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var ws syscall.WaitStatus
		for {
			if pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
		if err := syscall.Kill(-pgid, 0); err != nil || !time.Now().Before(deadline) {
			return
		}
		<-tick.C
	}
}

// report hands an exit to Exits, replacing an unread one.
func (r *Runner) report(e Exit) {
	for {
		select {
		case r.exits <- e:
			return
		default:
		}
		select {
		case <-r.exits:
		default:
		}
	}
}

// exitCode is the shell's view of how a process ended.
func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return 127
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if c := ps.ExitCode(); c >= 0 {
		return c
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return 1
	}
	return 0
}

// String describes the runner for logs.
func (r *Runner) String() string { return fmt.Sprintf("exec %q (grace %v)", r.opts.Argv, r.opts.Grace) }
