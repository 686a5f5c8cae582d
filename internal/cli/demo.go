package cli

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/leader-elector/leader-elector/internal/demo"
)

// parseDemoFlags reads the demo subcommand's flags.
func parseDemoFlags(args []string) (demo.Options, error) {
	var opts demo.Options
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&opts.KeepRunning, "keep-running", false, "after the scripted handover and failover, keep etcd and the survivors running until Ctrl-C")
	fs.IntVar(&opts.Candidates, "candidates", 3, "number of sidecar processes to start")
	fs.DurationVar(&opts.TTL, "ttl", 0, "lease TTL of the demo sidecars (default 2s, etcd's minimum)")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if opts.Candidates < 2 {
		return opts, fmt.Errorf("--candidates %d: the demo needs at least 2", opts.Candidates)
	}
	return opts, nil
}
