package demo

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The janitor cleans up after a demo that could not: a process killed with
// SIGKILL runs no code, so it can neither stop its sidecars nor remove its
// temporary directory. The demo therefore starts, before anything else, a
// small process of its own binary (`demo janitor DIR`) in its own process
// group, connected by a pipe on the janitor's stdin. The demo writes each
// sidecar's pid on the pipe when it starts it and again when it has reaped
// it. When the pipe closes, because the demo ended normally or because the
// kernel closed it when the demo died, the janitor kills the process group
// of every sidecar still listed and removes DIR, then exits. After a normal
// end there is nothing left to do. On Linux the sidecars also carry a
// parent-death signal (SIGKILL), so they die with the demo even if the
// janitor is gone too. A directory left behind then (janitor and demo both
// killed) is removed by the next demo run: each directory records its
// demo's pid, and a run removes the directories whose demo is gone.

// dirPrefix starts the name of every demo temporary directory; the janitor
// removes nothing else.
const dirPrefix = "leader-elector-demo-"

// ownerFile in a demo directory holds the pid of the demo that made it.
const ownerFile = "demo.pid"

// claimDir records this process as dir's owner.
func claimDir(dir string) error {
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
}

// sweepStale removes the demo directories in parent, made by this user,
// whose demo process no longer exists, and returns their paths. A directory
// without an owner file (its demo is just starting) or whose pid is in use
// is kept: when in doubt, leave it.
func sweepStale(parent string) []string {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), dirPrefix) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		if fi, err := os.Stat(dir); err != nil || !ownedByMe(fi) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		if os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}

func ownedByMe(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}

// janitorWait bounds how long a demo that ends normally waits for its
// janitor to exit.
const janitorWait = 10 * time.Second

// janitor is the demo's side of the janitor process.
type janitor struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	pipe io.WriteCloser
	done chan struct{}
}

// startJanitor runs exe as `exe janitor dir`.
func startJanitor(exe, dir string) (*janitor, error) {
	cmd := exec.Command(exe, "janitor", dir)
	pipe, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("janitor: %w", err)
	}
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	// Its own process group: a Ctrl-C in the terminal, or a signal to the
	// demo's group, must not stop it before the demo is gone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the janitor %s: %w", exe, err)
	}
	j := &janitor{cmd: cmd, pipe: pipe, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(j.done)
	}()
	return j, nil
}

// started and reaped tell the janitor about a sidecar. Errors are ignored:
// a janitor that is gone can do nothing either way.
func (j *janitor) started(pid int) { j.send("start", pid) }
func (j *janitor) reaped(pid int)  { j.send("exit", pid) }

func (j *janitor) send(what string, pid int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, _ = fmt.Fprintf(j.pipe, "%s %d\n", what, pid)
}

// close ends the janitor's watch and waits for it to exit.
func (j *janitor) close() {
	j.mu.Lock()
	_ = j.pipe.Close()
	j.mu.Unlock()
	select {
	case <-j.done:
	case <-time.After(janitorWait):
		_ = j.cmd.Process.Kill()
		<-j.done
	}
}

// runJanitor is `demo janitor DIR`: it reads "start PID" and "exit PID"
// lines from in until it ends, then kills the process group of every pid
// started and not reaped, and removes dir.
func runJanitor(args []string, in io.Reader, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "demo janitor: want one argument, the demo's temporary directory")
		return exitUsage
	}
	dir := args[0]
	if !strings.HasPrefix(filepath.Base(dir), dirPrefix) || !filepath.IsAbs(dir) {
		fmt.Fprintf(stderr, "demo janitor: %q is not a demo directory (an absolute path whose name starts with %s)\n", dir, dirPrefix)
		return exitUsage
	}
	// Outlive a signal sent to the demo or its terminal: the job is to act
	// once the demo is gone, and it ends when the pipe closes.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)

	live := map[int]bool{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		what, n, ok := strings.Cut(sc.Text(), " ")
		pid, err := strconv.Atoi(n)
		if !ok || err != nil || pid <= 1 {
			continue
		}
		switch what {
		case "start":
			live[pid] = true
		case "exit":
			delete(live, pid)
		}
	}
	code := exitOK
	for pid := range live {
		// Each sidecar leads its own process group (Setpgid).
		if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			fmt.Fprintf(stderr, "demo janitor: kill sidecar %d: %v\n", pid, err)
			code = exitError
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(stderr, "demo janitor: %v\n", err)
		code = exitError
	}
	return code
}
