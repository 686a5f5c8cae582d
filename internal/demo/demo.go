// Package demo runs a local election between real sidecar processes on an
// in-process etcd and narrates it: who leads, and how long a graceful
// handover and a crash failover take. It is the program cmd/demo, kept out
// of the released sidecar binary because it links an etcd server.
//
// Everything the demo starts dies with it, however it ends: interrupted
// (SIGINT, SIGTERM, SIGHUP) it stops its sidecars and etcd and removes its
// temporary directory; when the process that started it goes away (go run
// killed) it does the same; killed with SIGKILL, its sidecars get a
// parent-death signal (Linux) and its janitor process (janitor.go) kills
// any that remain and removes the directory (or, if the janitor was killed
// too, the next demo run removes it).
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leader-elector/leader-elector/internal/etcdembed"
)

// Defaults, written once.
const (
	DefaultCandidates   = 3
	DefaultTTL          = 2 * time.Second
	DefaultPollInterval = 15 * time.Millisecond
	election            = "demo"
	// startAttempts bounds how often a sidecar is started again on a new
	// port after it exited at once (another process took its port).
	startAttempts = 3
	// stopGrace is how long a sidecar has to exit after SIGTERM before it
	// is killed.
	stopGrace = 10 * time.Second
)

// Options configures Run.
type Options struct {
	// KeepRunning starts the sidecars the script stopped again after the
	// scripted part and keeps etcd and every sidecar running, with the
	// timeline, until ctx ends.
	KeepRunning bool
	// Candidates is the number of sidecar processes; default 3, at least 2.
	Candidates int
	// TTL is the sidecars' lease TTL; default 2s, etcd's minimum.
	TTL time.Duration
	// SidecarCommand is the program and leading arguments that run one
	// sidecar; the arguments from ChildArgs follow. Default: this program
	// with "sidecar" (see Command).
	SidecarCommand []string
	// ChildArgs builds a sidecar's command line; default DefaultChildArgs.
	ChildArgs func(Child) []string
	// Janitor is a program that answers `janitor DIR` as Command does;
	// default this program.
	Janitor string
	// PollInterval is how often every sidecar's /status is read; default
	// 15ms, so the measured times are accurate to about that.
	PollInterval time.Duration
}

// Child describes one sidecar process of the demo.
type Child struct {
	ID            string
	HTTPAddr      string // 127.0.0.1:port
	ControlSocket string // path of its control socket (POST /resign)
	EtcdEndpoints []string
	Election      string
	TTL           time.Duration
}

// DefaultChildArgs is the sidecar command line for c.
func DefaultChildArgs(c Child) []string {
	return []string{
		"--backend", "etcd",
		"--election", c.Election,
		"--id", c.ID,
		"--ttl", c.TTL.String(),
		"--http", c.HTTPAddr,
		"--control-socket", c.ControlSocket,
		"--etcd-endpoints", strings.Join(c.EtcdEndpoints, ","),
		"--log-format", "json",
		"--log-level", "warn",
	}
}

func (o Options) withDefaults() (Options, error) {
	if o.Candidates == 0 {
		o.Candidates = DefaultCandidates
	}
	if o.Candidates < 2 {
		return o, fmt.Errorf("demo: %d candidates: at least 2 are needed for a handover", o.Candidates)
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < 0 {
		return o, fmt.Errorf("demo: negative TTL %v", o.TTL)
	}
	if len(o.SidecarCommand) == 0 || o.Janitor == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("demo: find this program's executable: %w", err)
		}
		if len(o.SidecarCommand) == 0 {
			o.SidecarCommand = []string{exe, "sidecar"}
		}
		if o.Janitor == "" {
			o.Janitor = exe
		}
	}
	if o.ChildArgs == nil {
		o.ChildArgs = DefaultChildArgs
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	return o, nil
}

// Run starts etcd and the sidecars, shows the timeline, hands leadership
// over with SIGTERM, crashes the next leader with SIGKILL, prints both
// measured times and stops everything it started, also when ctx ends early.
// An interrupted demo (ctx cancelled) is not an error.
func Run(ctx context.Context, opts Options, out io.Writer) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	tl := newTimeline(out, time.Now())
	err = run(ctx, opts, tl)
	if err != nil && errors.Is(err, context.Canceled) && ctx.Err() != nil {
		tl.printf("Interrupted. ")
		err = nil
	}
	if err == nil {
		tl.printf("Stopped the sidecars and etcd and removed their files.\n")
	}
	return err
}

