package sidecartest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// historyPipe is a named pipe a sidecar writes its history to, and a
// goroutine that copies it to a regular file the test reads. The test holds
// a write end of its own, so the copier never sees end-of-file while the
// sidecar is not (yet) writing; reads are non-blocking system calls under
// mu, so drain can copy everything the pipe holds.
type historyPipe struct {
	path string // the named pipe

	// pollMu is held by the copier while it polls the read end, and by
	// breakPipe around closing it: a poll in flight holds the file open in
	// the kernel, so a close during it would leave the pipe a reader for up
	// to the poll's timeout and the sidecar's next write would succeed
	// (the clean-clone CI failure of TestHistoryPipe). Taken before mu.
	pollMu  sync.Mutex
	mu      sync.Mutex
	readFD  int // -1 while broken
	writeFD int // the test's own write end
	out     *os.File
	lines   int  // complete lines copied so far
	stalled bool // stop reading
	// breaks are the line counts at which the pipe was broken (see
	// Process.BreakHistory).
	breaks []int
	// lostAtExit: the process exited while the pipe was stalled, so the
	// entries it still held in memory never reached the pipe.
	lostAtExit bool
	done       chan struct{}
	wg         sync.WaitGroup
}

// pipeSize is the pipe's capacity: one page, so a stall blocks the
// sidecar's history writer after a few entries, as a stalled volume would.
var pipeSize = os.Getpagesize()

func newHistoryPipe(copyPath string) (*historyPipe, error) {
	path := copyPath + ".fifo"
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("mkfifo %s: %w", path, err)
	}
	out, err := os.Create(copyPath)
	if err != nil {
		return nil, err
	}
	h := &historyPipe{path: path, out: out, done: make(chan struct{})}
	// The read end first: opening a write end of a pipe nobody reads fails
	// (non-blocking) or waits (blocking, as the sidecar opens it).
	if h.readFD, err = h.openRead(); err != nil {
		out.Close()
		return nil, err
	}
	if h.writeFD, err = unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err != nil {
		unix.Close(h.readFD)
		out.Close()
		return nil, fmt.Errorf("open %s for writing: %w", path, err)
	}
	h.wg.Go(h.copy)
	return h, nil
}

func (h *historyPipe) openRead() (int, error) {
	fd, err := unix.Open(h.path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s for reading: %w", h.path, err)
	}
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, pipeSize)
	return fd, nil
}

// copy copies the pipe to the file until close.
func (h *historyPipe) copy() {
	for {
		select {
		case <-h.done:
			return
		default:
		}
		h.mu.Lock()
		fd, stalled := h.readFD, h.stalled
		if fd >= 0 && !stalled {
			h.readLocked()
		}
		h.mu.Unlock()
		if fd < 0 || stalled {
			// Nothing to read from: wait for the test to mend or resume.
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-h.done:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		// Wait until there is something to read (or a short while, to see
		// a stall, a break or close). The test's own write end keeps POLLHUP
		// away.
		h.pollMu.Lock()
		h.mu.Lock()
		fd = h.readFD // a break may have closed it since
		h.mu.Unlock()
		if fd >= 0 {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			_, _ = unix.Poll(fds, 10)
		}
		h.pollMu.Unlock()
	}
}

// readLocked copies everything the pipe holds now. mu must be held.
func (h *historyPipe) readLocked() {
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(h.readFD, buf)
		if n > 0 {
			_, _ = h.out.Write(buf[:n])
			h.lines += bytes.Count(buf[:n], []byte{'\n'})
		}
		if err != nil && errors.Is(err, unix.EINTR) {
			continue
		}
		if n <= 0 || err != nil {
			return
		}
	}
}

// drain copies what the pipe holds now, unless it is stalled or broken.
func (h *historyPipe) drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.readFD >= 0 && !h.stalled {
		h.readLocked()
	}
}

func (h *historyPipe) setStalled(stalled bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stalled = stalled
}

// breakPipe copies what the pipe holds, then closes the only read end: the
// sidecar's writes fail with EPIPE from then on.
func (h *historyPipe) breakPipe() {
	h.pollMu.Lock()
	defer h.pollMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.readFD < 0 {
		return
	}
	h.readLocked()
	unix.Close(h.readFD)
	h.readFD = -1
	h.breaks = append(h.breaks, h.lines)
}

// mend opens a read end again: the pipe, still open for writing by the
// sidecar, takes writes again.
func (h *historyPipe) mend() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.readFD >= 0 {
		return nil
	}
	fd, err := h.openRead()
	if err != nil {
		return err
	}
	h.readFD = fd
	return nil
}

// exited is called when the process has exited.
func (h *historyPipe) exited() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stalled {
		h.lostAtExit = true
	}
}

// breakLines returns the breaks, and for a process that exited while the
// pipe was stalled, one at the end of what reached the pipe (copied once
// the stall ends).
func (h *historyPipe) breakLines() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := append([]int(nil), h.breaks...)
	if h.lostAtExit && !h.stalled {
		out = append(out, h.lines)
	}
	return out
}

// close copies what is left and releases everything.
func (h *historyPipe) close() {
	close(h.done)
	h.wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.readFD >= 0 {
		h.stalled = false
		h.readLocked()
		unix.Close(h.readFD)
		h.readFD = -1
	}
	unix.Close(h.writeFD)
	h.out.Close()
}

// StallHistory stops copying the process's history pipe, as a volume that
// stalls: once the pipe is full, the sidecar's history writes block.
// It needs Options.HistoryPipe.
func (p *Process) StallHistory() { p.needPipe().setStalled(true) }

// ResumeHistory copies the history pipe again.
func (p *Process) ResumeHistory() { p.needPipe().setStalled(false) }

// BreakHistory closes the history pipe's read end after copying what it
// holds: every history write of the sidecar fails (EPIPE) until
// MendHistory, and what it writes meanwhile is lost. It needs
// Options.HistoryPipe.
func (p *Process) BreakHistory() { p.needPipe().breakPipe() }

// MendHistory opens the history pipe for reading again.
func (p *Process) MendHistory() {
	if err := p.needPipe().mend(); err != nil {
		p.t.Fatal(err)
	}
}

// HistoryBreaks returns, for every BreakHistory, how many entries of
// ReadHistory had been copied when it broke: the entries after that one
// up to the next one copied after the mend may be lost. A process that
// exited (a SIGKILL) while its history was stalled lost what it still
// held: that shows as a break at the last entry that reached the pipe.
func (p *Process) HistoryBreaks() []int {
	if p.pipe == nil {
		return nil
	}
	return p.pipe.breakLines()
}

func (p *Process) needPipe() *historyPipe {
	p.t.Helper()
	if p.pipe == nil {
		p.t.Fatalf("%s has no history pipe (Options.HistoryPipe)", p.ID)
	}
	return p.pipe
}
