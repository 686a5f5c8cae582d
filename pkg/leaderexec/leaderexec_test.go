package leaderexec

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leader-elector/leader-elector/pkg/election"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// source is a status stream the test drives (the engine's own tests cover
// the engine; here the commands are real processes).
type source struct {
	mu      sync.Mutex
	st      election.Status
	changed chan struct{}
}

func newSource() *source {
	return &source{st: election.Status{Identity: "pod-a", Election: "jobs", Backend: "etcd"}, changed: make(chan struct{})}
}

func (s *source) Status() (election.Status, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st, s.changed
}

func (s *source) lead(token int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.IsLeader, s.st.FencingToken = token > 0, token
	close(s.changed)
	s.changed = make(chan struct{})
}

// harness runs a Runner on a source until the test ends.
type harness struct {
	r   *Runner
	src *source
	dir string
	out *lockedBuffer // the command's stdout and stderr, for failure messages
}

func run(t *testing.T, script string, grace time.Duration) *harness {
	t.Helper()
	dir := t.TempDir()
	out := &lockedBuffer{}
	r, err := New(Options{Argv: []string{"sh", "-c", script}, Grace: grace,
		Env: append(os.Environ(), "DIR="+dir), Stdout: out, Stderr: out}, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := newSource()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, src) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("Run did not return")
		}
	})
	return &harness{r: r, src: src, dir: dir, out: out}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// waitFile waits until name in dir exists and holds a line, and returns it.
func (h *harness) waitFile(t *testing.T, name string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(h.dir, name))
		if err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not written; commands started: %d; their output:\n%s", name, h.r.Started(), h.out.String())
		}
		time.Sleep(5 * time.Millisecond) // polling a file written by another process
	}
}

// stepDown ends the term and returns how long BeforeRelease then waited.
func (h *harness) stepDown(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	h.src.lead(0)
	released := make(chan struct{})
	go func() { h.r.BeforeRelease(); close(released) }()
	select {
	case <-released:
	case <-time.After(20 * time.Second):
		t.Fatal("BeforeRelease did not return")
	}
	return time.Since(start)
}

// alive reports whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func TestCommandGetsTokenAndIdentity(t *testing.T) {
	h := run(t, `echo "$LEADER_ELECTOR_FENCING_TOKEN $LEADER_ELECTOR_IDENTITY $LEADER_ELECTOR_ELECTION $LEADER_ELECTOR_BACKEND" > $DIR/env; exec sleep 1000`, time.Second)
	h.src.lead(42)
	if got := h.waitFile(t, "env"); got != "42 pod-a jobs etcd" {
		t.Fatalf("environment %q, want token 42, identity pod-a, election jobs, backend etcd", got)
	}
	h.stepDown(t)
	if n := h.r.Started(); n != 1 {
		t.Errorf("started %d commands, want 1", n)
	}
}

func TestStepDownStopsTheCommandAndItsChildrenBeforeRelease(t *testing.T) {
	h := run(t, `sleep 1000 & echo $! > $DIR/child; trap 'echo term > $DIR/term; kill $!; exit 0' TERM; echo $$ > $DIR/pid; wait`, 10*time.Second)
	h.src.lead(1)
	pid, _ := strconv.Atoi(h.waitFile(t, "pid"))
	child, _ := strconv.Atoi(h.waitFile(t, "child"))
	if !alive(pid) || !alive(child) {
		t.Fatal("the command or its child is not running while leading")
	}
	if waited := h.stepDown(t); waited > 5*time.Second {
		t.Errorf("BeforeRelease waited %v for a command that exits on SIGTERM", waited)
	}
	if alive(pid) || alive(child) {
		t.Errorf("after BeforeRelease: command alive %v, child alive %v; want both gone", alive(pid), alive(child))
	}
	if got := h.waitFile(t, "term"); got != "term" {
		t.Errorf("the command did not see SIGTERM")
	}
	select {
	case e := <-h.r.Exits():
		t.Errorf("a command stopped at step-down was reported as exiting on its own: %+v", e)
	default:
	}
}

