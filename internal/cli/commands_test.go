package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestEverySubcommandAnswersHelp(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := Run(t.Context(), args, env(nil), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"-help"}, {"--election", "e", "--help"}, {"--ttl", "5s", "-h"}} {
		code, out, errOut := run(args...)
		if code != exitOK || errOut != "" {
			t.Errorf("%q: exit %d, stderr %q; want 0 and nothing", args, code, errOut)
		}
		for _, want := range []string{"Usage: sidecar [flags]", "--etcd-endpoints", "LEADER_ELECTOR_ELECTION", "LEADER_ELECTOR_ETCD_PASSWORD", "go run ./cmd/demo"} {
			if !strings.Contains(out, want) {
				t.Errorf("%q: help lacks %q", args, want)
			}
		}
	}

	// Every subcommand answers --help and -h with its usage and exit 0, and
	// the overview lists it.
	_, overview, _ := run("--help")
	for _, c := range commands() {
		if !strings.Contains(overview, "sidecar "+c.name+" ") {
			t.Errorf("--help does not list the subcommand %q", c.name)
		}
		for _, h := range []string{"--help", "-h"} {
			code, out, errOut := run(c.name, h)
			if code != exitOK || errOut != "" || !strings.HasPrefix(out, "Usage: sidecar "+c.name) || len(out) < 40 {
				t.Errorf("sidecar %s %s: exit %d, stdout %q, stderr %q", c.name, h, code, out, errOut)
			}
		}
	}

	code, v1, _ := run("--version")
	_, v2, _ := run("version")
	_, v3, _ := run("-version")
	if code != exitOK || v1 == "" || v1 != v2 || v1 != v3 || strings.Count(v1, "\n") != 1 {
		t.Errorf("--version %q (exit %d), version %q, -version %q: want one equal line", v1, code, v2, v3)
	}
	// --version anywhere among a command's flags answers the same, as
	// --help does.
	for _, c := range commands() {
		if code, out, errOut := run(c.name, "--version"); code != exitOK || out != v1 || errOut != "" {
			t.Errorf("sidecar %s --version: exit %d, stdout %q, stderr %q; want 0 and %q", c.name, code, out, errOut, v1)
		}
	}
	if code, out, _ := run("--election", "e", "--version"); code != exitOK || out != v1 {
		t.Errorf("--election e --version: exit %d, stdout %q; want 0 and %q", code, out, v1)
	}
	if code, _, errOut := run("version", "extra"); code != exitUsage || !strings.Contains(errOut, "extra") {
		t.Errorf("version extra: exit %d, stderr %q", code, errOut)
	}
}

func TestDemoPointsToItsOwnCommand(t *testing.T) {
	for _, args := range [][]string{{"demo"}, {"demo", "--keep-running"}} {
		var stdout, stderr bytes.Buffer
		code := Run(t.Context(), args, env(nil), &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), "go run ./cmd/demo") {
			t.Errorf("%q: exit %d, stderr %q; want %d and a pointer to ./cmd/demo", args, code, stderr.String(), exitUsage)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Run(t.Context(), []string{"demo", "--help"}, env(nil), &stdout, &stderr); code != exitOK || !strings.Contains(stdout.String(), "go run ./cmd/demo --help") {
		t.Errorf("demo --help: exit %d, stdout %q; want 0 and a pointer to ./cmd/demo", code, stdout.String())
	}
}
