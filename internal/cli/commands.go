package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// command is a subcommand, `sidecar NAME [args]`. Every subcommand answers
// --help (and -h) with its usage on stdout and exit code 0; a test runs
// them all from this table.
type command struct {
	name    string
	summary string // one line for the overview in `sidecar --help`
	usage   string // `sidecar NAME --help`, after the "Usage:" line
	run     func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int
}

// commands lists the subcommands in the order `sidecar --help` shows them.
func commands() []command {
	return []command{
		{
			name:    "version",
			summary: "print the version and exit (same as --version)",
			usage:   "Prints the sidecar's version: the release tag it was built from, else the module version, else the VCS revision, else \"devel\".\n",
			run: func(_ context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) int {
				if len(args) > 0 {
					fmt.Fprintf(stderr, "sidecar version: unexpected argument %q\n", args[0])
					return exitUsage
				}
				fmt.Fprintln(stdout, version())
				return exitOK
			},
		},
		{
			name:    "exec",
			summary: "run a command only while this instance leads: sidecar exec [flags] -- CMD [ARGS...]",
			usage:   execHelp(),
			run:     runExec,
		},
		{
			name:    "injector",
			summary: "serve the admission webhook that injects the sidecar into opted-in pods",
			usage:   injectorUsage(),
			run:     runInjector,
		},
		{
			name:    "help",
			summary: "print this help and exit (same as --help)",
			usage:   "Prints the sidecar's flags and subcommands.\n",
			run: func(_ context.Context, _ []string, _ func(string) string, stdout, _ io.Writer) int {
				usage(stdout)
				return exitOK
			},
		},
	}
}

// demoMoved answers `sidecar demo`: the demo links an embedded etcd server,
// which the released sidecar does not carry, so it is its own program.
const demoMoved = "the demo is its own program: run `go run ./cmd/demo` in a clone of the repository (`go run ./cmd/demo --help` for its flags)"

// subcommand runs args as a subcommand or a top-level --version, and
// reports whether it did. Anything else is the sidecar's own flags.
func subcommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (int, bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "--version", "-version":
		fmt.Fprintln(stdout, version())
		return exitOK, true
	case "-h", "--help", "-help":
		usage(stdout)
		return exitOK, true
	case "demo":
		if wantsHelp(args[1:]) {
			fmt.Fprintf(stdout, "sidecar demo: %s.\n", demoMoved)
			return exitOK, true
		}
		fmt.Fprintf(stderr, "sidecar demo: %s.\n", demoMoved)
		return exitUsage, true
	}
	for _, c := range commands() {
		if args[0] != c.name {
			continue
		}
		if wantsHelp(args[1:]) {
			fmt.Fprintf(stdout, "Usage: sidecar %s\n\n%s", c.name, c.usage)
			return exitOK, true
		}
		if wantsVersion(args[1:]) {
			fmt.Fprintln(stdout, version())
			return exitOK, true
		}
		return c.run(ctx, args[1:], getenv, stdout, stderr), true
	}
	if wantsVersion(args) {
		fmt.Fprintln(stdout, version())
		return exitOK, true
	}
	return 0, false
}

// wantsVersion reports whether args ask for the version, before any "--"
// that starts a command's own arguments.
func wantsVersion(args []string) bool {
	for _, a := range args {
		switch a {
		case "--version", "-version":
			return true
		case "--":
			return false
		}
	}
	return false
}

// wantsHelp reports whether args ask for help.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "--help", "-help":
			return true
		case "--":
			return false
		}
	}
	return false
}

// usageHeader is the start of `sidecar --help`: the forms of the command
// line and the subcommands.
func usageHeader(w io.Writer) {
	var b strings.Builder
	line := func(lead, form, summary string) { fmt.Fprintf(&b, "%s%-26s %s\n", lead, form, summary) }
	line("Usage: ", "sidecar [flags]", "join an election and publish who leads (see Flags)")
	for _, c := range commands() {
		line("       ", "sidecar "+c.name, c.summary)
	}
	line("       ", "sidecar --version", "print the version and exit")
	b.WriteString("\nEach subcommand answers --help. The local demo is a separate program: go run ./cmd/demo\n")
	b.WriteString("(from a clone of the repository; it runs real sidecars on an embedded etcd).\n")
	fmt.Fprint(w, b.String())
}

// Version is the version this binary reports in `sidecar --version`, for
// other commands built from this repository (the demo).
func Version() string { return version() }
