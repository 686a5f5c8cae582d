// Package sidecartest builds the sidecar binary and runs it as real
// processes for end-to-end tests.
package sidecartest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/leader-elector/leader-elector/internal/testutil/repo"
	"github.com/leader-elector/leader-elector/pkg/history"
)

// Build compiles ./cmd/sidecar with the race detector into dir and returns
// the binary's path. Call it from TestMain.
func Build(dir string) (string, error) {
	root, err := repo.Root()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sidecar")
	cmd := exec.Command("go", "build", "-race", "-o", bin, "./cmd/sidecar")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// BuildPackage compiles the main package pkg (a path relative to the
// repository root, e.g. a test's helper command) with the race detector
// into out.
func BuildPackage(pkg, out string) error {
	root, err := repo.Root()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-race", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// Status is the sidecar's GET /status body.
type Status struct {
	Name         string  `json:"name"`
	Identity     string  `json:"identity"`
	IsLeader     bool    `json:"is_leader"`
	FencingToken int64   `json:"fencing_token"`
	Election     string  `json:"election"`
	Backend      string  `json:"backend"`
	Since        string  `json:"since"`
	TTLSeconds   float64 `json:"ttl_seconds"`
	Ready        bool    `json:"ready"`
	Caveats      string  `json:"caveats"`
	State        string  `json:"state"`
	Problem      string  `json:"problem"`
	AppHealth    string  `json:"app_health"`
	NotStanding  string  `json:"not_standing"`
	Switchover   bool    `json:"switchover"`
	Generation   int64   `json:"generation"`
	// Degraded names the sidecar's outputs that lost data, one sentence
	// each ("history: 0 dropped, 3 failed (last error: ...)").
	Degraded []string `json:"degraded"`
}

// Process is a running sidecar.
type Process struct {
	ID      string
	URL     string // base URL of its HTTP API
	History string // path of its history file

	t      testing.TB
	cmd    *exec.Cmd
	done   chan struct{}
	exit   int
	exited int64 // CLOCK_MONOTONIC ns when the exit was noticed
	mu     sync.Mutex
	stderr bytes.Buffer
	// logGate is closed while the log is read; StallLog replaces it with an
	// open one, so the process's stderr pipe fills and stays full.
	logGate chan struct{}
	// pipe is the history pipe, with Options.HistoryPipe.
	pipe *historyPipe
}

// Options for Start.
type Options struct {
	// Subcommand, if set, comes first ("exec"); Args then end with
	// "-- CMD ...".
	Subcommand string
	ID         string
	Args       []string // besides --id, --http, --history-file and logging
	Env        []string // extra environment, KEY=VALUE
	// HistoryPipe gives the process a named pipe as its --history-file,
	// copied to History by the test, so the history can be stalled
	// (StallHistory) or made to fail (BreakHistory) while it runs.
	HistoryPipe bool
}

// Start runs the binary with opts and waits until its HTTP API listens. The
// process is killed when the test ends, and its log is printed if the test failed.
func Start(t testing.TB, bin string, opts Options) *Process {
	t.Helper()
	p := &Process{ID: opts.ID, t: t, done: make(chan struct{}), History: filepath.Join(t.TempDir(), "history.jsonl"),
		logGate: make(chan struct{})}
	close(p.logGate)
	historyArg := p.History
	if opts.HistoryPipe {
		pipe, err := newHistoryPipe(p.History)
		if err != nil {
			t.Fatal(err)
		}
		p.pipe = pipe
		historyArg = pipe.path
	}
	var args []string
	if opts.Subcommand != "" {
		args = append(args, opts.Subcommand)
	}
	args = append(args, "--id", opts.ID, "--http", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug",
		"--history-file", historyArg)
	args = append(args, opts.Args...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), opts.Env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	// The smallest pipe (one page) makes StallLog fill it within a few log
	// lines, as a log collector that stops reading would after a while.
	if f, ok := stderr.(*os.File); ok {
		_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, os.Getpagesize())
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go p.readLog(stderr, addr)
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.ResumeLog()
		<-p.done
		if p.pipe != nil {
			p.pipe.close()
		}
		// The binary is built with -race; a report means a real race.
		if strings.Contains(p.Log(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race", p.ID)
		}
		if t.Failed() {
			t.Logf("log of %s:\n%s", p.ID, p.Log())
		}
	})
	select {
	case a := <-addr:
		p.URL = "http://" + a
	case <-p.done:
		t.Fatalf("%s exited with %d before listening:\n%s", p.ID, p.exit, p.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start listening:\n%s", p.ID, p.Log())
	}
	return p
}

// readLog keeps the log and reports the HTTP address once it is logged.
func (p *Process) readLog(r io.Reader, addr chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for {
		p.mu.Lock()
		gate := p.logGate
		p.mu.Unlock()
		<-gate
		if !sc.Scan() {
			break
		}
		line := sc.Bytes()
		p.mu.Lock()
		p.stderr.Write(line)
		p.stderr.WriteByte('\n')
		p.mu.Unlock()
		var rec struct {
			Msg      string `json:"msg"`
			Addr     string `json:"addr"`
			Listener string `json:"listener"`
		}
		// The pod-network listener, not a control listener.
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "http api listening" && rec.Listener != "control" {
			select {
			case addr <- rec.Addr:
			default:
			}
		}
	}
	err := p.cmd.Wait()
	p.exited = monotonicNow()
	if p.pipe != nil {
		p.pipe.exited()
	}
	p.exit = p.cmd.ProcessState.ExitCode()
	if err != nil && p.exit == 0 {
		p.exit = -1
	}
	close(p.done)
}

// Metric returns the value of the sample of GET /metrics whose name and
// labels read exactly series (e.g. `leader_elector_app_healthy` or
// `leader_elector_stepped_down_total{reason="unhealthy"}`), and whether it
// was found.
func (p *Process) Metric(ctx context.Context, series string) (float64, bool) {
	code, body, err := p.Get(ctx, "/metrics")
	if err != nil || code != http.StatusOK {
		return 0, false
	}
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || name != series {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(value, &v); err == nil {
			return v, true
		}
	}
	return 0, false
}

// StallLog stops reading the process's stderr, as a log collector that
// hangs would: once the pipe is full, every write to it blocks (or is
// dropped by a sidecar that never waits for its log).
func (p *Process) StallLog() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.logGate:
		p.logGate = make(chan struct{})
	default: // already stalled
	}
}

