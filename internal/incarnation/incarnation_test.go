package incarnation

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRecordSurvivesForTheNextProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "incarnation")
	f, prev, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if prev != nil {
		t.Fatalf("new file: previous record %+v, want none", prev)
	}
	want := Record{Identity: "pod-a", PodUID: "uid-1", Backend: "etcd", Election: "e", Handle: "694d7e1f2a3b4c5d", PID: 42}
	// A longer record first, so the second write must truncate.
	if err := f.Write(Record{Identity: "pod-a", Handle: strings.Repeat("x", 200)}); err != nil {
		t.Fatal(err)
	}
	if err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f2, got, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if got == nil || *got != want {
		t.Fatalf("previous record %+v, want %+v", got, want)
	}
	if !got.Same(Record{Identity: "pod-a", PodUID: "uid-1", Backend: "etcd", Election: "e"}) {
		t.Error("Same is false for the same candidate")
	}
	for _, o := range []Record{
		{Identity: "pod-b", PodUID: "uid-1", Backend: "etcd", Election: "e"},
		{Identity: "pod-a", PodUID: "uid-2", Backend: "etcd", Election: "e"},
		{Identity: "pod-a", PodUID: "uid-1", Backend: "redis", Election: "e"},
		{Identity: "pod-a", PodUID: "uid-1", Backend: "etcd", Election: "f"},
	} {
		if got.Same(o) {
			t.Errorf("Same is true for %+v", o)
		}
	}
}

// A second open while the first holder lives is refused, naming the holder.
func TestSecondHolderIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "incarnation")
	f, _, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Write(Record{Identity: "pod-a", Handle: "1", PID: 4242}); err != nil {
		t.Fatal(err)
	}
	_, _, err = Open(path)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "4242") {
		t.Fatalf("second Open = %v, want ErrBusy naming process 4242", err)
	}
	f.Close()
	f3, _, err := Open(path)
	if err != nil {
		t.Fatalf("Open after the holder closed: %v", err)
	}
	f3.Close()
}

// The lock dies with its process, however it dies.
func TestLockIsReleasedWhenTheHolderIsKilled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "incarnation")
	// A child process takes the lock with flock(1), says so, and becomes
	// sleep(1), which keeps the locked descriptor until it is killed. It
	// says so only after flock(1), a process of its own that shares the
	// descriptor, has exited: killing the holder must leave nobody else
	// holding the lock (polling Open for ErrBusy raced with that exit).
	holder := exec.Command("sh", "-c", `exec 9>"$1" && flock --exclusive 9 && echo locked && exec sleep 600`, "sh", path)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("the holder did not report the lock: %q, %v", line, err)
	}
	if _, _, err := Open(path); !errors.Is(err, ErrBusy) {
		t.Fatalf("Open while the holder lives = %v, want ErrBusy", err)
	}
	if err := holder.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait()
	f, _, err := Open(path)
	if err != nil {
		t.Fatalf("Open after the holder was killed: %v", err)
	}
	f.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

func TestUnreadableRecordIsIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "incarnation")
	if err := os.WriteFile(path, []byte(`{"identity":"pod-a","handle":`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, prev, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if prev != nil {
		t.Errorf("truncated record read as %+v, want none", prev)
	}
}
