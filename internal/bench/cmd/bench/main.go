// Command bench runs the side-by-side benchmarks and writes
// docs/benchmarks.md and its chart. Run it anywhere inside a clone, after
// `make test-deps`: `make bench`. It is in its own module (internal/bench),
// so it runs as `go -C internal/bench run ./cmd/bench` from the root.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/leader-elector/leader-elector/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bench.Config{}
	out := fs.String("out", "docs/benchmarks.md", "Markdown report to write (a relative path is from the repository root)")
	chart := fs.String("chart", "docs/benchmarks-handover.svg", "SVG chart to write (a relative path is from the repository root)")
	fs.DurationVar(&cfg.TTL, "ttl", 2*time.Second, "TTL of our candidates and of the alternatives")
	fs.IntVar(&cfg.Trials, "trials", 200, "graceful handover trials per system")
	fs.IntVar(&cfg.SlowParallel, "slow-parallel", 8, "elections the polling alternatives run at once")
	fs.IntVar(&cfg.CrashTrials, "crash-trials", 100, "crash failover trials per backend")
	fs.IntVar(&cfg.CrashParallel, "crash-parallel", 4, "elections crash trials run at once")
	fs.DurationVar(&cfg.CostWindow, "cost-window", 10*time.Second, "steady-state measurement window")
	fs.IntVar(&cfg.ScaleElections, "scale-elections", 1000, "elections in the scale test (0 skips it)")
	fs.IntVar(&cfg.ScaleTrials, "scale-trials", 200, "handovers in the scale test")
	fs.DurationVar(&cfg.ScaleTTL, "scale-ttl", 10*time.Second, "TTL in the scale test")
	fs.IntVar(&cfg.PublishTrials, "publish-trials", 200, "pod label publish trials (0 skips them)")
	fs.IntVar(&cfg.OpsTrials, "ops-trials", 20, "switchover and sidecar-restart trials, after the rollout counts (0 skips all three)")
	fs.BoolVar(&cfg.OnlyOps, "only-ops", false, "measure the planned operations alone and print their Markdown section; writes no files")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	for _, p := range []*string{out, chart} {
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(root, *p)
		}
	}
	cfg.Root = root
	cfg.Command = strings.TrimSpace("go -C internal/bench run ./cmd/bench " + strings.Join(args, " "))
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))

	res, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "bench: broken measurement:", err)
		return 1
	}
	if cfg.OnlyOps {
		if err := res.WriteOps(stdout); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		return 0
	}
	if err := res.WriteSummary(stdout); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	if err := writeFile(*chart, func(w io.Writer) error { return res.HandoverChart().WriteSVG(w) }); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	rel, err := filepath.Rel(filepath.Dir(*out), *chart)
	if err != nil {
		rel = *chart
	}
	if err := writeFile(*out, func(w io.Writer) error { return res.WriteMarkdown(w, filepath.ToSlash(rel)) }); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", *out, *chart)
	return 0
}

// writeFile writes through a temporary file, so a failed run leaves the old
// report in place.
func writeFile(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".bench-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// mainModule is the module whose go.mod marks the repository root.
const mainModule = "github.com/leader-elector/leader-elector"

// repoRoot walks up from the working directory to the folder whose go.mod
// declares the main module (this benchmark's own go.mod is below it).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			for line := range strings.SplitSeq(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && f[1] == mainModule {
					return dir, nil
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run inside a clone of the repository: no go.mod of %s above the working directory", mainModule)
		}
		dir = parent
	}
}