// FillLog fills the process's stderr pipe (with a stalled log, it stays
// full), by writing filler lines to the pipe through /proc until it would
// block. The filler shows up in Log once the log is read again. It fails if
// the process has exited.
func (p *Process) FillLog() error {
	// Raw system calls: an *os.File would wait for room instead of
	// reporting that the pipe is full.
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/fd/2", p.PID()), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the stderr of %s: %w", p.ID, err)
	}
	defer unix.Close(fd)
	line := []byte(strings.Repeat("#", 127) + "\n")
	for {
		if _, err := unix.Write(fd, line); err != nil {
			if errors.Is(err, unix.EAGAIN) {
				return nil
			}
			return fmt.Errorf("filling the stderr of %s: %w", p.ID, err)
		}
	}
}

// ResumeLog reads the process's stderr again.
func (p *Process) ResumeLog() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.logGate:
	default:
		close(p.logGate)
	}
}

// Log returns what the process logged so far.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.ID, err)
	}
}

// Wait waits for the process to exit and returns its exit code (-1 when killed).
func (p *Process) Wait(timeout time.Duration) int {
	p.t.Helper()
	// The exit is seen only once stderr has been read to its end, so a
	// stalled log (StallLog) is read again: a process that is gone has no
	// writer left to hold up.
	p.ResumeLog()
	select {
	case <-p.done:
		return p.exit
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v", p.ID, timeout)
		return 0
	}
}

