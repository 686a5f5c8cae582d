// Package cli is the sidecar's command line: it parses flags and the
// environment into a config, builds the backend, the engine and the
// publishers, and runs them until a signal arrives.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/leader-elector/leader-elector/internal/lossy"
	"github.com/leader-elector/leader-elector/pkg/apphealth"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/history"
	"github.com/leader-elector/leader-elector/pkg/httpapi"
	"github.com/leader-elector/leader-elector/pkg/kube"
	"github.com/leader-elector/leader-elector/pkg/leaderexec"
	"github.com/leader-elector/leader-elector/pkg/metrics"
	"github.com/leader-elector/leader-elector/pkg/statusfile"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// Main runs the command line with the process's arguments, environment and
// signals, and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
}

// Run is the whole program: args without the program name, the environment
// as a lookup function, and where to write. It returns the exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if code, ok := subcommand(ctx, args, getenv, stdout, stderr); ok {
		return code
	}
	cfg, err := parseConfig(args, getenv)
	if errors.Is(err, pflag.ErrHelp) { // -h or --help after other flags
		usage(stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "sidecar: %v\n", err)
		fmt.Fprintln(stderr, "Run 'sidecar --help' for the flags.")
		return exitUsage
	}
	return runConfig(ctx, cfg, stdout, stderr)
}

// runConfig runs a parsed configuration and returns the exit code: the
// command's under `sidecar exec --exec-on-exit exit`.
func runConfig(ctx context.Context, cfg *config, stdout, stderr io.Writer) int {
	// Logging never waits for stderr: a log collector that stops reading
	// must not delay a step-down. Records that do not fit are dropped and
	// counted.
	logOut := lossy.New(stderr, lossy.DefaultQueue)
	defer func() { _ = logOut.Close(logCloseTimeout) }()
	log := newLogger(cfg, logOut)
	outs := &outputs{}
	outs.add("log", logOut.Stats)
	err := run(ctx, cfg, log, outs, stdout, stderr)
	var ce cmdExit
	if errors.As(err, &ce) {
		log.Info("exiting with the command's exit code", "code", ce.code)
		return ce.code
	}
	if err != nil {
		log.Error("sidecar failed", "err", err)
		return exitError
	}
	return exitOK
}

// logCloseTimeout bounds how long exit waits for stderr to take the last
// log records.
const logCloseTimeout = time.Second

