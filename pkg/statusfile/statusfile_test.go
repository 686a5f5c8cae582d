package statusfile

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leader-elector/leader-elector/pkg/election"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// source is a status stream the test drives.
type source struct {
	mu      sync.Mutex
	st      election.Status
	changed chan struct{}
}

func newSource() *source { return &source{changed: make(chan struct{})} }

func (s *source) Status() (election.Status, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st, s.changed
}

func (s *source) set(fn func(*election.Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.st)
	close(s.changed)
	s.changed = make(chan struct{})
}

type doc struct {
	Name         string `json:"name"`
	IsLeader     bool   `json:"is_leader"`
	FencingToken int64  `json:"fencing_token"`
	State        string `json:"state"`
	AppHealth    string `json:"app_health"`
	NotStanding  string `json:"not_standing"`
}

func TestReadersNeverSeeATornDocument(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	src := newSource()
	// Long strings make a torn write likely if writes were not atomic.
	long := string(make([]byte, 64<<10))
	src.set(func(s *election.Status) { s.Identity = "a"; s.Caveats = long })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w := New(path, nil, nil)
	go func() { done <- w.Publish(ctx, src) }()

	var reads, stop atomic.Int64
	readerDone := make(chan error, 1)
	go func() {
		for stop.Load() == 0 {
			b, err := os.ReadFile(path)
			if errors.Is(err, os.ErrNotExist) {
				continue // not written yet
			}
			if err != nil {
				readerDone <- err
				return
			}
			var d doc
			if err := json.Unmarshal(b, &d); err != nil {
				readerDone <- errors.New("torn read: " + err.Error())
				return
			}
			reads.Add(1)
		}
		readerDone <- nil
	}()
	const n = 300
	for i := int64(1); i <= n; i++ {
		src.set(func(s *election.Status) {
			s.IsLeader, s.Leader, s.FencingToken = i%2 == 0, "a", i
			s.State = election.StateLeading
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Publish = %v", err)
	}
	stop.Store(1)
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}
	if reads.Load() == 0 {
		t.Fatal("the reader never read the file")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d doc
	if err := json.Unmarshal(b, &d); err != nil || d.FencingToken != n || !d.IsLeader || d.State != "leading" {
		t.Fatalf("final document %+v (%v), want token %d, leading", d, err, n)
	}
	// No temporary files are left behind.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the status file", len(ents))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", fi.Mode(), err)
	}
}

func TestHealthFieldsAreWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	src := newSource()
	src.set(func(s *election.Status) {
		s.State, s.Health, s.NotStanding = election.StateStandingAside, "unhealthy", "application unhealthy: 3 consecutive failed health checks"
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New(path, nil, nil).Publish(ctx, src); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d doc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.State != "standing-aside" || d.AppHealth != "unhealthy" || d.NotStanding == "" {
		t.Errorf("document %s", b)
	}
}

func TestFailedWriteIsCountedAndDoesNotStopPublishing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "missing", "status.json")
	src := newSource()
	var failures atomic.Int64
	failed := make(chan struct{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- New(path, nil, func() { failures.Add(1); failed <- struct{}{} }).Publish(ctx, src)
	}()
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("a write into a missing directory did not fail")
	}
	// The directory appears: the next change is written.
	if err := os.Mkdir(filepath.Join(dir, "missing"), 0o755); err != nil {
		t.Fatal(err)
	}
	src.set(func(s *election.Status) { s.FencingToken = 9 })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			var d doc
			if json.Unmarshal(b, &d) == nil && d.FencingToken == 9 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the status file was not written after the directory appeared")
		}
		select {
		case <-failed:
		case <-time.After(10 * time.Millisecond): // polling a file: no event to wait on
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Publish = %v, want nil", err)
	}
}