func TestCommandIgnoringSIGTERMIsKilledAfterTheGracePeriod(t *testing.T) {
	const grace = 300 * time.Millisecond
	h := run(t, `trap '' TERM; sh -c 'trap "" TERM; sleep 1000' & echo $! > $DIR/child; echo $$ > $DIR/pid; while :; do sleep 1; done`, grace)
	h.src.lead(1)
	pid, _ := strconv.Atoi(h.waitFile(t, "pid"))
	child, _ := strconv.Atoi(h.waitFile(t, "child"))
	waited := h.stepDown(t)
	if waited < grace {
		t.Errorf("released after %v, before the grace period %v ended", waited, grace)
	}
	if alive(pid) || alive(child) {
		t.Errorf("after the grace period: command alive %v, child alive %v; want both killed", alive(pid), alive(child))
	}
}

func TestCommandExitingOnItsOwnIsReported(t *testing.T) {
	h := run(t, `exit 3`, time.Second)
	h.src.lead(8)
	select {
	case e := <-h.r.Exits():
		if e.Code != 3 || e.Token != 8 {
			t.Errorf("exit %+v, want code 3 in term 8", e)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit reported")
	}
	// It is not restarted within the same term.
	h.r.BeforeRelease()
	if n := h.r.Started(); n != 1 {
		t.Errorf("started %d times in one term, want 1", n)
	}
	// A new term starts it again.
	h.src.lead(0)
	h.src.lead(9)
	select {
	case e := <-h.r.Exits():
		if e.Token != 9 {
			t.Errorf("exit %+v, want term 9", e)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit reported for the second term")
	}
}

func TestCommandKilledBySignalReports128PlusN(t *testing.T) {
	h := run(t, `kill -KILL $$`, time.Second)
	h.src.lead(1)
	select {
	case e := <-h.r.Exits():
		if e.Code != 128+9 {
			t.Errorf("code %d, want 137", e.Code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit reported")
	}
}

func TestMissingCommandIsReportedAs127(t *testing.T) {
	r, err := New(Options{Argv: []string{filepath.Join(t.TempDir(), "missing")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := newSource()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, src) }()
	defer func() { cancel(); <-done }()
	src.lead(1)
	select {
	case e := <-r.Exits():
		if e.Code != 127 || e.Err == nil {
			t.Errorf("exit %+v, want 127 with an error", e)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit reported")
	}
}

func TestSignalReachesTheCommand(t *testing.T) {
	// A test binary started with SIGHUP ignored (under nohup, as a
	// background CI job may be) passes that on to the command, and a
	// non-interactive sh cannot trap a signal ignored at its start. The
	// sidecar's exec wrapper handles SIGHUP (it forwards it), which gives the
	// command the default disposition; do as it does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	h := run(t, `trap 'echo hup > $DIR/hup' HUP; echo $$ > $DIR/pid; while :; do sleep 0.05; done`, time.Second)
	h.src.lead(1)
	h.waitFile(t, "pid")
	h.r.Signal(1) // SIGHUP
	if got := h.waitFile(t, "hup"); got != "hup" {
		t.Errorf("got %q", got)
	}
	h.stepDown(t)
}

func TestBeforeReleaseWithNothingRunningReturnsAtOnce(t *testing.T) {
	r, err := New(Options{Argv: []string{"true"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.BeforeRelease(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("BeforeRelease blocked with no command")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := New(Options{}, nil); err == nil || !strings.Contains(err.Error(), "Argv") {
		t.Errorf("no command: %v", err)
	}
	if _, err := New(Options{Argv: []string{"x"}, Grace: -1}, nil); err == nil || !strings.Contains(err.Error(), "Grace") {
		t.Errorf("negative grace: %v", err)
	}
}
