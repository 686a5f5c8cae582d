package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestReleaseBinaryIsLean keeps the shipped sidecar free of code it never
// runs: the embedded etcd server (the demo's, cmd/demo), the test helpers
// and the benchmark's libraries. Each would grow the binary and its memory.
func TestReleaseBinaryIsLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps listed only %d packages: %q", len(deps), out)
	}
	const module = "github.com/leader-elector/leader-elector/"
	forbidden := []string{
		"go.etcd.io/etcd/server/",
		module + "internal/testutil",
		module + "internal/freeport",
		module + "internal/etcdembed",
		module + "internal/demo",
		module + "internal/bench",
		"github.com/go-redsync/redsync",
		"github.com/bsm/redislock",
		"testing",
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/") {
				t.Errorf("./cmd/sidecar links %s", d)
			}
		}
	}
}