// ExitedAt returns when the process's exit was noticed (CLOCK_MONOTONIC
// ns), or 0 while it runs.
func (p *Process) ExitedAt() int64 {
	if !p.Exited() {
		return 0
	}
	return p.exited
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

var client = &http.Client{Timeout: 2 * time.Second}

// Get fetches path and returns the status code and body.
func (p *Process) Get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// Status fetches GET /status.
func (p *Process) Status(ctx context.Context) (Status, error) {
	code, body, err := p.Get(ctx, "/status")
	if err != nil {
		return Status{}, err
	}
	if code != http.StatusOK {
		return Status{}, fmt.Errorf("GET /status: %d %s", code, body)
	}
	var s Status
	err = json.Unmarshal(body, &s)
	return s, err
}

// WaitStatus polls /status until ok holds, and fails the test after timeout.
func (p *Process) WaitStatus(what string, timeout time.Duration, ok func(Status) bool) Status {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	var last Status
	var lastErr error
	for time.Now().Before(deadline) {
		s, err := p.Status(p.t.Context())
		if err == nil && ok(s) {
			return s
		}
		last, lastErr = s, err
		tick := time.NewTimer(10 * time.Millisecond)
		select {
		case <-tick.C:
		case <-p.done:
			p.t.Fatalf("%s exited while waiting for %s", p.ID, what)
		}
	}
	p.t.Fatalf("%s: timed out after %v waiting for %s; last status %+v, error %v", p.ID, timeout, what, last, lastErr)
	return Status{}
}

// Intervals returns the process's leadership intervals. An interval still
// open when the process died (SIGKILL) ends when its exit was noticed, which
// is no earlier than the death.
func (p *Process) Intervals() []history.Interval {
	p.t.Helper()
	iv := history.Intervals(p.ReadHistory())
	if n := len(iv); n > 0 && iv[n-1].End == 0 && p.Exited() {
		iv[n-1].End = p.exited
	}
	return iv
}

func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// ReadHistory returns the status changes the process recorded. With a
// history pipe it first copies what the pipe holds.
func (p *Process) ReadHistory() []history.Entry {
	p.t.Helper()
	if p.pipe != nil {
		p.pipe.drain()
	}
	f, err := os.Open(p.History)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	h, err := history.Read(f)
	if err != nil {
		p.t.Fatalf("history of %s: %v", p.ID, err)
	}
	return h
}

// Leader returns the one process among ps whose status says it leads, and
// fails if more than one does when asked twice.
func Leader(t testing.TB, ps []*Process) *Process {
	t.Helper()
	claiming := leaders(t, ps)
	if len(claiming) > 1 {
		// The processes are asked one after the other, so a handover that
		// happens between two answers shows the old and the new leader
		// both claiming. Ask the claimants again: a real overlap is still
		// there (and the histories the tests check prove it either way).
		claiming = leaders(t, claiming)
	}
	if len(claiming) > 1 {
		t.Fatalf("two leaders: %s and %s", claiming[0].ID, claiming[1].ID)
	}
	if len(claiming) == 0 {
		return nil
	}
	return claiming[0]
}

// leaders returns the processes that claim leadership, asked in order.
func leaders(t testing.TB, ps []*Process) []*Process {
	var out []*Process
	for _, p := range ps {
		if p.Exited() {
			continue
		}
		if s, err := p.Status(t.Context()); err == nil && s.IsLeader {
			out = append(out, p)
		}
	}
	return out
}

// Logged reports whether the process logged a line with msg.
func (p *Process) Logged(msg string) bool {
	return strings.Contains(p.Log(), `"msg":"`+msg+`"`)
}

// PID returns the process's id (to read its /proc entries).
func (p *Process) PID() int { return p.cmd.Process.Pid }