// run wires the backend, engine and publishers and runs them until ctx ends.
// stdout and stderr are the command's under `sidecar exec` (the logs go
// through log).
func run(ctx context.Context, cfg *config, log *slog.Logger, outs *outputs, stdout, stderr io.Writer) error {
	m := metrics.New(metrics.Info{Version: version(), Backend: cfg.Backend})
	backend, err := newBackend(cfg, log)
	if err != nil {
		return err
	}
	defer backend.Close()
	inc, err := openIncarnation(cfg, backend, log)
	if err != nil {
		return err
	}
	generation, err := resolveGeneration(ctx, cfg, inc, log)
	if err != nil {
		return err
	}
	if inc != nil {
		inc.me.Generation = generation
	}
	ecfg := election.Config{
		Election:   cfg.Election,
		Identity:   cfg.ID,
		Backend:    backend,
		TTL:        cfg.TTL,
		Logger:     log,
		Metrics:    m,
		Generation: generation,
	}
	if cfg.HistoryFile != "" {
		f, err := os.OpenFile(cfg.HistoryFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--history-file: %w", err)
		}
		defer f.Close()
		hist := history.NewWriter(f)
		// Runs before f.Close: the final step-down reaches the file unless
		// the file itself is stuck.
		defer func() {
			if err := hist.Close(historyCloseTimeout); err != nil {
				log.Warn("history: entries still queued at exit were lost", "err", err)
			}
		}()
		ecfg.OnStatus = hist.Record
		outs.add("history", hist.Stats)
	}
	// The health gate checks on its own goroutine; the engine only reads
	// its last verdict, so a stalled application never delays the election.
	var wg sync.WaitGroup
	defer wg.Wait()
	if cfg.Health.URL != "" {
		checker, err := apphealth.New(cfg.Health, m.Registry(), log)
		if err != nil {
			return flagError(err, healthFlags)
		}
		checkCtx, stopChecks := context.WithCancel(context.WithoutCancel(ctx))
		defer stopChecks()
		wg.Go(func() { checker.Run(checkCtx) })
		ecfg.Gate = checker
	}
	var runner *leaderexec.Runner
	if cfg.Exec != nil {
		runner, err = leaderexec.New(leaderexec.Options{Argv: cfg.Exec.Argv, Grace: cfg.Exec.Grace,
			Stdout: stdout, Stderr: stderr}, log)
		if err != nil {
			return err
		}
		ecfg.Margin = cfg.Exec.margin()
		ecfg.BeforeRelease = runner.BeforeRelease
	}
	if inc != nil {
		defer inc.Close()
		ecfg.OnCandidacy = inc.record
	}
	engine, err := election.New(ecfg)
	if err != nil {
		return flagError(err, nil)
	}
	m.SetLeaderSource(func() bool { st, _ := engine.Status(); return st.IsLeader })
	for _, o := range outs.snapshot() {
		m.AddOutput(o.name, o.stats)
	}

	// Publishers outlive the engine, so they report its final step-down.
	pubCtx, stopPublishers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPublishers()
	errs := make(chan error, 1)
	if cfg.HTTP != "" || cfg.API.controlEnabled() {
		hc := httpapi.Config{Addr: cfg.HTTP, Elector: engine, Metrics: m.Handler(), Logger: log, Degraded: outs.degraded}
		cfg.API.apply(&hc)
		api := httpapi.New(hc)
		wg.Go(func() {
			if err := api.Serve(pubCtx); err != nil {
				errs <- err
			}
		})
		// The listeners are bound before the backend is contacted, so a
		// clash fails fast and touches nothing.
		<-api.Listening()
		if err := api.ListenError(); err != nil {
			return err
		}
	}

	// Publishers besides HTTP (whose failure to serve ends the sidecar):
	// each follows the engine's status stream on its own.
	var pubs []election.Publisher
	if cfg.Kube.Enabled() {
		pub, err := newKubePublisher(cfg, log, m)
		if err != nil {
			return err
		}
		pubs = append(pubs, pub)
	}
	if cfg.StatusFile != "" {
		pubs = append(pubs, statusfile.New(cfg.StatusFile, log, func() { m.PublishError("status-file") }))
	}
	wg.Go(func() { outs.watch(pubCtx, log) })
	wg.Go(func() {
		if err := election.Publish(pubCtx, engine, pubs...); err != nil {
			log.Error("publishing stopped", "err", err)
		}
	})

	attrs := []any{"election", cfg.Election, "identity", cfg.ID, "backend", backend.Name(),
		"ttl", cfg.TTL, "http", cfg.HTTP, "version", version()}
	if spec := backendRegistry()[cfg.Backend]; spec.keys != nil {
		attrs = append(attrs, "keys", spec.keys(cfg))
	}
	log.Info("starting", attrs...)
	if inc != nil {
		inc.reclaim(ctx, backend)
	}
	engineCtx, stopEngine := context.WithCancel(ctx)
	defer stopEngine()
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(engineCtx) }()

	var cmdDone <-chan error
	if runner != nil {
		// The runner follows the engine past its final step-down (pubCtx).
		wg.Go(func() { runner.Run(pubCtx, engine) })
		cmdDone = superviseCommand(pubCtx, cfg.Exec, runner, engine, log)
	}

	var runErr error
	select {
	case runErr = <-errs:
		stopEngine()
		runErr = errors.Join(runErr, <-engineDone)
	case runErr = <-cmdDone:
		stopEngine()
		runErr = errors.Join(runErr, <-engineDone)
	case runErr = <-engineDone:
	}
	stopPublishers()
	if runErr == nil {
		log.Info("stopped")
	}
	return runErr
}

// historyCloseTimeout bounds how long shutdown waits for the history file
// to take its last entries.
const historyCloseTimeout = 2 * time.Second

// newBackend builds the configured backend from the registry. None of
// them contacts its servers here; the engine does, and retries.
func newBackend(cfg *config, log *slog.Logger) (election.Backend, error) {
	spec, ok := backendRegistry()[cfg.Backend]
	if !ok {
		return nil, fmt.Errorf("--backend %q: want %s", cfg.Backend, backendNames())
	}
	b, err := spec.build(cfg, cfg.params(), log)
	if err != nil {
		return nil, flagError(err, spec.flags)
	}
	return b, nil
}

// newKubePublisher builds the pod label, readiness-gate and event
// publisher. It does not contact the API server.
func newKubePublisher(cfg *config, log *slog.Logger, m *metrics.Metrics) (*kube.Publisher, error) {
	// client-go logs through klog; send it to the same handler.
	klog.SetSlogLogger(log.With("component", "client-go"))
	return kube.NewForConfig(cfg.Kube, cfg.kubeREST, log, m)
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel, ReplaceAttr: humanDurations}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// humanDurations prints durations as "10s" rather than nanoseconds.
func humanDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// buildVersion is stamped by release builds:
// -ldflags "-X github.com/leader-elector/leader-elector/internal/cli.buildVersion=v1.2.3".
var buildVersion string

// version is the stamped version, else the module version, else the VCS
// revision the binary was built from, else "devel".
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
