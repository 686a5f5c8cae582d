package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/leader-elector/leader-elector/internal/cli"
)

// Exit codes, as the sidecar's.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// parentPoll is how often the demo checks that the process that started it
// is still there.
const parentPoll = 200 * time.Millisecond

// Main is the demo program (cmd/demo) with the process's arguments,
// environment and signals; it returns the exit code. The one binary plays
// three parts:
//
//	demo [flags]            the demo
//	demo sidecar [flags]    one sidecar, exactly as the sidecar binary runs
//	                        (the demo starts its sidecars this way)
//	demo janitor DIR        internal: cleans up after a demo killed with SIGKILL
func Main() int {
	return Command(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// Command runs the demo program with args (without the program name).
func Command(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "sidecar":
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return cli.Run(ctx, args[1:], os.Getenv, stdout, stderr)
		case "janitor":
			return runJanitor(args[1:], stdin, stderr)
		}
	}
	opts, err := parseFlags(args)
	switch {
	case errors.Is(err, pflag.ErrHelp):
		usage(stdout)
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "demo: %v\nRun 'go run ./cmd/demo --help' for the flags.\n", err)
		return exitUsage
	case opts.version:
		fmt.Fprintln(stdout, cli.Version())
		return exitOK
	}

	// SIGHUP too: closing the terminal stops the demo cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, stopWatch := watchParent(ctx, parentPoll, stderr)
	defer stopWatch()
	if err := Run(ctx, opts.Options, stdout); err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitError
	}
	return exitOK
}

type flags struct {
	Options
	version bool
}

func newFlagSet(f *flags) *pflag.FlagSet {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	fs.IntVar(&f.Candidates, "candidates", DefaultCandidates, "number of sidecar processes, at least 2")
	fs.DurationVar(&f.TTL, "ttl", DefaultTTL, "the sidecars' lease TTL: whole seconds, at least 2s (etcd's minimum); crash failover takes about twice this long (the lease expires, then the successor waits out one more TTL)")
	fs.BoolVar(&f.KeepRunning, "keep-running", false, "after the handover and the failover, start the stopped sidecars again and keep everything running (with the timeline) until Ctrl-C, to try the HTTP API")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	return fs
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := newFlagSet(&f)
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if f.Candidates < 2 {
		return f, fmt.Errorf("--candidates %d: the demo needs at least 2", f.Candidates)
	}
	if f.TTL < 2*time.Second || f.TTL%time.Second != 0 {
		return f, fmt.Errorf("--ttl %v: etcd leases are whole seconds, at least 2s", f.TTL)
	}
	return f, nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: go run ./cmd/demo [flags]     (or: make demo)

Runs real sidecar processes in one election on an etcd embedded in this
program, shows every instance's /status as it changes, hands leadership over
with SIGTERM, crashes the next leader with SIGKILL, and prints how long each
takes. Needs only Go; everything listens on 127.0.0.1 and lives in a
temporary directory that is removed at the end, also when the demo is
interrupted, its parent (go run) dies or it is killed with SIGKILL.

Flags:
`)
	var f flags
	fs := newFlagSet(&f)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprint(w, `
The same binary also runs one sidecar: demo sidecar [sidecar flags]
(demo sidecar --help lists them).
`)
}

// watchParent returns a context that also ends when this process's parent
// goes away (it is re-parented). go run, for example, does not pass SIGTERM
// on: killing it would otherwise leave the demo running with its sidecars.
func watchParent(ctx context.Context, every time.Duration, stderr io.Writer) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	parent := os.Getppid()
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != parent {
					fmt.Fprintf(stderr, "demo: the process that started the demo (pid %d) is gone; stopping.\n", parent)
					cancel()
					return
				}
			}
		}
	}()
	return ctx, cancel
}