func run(ctx context.Context, opts Options, tl *timeline) error {
	for _, d := range sweepStale(os.TempDir()) {
		tl.printf("Removed %s, left behind by a demo that was killed.\n", d)
	}
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return fmt.Errorf("demo: temp dir: %w", err)
	}
	if err := claimDir(dir); err != nil {
		_ = os.RemoveAll(dir)
		return fmt.Errorf("demo: temp dir: %w", err)
	}
	jan, err := startJanitor(opts.Janitor, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return fmt.Errorf("demo: %w", err)
	}
	// Deferred calls run last-in first-out: the janitor is released after
	// the directory is gone and every sidecar has been reaped.
	defer jan.close()
	defer os.RemoveAll(dir)

	cluster, err := etcdembed.StartCluster(ctx, etcdembed.Options{Dir: filepath.Join(dir, "etcd")})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer cluster.Close()

	var children []*child
	// Sidecars stop before etcd does, so they can resign cleanly.
	defer func() { stopAll(children) }()
	for i := range opts.Candidates {
		c, err := startInstance(ctx, opts, jan, fmt.Sprintf("demo-%d", i+1), cluster.ClientURLs(), dir)
		if err != nil {
			return err
		}
		children = append(children, c)
	}

	tl.printf("leader-elector demo: %d sidecar processes in election %q on an in-process etcd\n", len(children), election)
	tl.printf("  etcd      %s (single member; lease TTL %v)\n", strings.Join(cluster.ClientURLs(), ","), opts.TTL)
	for _, c := range children {
		tl.printf("  %-8s  http://%s/status  (pid %d)\n", c.id, c.addr, c.pid())
	}
	tl.printf("\n%s", legend)
	tl.printf("\nTimeline (every sidecar's /status polled every %v; >>> marks what the demo does):\n", opts.PollInterval)

	targets := make([]target, len(children))
	for i, c := range children {
		targets[i] = target{ID: c.id, Addr: c.addr}
	}
	mon := newMonitor(targets, opts.PollInterval, tl.observe)
	monCtx, stopMon := context.WithCancel(ctx)
	var monWG sync.WaitGroup
	monWG.Go(func() { mon.run(monCtx) })
	defer monWG.Wait()
	defer stopMon()

	byID := make(map[string]*child, len(children))
	for _, c := range children {
		byID[c.id] = c
	}
	res, err := script(ctx, opts, tl, mon, byID)
	if err != nil {
		return err
	}

	tl.printf("\nSummary\n")
	tl.printf("  graceful handover: SIGTERM %s -> %s led after %v\n", res.handover.from, res.handover.to, round(res.handover.took))
	tl.printf("  crash failover:    SIGKILL %s -> %s led after %v (lease TTL %v)\n", res.failover.from, res.failover.to, round(res.failover.took), opts.TTL)
	if n := tl.splitClaims(); n > 0 {
		tl.printf("  !! %d polls saw more than one instance claim leadership\n", n)
	} else {
		tl.printf("  no poll saw two instances claim leadership at once\n")
	}
	tl.printf("  times are from the signal to the first poll that showed the new leader (+/- %v)\n", opts.PollInterval)

	if opts.KeepRunning {
		return keepRunning(ctx, opts, tl, mon, jan, children, cluster.ClientURLs(), dir)
	}
	return nil
}

// keepRunning starts the sidecars the script stopped again, on new ports,
// so that every candidate runs, shows how to try them and waits for ctx.
func keepRunning(ctx context.Context, opts Options, tl *timeline, mon *monitor, jan *janitor, children []*child, endpoints []string, dir string) error {
	tl.printf("\nStarting the stopped sidecars again; everything keeps running until Ctrl-C.\n")
	for i, c := range children {
		if !c.exited() {
			continue
		}
		n, err := startInstance(ctx, opts, jan, c.id, endpoints, dir)
		if err != nil {
			return err
		}
		children[i] = n
		mon.setTarget(i, target{ID: n.id, Addr: n.addr})
		tl.event(time.Now(), "started %s again: http://%s/status (pid %d)", n.id, n.addr, n.pid())
	}
	tl.printf("\nTry, in another terminal:\n")
	for _, c := range children {
		tl.printf("  curl -s http://%s/status   # %s, pid %d\n", c.addr, c.id, c.pid())
	}
	tl.printf("  curl -s --unix-socket %s -X POST http://localhost/resign\n", socketPath(dir, "<leader>"))
	tl.printf("      # the leader hands over now (resign is accepted only on the control socket)\n")
	tl.printf("  kill -9 <leader's pid>   # a crash: the next leader takes over after about two TTLs\n")
	tl.printf("  etcd: %s\n\n", strings.Join(endpoints, ","))
	<-ctx.Done()
	return nil
}

// takeover is one measured change of leader.
type takeover struct {
	from, to string
	took     time.Duration
}

type scriptResult struct {
	handover, failover takeover
}

