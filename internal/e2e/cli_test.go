package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadFlagsExitTwoWithOneLine(t *testing.T) {
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--election", "e", "--etcd-endpoints", "127.0.0.1:1", "--ttl", "1s")
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit %v, want code 2", err)
	}
	first, _, _ := strings.Cut(stderr.String(), "\n")
	if first != "sidecar: --ttl 1s is below etcd's minimum lease of 2s" {
		t.Errorf("first line %q", first)
	}
}

// The README's first command: three real sidecars on an embedded etcd, a
// measured handover and failover, exit 0, nothing left behind.
func TestDemoRunsAndCleansUp(t *testing.T) {
	tmp := t.TempDir()
	var out, stderr bytes.Buffer
	cmd := exec.Command(bin, "demo")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	for _, want := range []string{"graceful handover:", "crash failover:", "no poll saw two instances claim leadership at once"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	left, err := filepath.Glob(filepath.Join(tmp, "*"))
	if err != nil || len(left) != 0 {
		t.Errorf("demo left files behind: %v %v", left, err)
	}
	// No sidecar of the demo may outlive it.
	ps, _ := exec.Command("pgrep", "-f", bin+" --backend etcd --election demo").Output()
	if len(bytes.TrimSpace(ps)) != 0 {
		t.Errorf("demo left processes behind: %s", ps)
	}
}
