package demo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/leader-elector/leader-elector/internal/testutil/repo"
)

// demoBin is ./cmd/demo built with the race detector by TestMain.
var demoBin string

func buildDemo(dir string) (string, error) {
	root, err := repo.Root()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "demo")
	cmd := exec.Command("go", "build", "-race", "-o", bin, "./cmd/demo")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/demo: %w\n%s", err, out)
	}
	return bin, nil
}

// TestDemoRunsAndCleansUp is the README's first command, `go run
// ./cmd/demo`: three real sidecars on an embedded etcd, a measured handover
// and failover, exit 0, nothing left behind.
func TestDemoRunsAndCleansUp(t *testing.T) {
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, demoBin)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	got := out.String()
	t.Logf("demo output:\n%s", got)

	handover := measured(t, got, `graceful handover: SIGTERM demo-\d -> demo-\d led after (\S+)`)
	failover := measured(t, got, `crash failover:    SIGKILL demo-\d -> demo-\d led after (\S+)`)
	// A resigning leader hands over at once; a crashed one is replaced only
	// when its lease expires, at least 2/3 of the 2 s TTL after its last
	// renewal.
	if handover >= DefaultTTL {
		t.Errorf("graceful handover took %v, not less than the TTL %v", handover, DefaultTTL)
	}
	if failover < time.Second || failover <= handover {
		t.Errorf("crash failover took %v (handover %v); a lease can't expire that fast", failover, handover)
	}
	if !strings.Contains(got, "no poll saw two instances claim leadership at once") {
		t.Error("a poll saw two leaders")
	}
	if !strings.Contains(got, "How to read the timeline") {
		t.Error("the output has no legend")
	}
	if n := len(pidsIn(got)); n != DefaultCandidates {
		t.Fatalf("found %d pids in the header, want %d", n, DefaultCandidates)
	}
	waitGone(t, demoBin, pidsIn(got))
	waitEmpty(t, tmp)
}

func measured(t *testing.T, out, pattern string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output lacks %q", pattern)
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("duration %q: %v", m[1], err)
	}
	return d
}

// pidsIn returns the sidecar pids the demo printed.
func pidsIn(out string) []int {
	var pids []int
	for _, m := range regexp.MustCompile(`\(pid (\d+)\)`).FindAllStringSubmatch(out, -1) {
		pid, _ := strconv.Atoi(m[1])
		if !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processesOf lists running processes whose program is exe, as
// "pid: command line".
func processesOf(t *testing.T, exe string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue // ended meanwhile, or a zombie
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if args[0] == exe {
			found = append(found, filepath.Base(filepath.Dir(p))+": "+strings.Join(args, " "))
		}
	}
	return found
}

// waitGone waits until no process runs exe and none of pids exists.
func waitGone(t *testing.T, exe string, pids []int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := processesOf(t, exe)
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, fmt.Sprintf("sidecar pid %d", pid))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left running: %v", left)
		}
		time.Sleep(50 * time.Millisecond) // polling for a condition with a deadline
	}
}

// alive reports whether pid runs. A zombie (dead, not yet reaped: an
// orphan's new parent may be slow to reap it, or never do) does not.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	rest := string(b[bytes.LastIndexByte(b, ')')+1:])
	f := strings.Fields(rest)
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// waitEmpty waits until dir is empty.
func waitEmpty(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries left in the temp dir, e.g. %s", len(left), left[0].Name())
		}
		time.Sleep(50 * time.Millisecond) // polling for a condition with a deadline
	}
}

// lines collects a process's output and signals when a line containing a
// wanted text appears.
type lines struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	done chan struct{}
}

