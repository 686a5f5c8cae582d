package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The benchmark is its own module, below the main one: it must find the
// main module's root (for go build ./cmd/sidecar, bin/ and docs/), not its
// own go.mod.
func TestRepoRootIsTheMainModule(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"cmd/sidecar", "internal/bench/go.mod", "docs/benchmarks.md"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("root %s: %v", root, err)
		}
	}
}
