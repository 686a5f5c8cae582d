package e2e

import (
	"bytes"
	"errors"
	"os/exec"
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
