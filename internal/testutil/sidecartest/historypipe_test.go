package sidecartest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		tick := time.NewTimer(5 * time.Millisecond)
		<-tick.C
	}
}

// The pipe as a sidecar sees it: writes are copied; stalled, they block
// once the pipe is full and are copied after the resume; broken, they fail
// with EPIPE and are lost; mended, they are copied again, and the break is
// recorded at the entries copied before it.
func TestHistoryPipe(t *testing.T) {
	defer goleak.VerifyNone(t)
	copyPath := filepath.Join(t.TempDir(), "history.jsonl")
	h, err := newHistoryPipe(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	// The sidecar's end: opened as the sidecar does (blocking), made
	// non-blocking here so a full pipe shows as EAGAIN instead of a hang.
	f, err := os.OpenFile(h.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	defer f.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	write := func(s string) error { _, err := unix.Write(fd, []byte(s+"\n")); return err }
	copied := func() string {
		h.drain()
		b, err := os.ReadFile(copyPath)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	if err := write("one"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first line to be copied", func() bool { return copied() == "one\n" })

	h.setStalled(true)
	line := strings.Repeat("x", 99)
	n := 0
	for {
		err := write(line)
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n > 1<<20 {
			t.Fatal("a stalled pipe never filled")
		}
	}
	if got := copied(); got != "one\n" {
		t.Fatalf("copied while stalled: %d bytes", len(got))
	}
	h.setStalled(false)
	waitFor(t, "the stalled lines to be copied", func() bool { return strings.Count(copied(), "\n") == 1+n })

	h.breakPipe()
	if err := write("lost"); !errors.Is(err, unix.EPIPE) {
		t.Fatalf("a write to a broken history: %v, want EPIPE", err)
	}
	if err := h.mend(); err != nil {
		t.Fatal(err)
	}
	if err := write("after"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the line after the mend", func() bool { return strings.HasSuffix(copied(), line+"\nafter\n") })
	if got := copied(); strings.Contains(got, "lost") {
		t.Fatal("a line written while broken was copied")
	}
	if b := h.breakLines(); len(b) != 1 || b[0] != 1+n {
		t.Fatalf("breaks at %v, want [%d]", b, 1+n)
	}

	// A process that exits while its history is stalled lost what it held:
	// a break at the end of what reached the pipe, once that is copied.
	h.setStalled(true)
	if err := write("last"); err != nil {
		t.Fatal(err)
	}
	h.exited()
	h.setStalled(false)
	waitFor(t, "the last line", func() bool { return strings.HasSuffix(copied(), "after\nlast\n") })
	if b := h.breakLines(); len(b) != 2 || b[1] != 1+n+2 {
		t.Fatalf("breaks at %v, want [%d %d]", b, 1+n, 1+n+2)
	}
}
