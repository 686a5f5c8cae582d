package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestBadAppFlagsAreOneClearErrorAndContactNothing(t *testing.T) {
	etcdAddr, contacts := countingListener(t)
	base := []string{"--election", "e", "--etcd-endpoints", etcdAddr, "--http", ""}
	health := append(base[:len(base):len(base)], "--app-health-url", "http://127.0.0.1:1/healthz")
	health = health[:len(health):len(health)] // every case appends to its own copy
	tests := []struct {
		name string
		exec bool
		args []string
		want string
	}{
		{"health url without scheme", false, append(base, "--app-health-url", "localhost:8080/healthz"), "--app-health-url"},
		{"health url bad scheme", false, append(base, "--app-health-url", "ftp://x/"), "--app-health-url"},
		{"zero interval", false, append(health, "--app-health-interval", "0s"), "--app-health-interval"},
		{"bad interval", false, append(health, "--app-health-interval", "often"), "--app-health-interval"},
		{"timeout above interval", false, append(health, "--app-health-interval", "1s", "--app-health-timeout", "3s"), "--app-health-timeout"},
		{"zero failures", false, append(health, "--app-health-failures", "0"), "--app-health-failures"},
		{"zero successes", false, append(health, "--app-health-successes", "0"), "--app-health-successes"},
		{"exec flag without exec", false, append(base, "--exec-grace", "1s"), "unknown flag: --exec-grace"},
		{"exec without command", true, base, "no command"},
		{"exec with -- and nothing", true, append(base, "--"), "no command"},
		{"exec argument before --", true, append(base, "sleep", "--", "1"), `unexpected argument "sleep" before --`},
		{"exec zero grace", true, append(base, "--exec-grace", "0s", "--", "true"), "--exec-grace must be positive"},
		{"exec grace too long for ttl", true, append(base, "--exec-grace", "9s", "--", "true"), "--exec-grace 9s is taken out of the validity window"},
		{"exec bad on-exit", true, append(base, "--exec-on-exit", "retry", "--", "true"), "--exec-on-exit"},
		{"exec bad shared flag", true, append(base, "--ttl", "1s", "--", "true"), "--ttl 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.exec {
				args = append([]string{"exec"}, args...)
			}
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), args, env(nil), &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d (stderr %q)", code, exitUsage, stderr.String())
			}
			first, _, _ := strings.Cut(stderr.String(), "\n")
			if !strings.Contains(first, tt.want) {
				t.Errorf("first line %q does not contain %q", first, tt.want)
			}
			if n := strings.Count(stderr.String(), "\n"); n != 2 {
				t.Errorf("stderr has %d lines, want the error and a hint:\n%s", n, stderr.String())
			}
		})
	}
	if n := contacts.Load(); n != 0 {
		t.Errorf("bad input contacted etcd %d times", n)
	}
}

func TestExecHelp(t *testing.T) {
	for _, args := range [][]string{{"exec", "--help"}, {"exec", "-h"}, {"exec", "--election", "e", "--help"}} {
		var out bytes.Buffer
		if code := Run(t.Context(), args, env(nil), &out, &out); code != exitOK {
			t.Fatalf("%v: exit %d", args, code)
		}
		for _, want := range []string{"sidecar exec [flags] -- CMD", "LEADER_ELECTOR_FENCING_TOKEN", "LEADER_ELECTOR_IDENTITY",
			"--exec-grace", "--exec-on-exit", "--app-health-url", "--status-file", "--etcd-endpoints"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: help lacks %q", args, want)
			}
		}
	}
	var out bytes.Buffer
	Run(t.Context(), []string{"--help"}, env(nil), &out, &out)
	for _, want := range []string{"sidecar exec", "--app-health-url", "--status-file"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("sidecar --help lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "--exec-grace") {
		t.Errorf("sidecar --help lists exec's flags")
	}
}