// script waits for a leader, hands over with SIGTERM and fails over with
// SIGKILL.
func script(ctx context.Context, opts Options, tl *timeline, mon *monitor, byID map[string]*child) (scriptResult, error) {
	var res scriptResult
	s, err := waitPhase(ctx, mon, time.Time{}, 30*time.Second+2*opts.TTL, "a single agreed leader",
		func(s snapshot) bool { _, ok := s.agreedLeader(); return ok })
	if err != nil {
		return res, err
	}
	first, _ := s.agreedLeader()
	tl.event(s.Start, "%s leads with fencing token %d; every instance agrees", first.ID, first.St.FencingToken)

	res.handover, err = replace(ctx, opts, tl, mon, byID[first.ID], syscall.SIGTERM, "graceful handover")
	if err != nil {
		return res, err
	}
	old := byID[first.ID]
	select {
	case <-old.done:
		tl.event(time.Now(), "%s exited (%s)", old.id, exitText(old.err))
	case <-time.After(stopGrace):
		tl.event(time.Now(), "%s has not exited %v after SIGTERM", old.id, stopGrace)
	case <-ctx.Done():
		return res, ctx.Err()
	}

	res.failover, err = replace(ctx, opts, tl, mon, byID[res.handover.to], syscall.SIGKILL, "crash")
	return res, err
}

// replace signals the leader and measures how long it takes until another
// instance claims leadership.
func replace(ctx context.Context, opts Options, tl *timeline, mon *monitor, leader *child, sig syscall.Signal, what string) (takeover, error) {
	sent := time.Now()
	tl.event(sent, "%s %s (%s)", signalName(sig), leader.id, what)
	if err := leader.signal(sig); err != nil {
		return takeover{}, fmt.Errorf("demo: %w", err)
	}
	limit := 10*time.Second + 3*opts.TTL
	s, err := waitPhase(ctx, mon, sent, limit, "a new leader after "+signalName(sig),
		func(s snapshot) bool { _, ok := otherLeader(s, leader.id); return ok })
	if err != nil {
		return takeover{}, err
	}
	next, _ := otherLeader(s, leader.id)
	took := next.At.Sub(sent)
	tl.event(next.At, "%s leads with fencing token %d, %v after %s", next.ID, next.St.FencingToken, round(took), signalName(sig))
	return takeover{from: leader.id, to: next.ID, took: took}, nil
}

// waitPhase waits for cond with a time limit, so a broken sidecar ends the
// demo with an error rather than a hang.
func waitPhase(ctx context.Context, mon *monitor, since time.Time, limit time.Duration, what string, cond func(snapshot) bool) (snapshot, error) {
	pctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	s, err := mon.wait(pctx, since, cond)
	if err != nil && ctx.Err() == nil {
		return s, fmt.Errorf("demo: no %s within %v; last poll: %s", what, limit, describe(s))
	}
	return s, err
}

// startInstance starts one sidecar and waits until its HTTP API answers. A
// sidecar that exits at once (its port was taken) is started again on a
// new port.
func startInstance(ctx context.Context, opts Options, jan *janitor, id string, endpoints []string, dir string) (*child, error) {
	var lastErr error
	for attempt := range startAttempts {
		addr, err := freeAddr()
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		args := opts.ChildArgs(Child{ID: id, HTTPAddr: addr, ControlSocket: socketPath(dir, id), EtcdEndpoints: endpoints, Election: election, TTL: opts.TTL})
		cmdline := append(slices.Clone(opts.SidecarCommand), args...)
		c, err := startChild(id, addr, cmdline, logPath(dir, id, attempt), jan)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		err = waitAnswering(ctx, c, 20*time.Second)
		if err == nil {
			return c, nil
		}
		c.stop(stopGrace)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		lastErr = err
	}
	return nil, fmt.Errorf("demo: %w", lastErr)
}

// socketPath is where sidecar id's control socket lives.
func socketPath(dir, id string) string {
	return filepath.Join(dir, id+".sock")
}

// waitAnswering waits until c's GET /status answers, c exits, or limit
// passes.
func waitAnswering(ctx context.Context, c *child, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: 250 * time.Millisecond}
	defer client.CloseIdleConnections()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := fetchStatus(ctx, client, c.addr); err == nil {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited at start (%s); its output:\n%s", c.id, exitText(c.err), c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer on http://%s/status: %w; its output:\n%s", c.id, c.addr, ctx.Err(), c.logTail())
		case <-t.C:
		}
	}
}

// stopAll stops the sidecars together, each with SIGTERM and a grace
// period.
func stopAll(children []*child) {
	var wg sync.WaitGroup
	for _, c := range children {
		wg.Go(func() { c.stop(stopGrace) })
	}
	wg.Wait()
}

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGKILL:
		return "SIGKILL"
	}
	return sig.String()
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// round shortens d for people: milliseconds below 10s.
func round(d time.Duration) time.Duration {
	return d.Round(time.Millisecond)
}
