// Package incarnation remembers, across restarts of the sidecar container
// in one pod, which candidacy the previous process held, so a restarted
// sidecar can release it at once instead of leaving it to expire (one TTL
// with nobody renewing it).
//
// The record lives in a file on a volume only the pod's containers mount
// (an emptyDir survives a container restart, not the pod). A running
// process holds an exclusive flock(2) on the file for its whole life; the
// kernel drops the lock when the process dies, however it dies. Holding the
// lock is therefore the proof that no earlier process using the same file
// is alive, which is what makes releasing its candidacy safe; a second
// live process with the same file cannot get it and must not start.
package incarnation

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// ErrBusy means another live process holds the file.
var ErrBusy = errors.New("incarnation: another running process holds this file")

// Record is what one process writes about its candidacy.
type Record struct {
	Identity string `json:"identity"`
	// PodUID is the pod's UID from the downward API, when known: a record
	// of another pod (a volume shared by mistake) is never acted on.
	PodUID   string `json:"pod_uid,omitempty"`
	Backend  string `json:"backend"`
	Election string `json:"election"`
	// Handle names the candidacy for the backend (election.Reclaimer).
	Handle string `json:"handle"`
	PID    int    `json:"pid"`
	// Generation is the generation the process published (0: none). A
	// process restarted in the same pod reuses what --generation=auto read,
	// so a restart does not depend on the API server.
	Generation int64 `json:"generation,omitempty"`
}

// Same reports whether r was written by an earlier process of the candidate
// described by o (same identity, pod, backend and election).
func (r Record) Same(o Record) bool {
	return r.Identity == o.Identity && r.PodUID == o.PodUID && r.Backend == o.Backend && r.Election == o.Election
}

// File is an open, locked incarnation file.
type File struct {
	mu sync.Mutex
	f  *os.File
}

// Open opens (creating it, mode 0600) and locks the file at path, and
// returns it with the record the previous process left, if any (nil when
// the file is new or holds no readable record). It fails with ErrBusy
// (wrapped, naming the holder's PID when the record has it) when another
// live process holds the file.
func Open(path string) (*File, *Record, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("incarnation: %w", err)
	}
	prev := read(f)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if prev != nil && prev.PID != 0 {
				return nil, nil, fmt.Errorf("%w (%s: process %d, identity %q)", ErrBusy, path, prev.PID, prev.Identity)
			}
			return nil, nil, fmt.Errorf("%w (%s)", ErrBusy, path)
		}
		return nil, nil, fmt.Errorf("incarnation: locking %s: %w", path, err)
	}
	// Read again under the lock: the holder may have written meanwhile.
	return &File{f: f}, read(f), nil
}

// read returns the record in f, or nil.
func read(f *os.File) *Record {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<16))
	if err != nil || len(b) == 0 {
		return nil
	}
	var r Record
	if json.Unmarshal(b, &r) != nil || r.Handle == "" {
		return nil
	}
	return &r
}

// Write replaces the record. The file stays locked; the write goes to the
// page cache, which a container crash does not lose.
func (f *File) Write(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.f.Truncate(0); err != nil {
		return fmt.Errorf("incarnation: %w", err)
	}
	if _, err := f.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("incarnation: %w", err)
	}
	return nil
}

// Close unlocks and closes the file; the record stays for the next process.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Close()
}
