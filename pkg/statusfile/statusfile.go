// Package statusfile writes the election status to a file, for
// applications that read a shared volume rather than the HTTP API.
//
// The file always holds one complete JSON document, the same as GET
// /status: each version is written to a temporary file in the same
// directory, synced, and renamed over the path, which POSIX makes atomic,
// so a reader sees the old document or the new one, never a mix. It is
// rewritten on every change of the status; changes closer together than a
// write takes are coalesced (the file then skips to the latest status).
//
// What it does not guarantee: a file is not a lock. It says what this
// instance knew when it wrote; a reader that acts on is_leader must still
// carry fencing_token to whatever it writes.
package statusfile

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/httpapi"
)

// retryAfter is how long a failed write waits before it is tried again
// when the status does not change meanwhile.
const retryAfter = time.Second

// Writer is an election.Publisher that keeps a file up to date.
type Writer struct {
	path    string
	log     *slog.Logger
	onError func() // counts a failed write; may be nil
}

var _ election.Publisher = (*Writer)(nil)

// New returns a Writer for path. onError, if not nil, is called on every
// failed write (for a metric). It touches nothing until Publish.
func New(path string, log *slog.Logger, onError func()) *Writer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{path: path, log: log.With("status_file", path), onError: onError}
}

// Publish writes the status on every change until ctx ends, then writes
// the final status once more. It returns nil: a failed write is logged
// and retried, it never stops the sidecar.
func (w *Writer) Publish(ctx context.Context, src election.Source) error {
	var (
		written []byte
		failing bool
		retry   <-chan time.Time
	)
	for {
		st, changed := src.Status()
		if err := w.write(st, &written); err != nil {
			if w.onError != nil {
				w.onError()
			}
			if !failing {
				w.log.Warn("writing the status file failed; retrying", "err", err)
			}
			failing = true
			retry = time.After(retryAfter)
		} else {
			if failing {
				w.log.Info("the status file is written again")
			}
			failing, retry = false, nil
		}
		select {
		case <-ctx.Done():
			st, _ := src.Status()
			_ = w.write(st, &written)
			return nil
		case <-changed:
		case <-retry:
		}
	}
}

// write replaces the file with st unless it already holds the same
// document (last).
func (w *Writer) write(st election.Status, last *[]byte) error {
	doc, err := httpapi.MarshalStatus(st)
	if err != nil {
		return err
	}
	doc = append(doc, '\n')
	if string(doc) == string(*last) {
		return nil
	}
	if err := WriteAtomic(w.path, doc); err != nil {
		return err
	}
	*last = doc
	return nil
}

// WriteAtomic replaces path with data so that a reader sees either the old
// content or the new, never part of it: a temporary file in the same
// directory (a rename is atomic only within one file system) is written,
// synced and renamed over path. The file is readable by all (0644).
func WriteAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	return nil
}
