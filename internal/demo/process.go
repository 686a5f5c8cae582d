package demo

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// child is one sidecar process.
type child struct {
	id      string
	addr    string // host:port of its HTTP API
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has been waited for
	err     error         // Wait's result, set before done is closed
}

// startChild starts the command line cmdline; its output goes to logPath.
// The janitor learns its pid once it runs and again once it is reaped.
func startChild(id, addr string, cmdline []string, logPath string, jan *janitor) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("log file for %s: %w", id, err)
	}
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	c := &child{id: id, addr: addr, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	jan.started(cmd.Process.Pid)
	go func() {
		c.err = cmd.Wait()
		jan.reaped(cmd.Process.Pid)
		_ = logf.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// signal sends sig unless the process is gone already.
func (c *child) signal(sig syscall.Signal) error {
	if c.exited() {
		return nil
	}
	if err := c.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", c.id, err)
	}
	return nil
}

// stop asks the process to shut down with SIGTERM and kills it if it has
// not exited within grace. It returns once the process is gone.
func (c *child) stop(grace time.Duration) {
	_ = c.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		_ = c.signal(syscall.SIGKILL)
		<-c.done
	}
}

// logTail returns the last lines of the process's output, for errors.
func (c *child) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(string(bytes.TrimSpace(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "\n")
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago; the child binds it, and a clash is caught when it exits early.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a free port: %w", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr, nil
}

func logPath(dir, id string, attempt int) string {
	return filepath.Join(dir, fmt.Sprintf("%s.%d.log", id, attempt))
}