func readLines(r io.Reader, want string) *lines {
	l := &lines{want: want, seen: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		sc := bufio.NewScanner(r)
		found := false
		for sc.Scan() {
			l.mu.Lock()
			l.buf.WriteString(sc.Text() + "\n")
			l.mu.Unlock()
			if !found && strings.Contains(sc.Text(), want) {
				found = true
				close(l.seen)
			}
		}
	}()
	return l
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startKeepRunning starts the demo with --keep-running through argv (a
// program and its arguments, the demo among them) and waits until every
// sidecar runs again after the script.
func startKeepRunning(t *testing.T, tmp string, argv ...string) (*exec.Cmd, *lines) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	// A pipe of our own, not StdoutPipe: Wait closes that one once argv[0]
	// exits, and the demo may outlive it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	out := readLines(r, "  etcd: http") // the last line of the hints
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		<-out.done
		r.Close()
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
	select {
	case <-out.seen:
	case <-out.done:
		t.Fatalf("the demo ended before it kept running:\n%s", out.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("the demo did not reach keep-running:\n%s", out.String())
	}
	return cmd, out
}

// TestKilledDemoLeavesNothing kills the demo with SIGKILL while everything
// runs: its sidecars must die and its temporary directory must go, though
// the demo itself can run no code.
func TestKilledDemoLeavesNothing(t *testing.T) {
	tmp := t.TempDir()
	cmd, out := startKeepRunning(t, tmp, demoBin, "--keep-running")
	pids := pidsIn(out.String())
	if len(pids) != 5 { // 3 at start, 2 started again
		t.Fatalf("found pids %v, want 5", pids)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 1 {
		t.Fatalf("temp dir holds %d entries while the demo runs, want its one directory", len(entries))
	}
	resignAsSuggested(t, out)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, demoBin, pids)
	waitEmpty(t, tmp)
}

// resignAsSuggested follows the demo's hint: POST /resign on the leader's
// control socket, then waits for the timeline to show another leader.
func resignAsSuggested(t *testing.T, out *lines) {
	t.Helper()
	m := regexp.MustCompile(`--unix-socket (\S+)<leader>\.sock -X POST http://localhost/resign`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the demo suggests no resign command:\n%s", out.String())
	}
	var leader string
	for _, u := range regexp.MustCompile(`curl -s (http://\S+/status)`).FindAllStringSubmatch(out.String(), -1) {
		st, err := fetchStatus(t.Context(), http.DefaultClient, strings.TrimSuffix(strings.TrimPrefix(u[1], "http://"), "/status"))
		if err == nil && st.IsLeader {
			leader = st.Identity
		}
	}
	if leader == "" {
		t.Fatal("no sidecar leads")
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", m[1]+leader+".sock")
	}}}
	defer client.CloseIdleConnections()
	before := strings.Count(out.String(), "\n")
	resp, err := client.Post("http://localhost/resign", "", nil)
	if err != nil {
		t.Fatalf("resign %s: %v", leader, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("resign %s: %s", leader, resp.Status)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		newLines := strings.SplitAfterN(out.String(), "\n", before+1)
		tail := newLines[len(newLines)-1]
		if m := regexp.MustCompile(`leader=(demo-\d) token`).FindAllStringSubmatch(tail, -1); len(m) > 0 && m[len(m)-1][1] != leader {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s resigned the timeline shows no other leader:\n%s", leader, tail)
		}
		time.Sleep(20 * time.Millisecond) // polling for a condition with a deadline
	}
}

// TestDemoStopsWhenItsParentDies stands in for `go run ./cmd/demo` killed
// with `kill <pid of go run>`: go run does not pass SIGTERM on to the demo.
func TestDemoStopsWhenItsParentDies(t *testing.T) {
	tmp := t.TempDir()
	// sh plays go run: it starts the demo and waits for it.
	cmd, out := startKeepRunning(t, tmp, lookPath(t, "sh"), "-c", `"$0" --keep-running & wait`, demoBin)
	pids := pidsIn(out.String())
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, demoBin, pids)
	waitEmpty(t, tmp)
	// The demo itself stopped cleanly, and said so.
	<-out.done
	if !strings.Contains(out.String(), "is gone; stopping") || !strings.Contains(out.String(), "Stopped the sidecars and etcd") {
		t.Errorf("the demo did not report a clean stop:\n%s", out.String())
	}
}

func TestDemoCommandLine(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(demoBin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}
	for _, tt := range []struct {
		args []string
		code int
		want string // in stdout for exit 0, else stderr
	}{
		{[]string{"--help"}, 0, "--keep-running"},
		{[]string{"-h"}, 0, "--candidates"},
		{[]string{"--ttl", "3s", "--help"}, 0, "--ttl"},
		{[]string{"sidecar", "--help"}, 0, "--etcd-endpoints"},
		{[]string{"sidecar", "version", "--help"}, 0, "Usage: sidecar version"},
		{[]string{"--version"}, 0, ""},
		{[]string{"--candidates", "1"}, 2, "--candidates 1"},
		{[]string{"--ttl", "1s"}, 2, "--ttl 1s"},
		{[]string{"--ttl", "2500ms"}, 2, "--ttl 2.5s"},
		{[]string{"--nope"}, 2, "unknown flag: --nope"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"janitor", "/tmp/not-a-demo-dir"}, 2, "not a demo directory"},
	} {
		code, stdout, stderr := run(tt.args...)
		got := stdout
		if tt.code != 0 {
			got = stderr
		}
		if code != tt.code || !strings.Contains(got, tt.want) || (tt.code == 0 && (stderr != "" || stdout == "")) {
			t.Errorf("demo %q: exit %d, stdout %q, stderr %q; want exit %d and %q", tt.args, code, stdout, stderr, tt.code, tt.want)
		}
	}
}

// The README's table of demo flags stays complete.
func TestREADMEDocumentsEveryDemoFlag(t *testing.T) {
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var f flags
	newFlagSet(&f).VisitAll(func(fl *pflag.Flag) {
		if fl.Name == "version" {
			return
		}
		if !bytes.Contains(readme, []byte("| `--"+fl.Name+"` | `"+fl.DefValue+"` |")) && !bytes.Contains(readme, []byte("| `--"+fl.Name+"` | off |")) {
			t.Errorf("README's demo flag table lacks --%s (default %s)", fl.Name, fl.DefValue)
		}
	})
}
